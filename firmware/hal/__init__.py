"""Hardware layer: one backend per platform, chosen at run time.

A backend is a class built from the validated config (and whether the VM hosts several devices), one
instance per device, offering:

    device_id, data_dir                 identity and the directory of the flash files
    fw_version()                        MicroPython version string
    time() / clock_ok()                 Unix epoch seconds (UTC) and whether the clock is trusted
    async sync_clock()                  set the clock by NTP; whether it worked
    reset_reason()                      why this boot happened: power_on, soft, watchdog, ...
    heap()                              (free bytes, largest free block)
    rssi()                              Wi-Fi signal in dBm, or None
    async network_up()                  bring up the network; raise OSError if it cannot
    network_reset()                     restart the Wi-Fi station (recovery ladder)
    on_link_drop(callback)              call callback() when the network drops
    watchdog(timeout_ms)                object with feed()
    restart()                           leave a soft-reset marker and restart (on the host: return,
                                        and the caller ends the device with exit code 3)
    firmware_image()                    FirmwareImage for whole-image updates, or None
    tasks()                             (name, coroutine function) pairs the device runs too
  sensor node:
    i2c(), pms_uart(), mic_adc()        the buses of the sensor parts
  attendance terminal:
    rc522()                             the card reader driver
    async card_wait()                   return when a card may be in the field
    card_done(uid, result)              the reader's read and the device's answer to it
    feedback(kind)                      LED and buzzer: ok, dup, error
  blackboard controller:
    relay(), power_sense()              objects with value(): the mains relay, the power-sense input
    display_stream()                    the display's RS-232 port as a stream, or None
"""

import sys


def create(cfg, shared=False):
    """The hardware backend for this platform, for the device configured by `cfg`."""
    if sys.platform == "esp32":
        from hal.esp32 import Esp32Hal

        return Esp32Hal(cfg)
    from hal.host import HostHal

    return HostHal(cfg, shared)
