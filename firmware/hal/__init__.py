"""Hardware layer: one backend per platform, chosen at run time.

A backend is a class built from the validated config, one instance per device, offering:

    device_id, data_dir                 identity and the directory of the flash files
    fw_version()                        MicroPython version string
    time() / clock_ok()                 Unix epoch seconds (UTC) and whether the clock is set
    reset_reason()                      why this boot happened: power_on, soft, watchdog, ...
    heap()                              (free bytes, largest free block)
    rssi()                              Wi-Fi signal in dBm, or None
    async network_up()                  bring up the network; raise OSError if it cannot
    card_reader()                       object whose `async run(take)` calls take(uid) per card tap;
                                        take returns "ok" or "ignored <reason>"
    restart()                           leave a soft-reset marker and restart (on the host: return,
                                        and the caller ends the device with exit code 3)
"""

import asyncio
import sys


class NoCardReader:
    """A reader that never sees a card: devices without one, or without a driver for theirs."""

    async def run(self, take):
        """Wait for ever."""
        while True:
            await asyncio.sleep(3600)


def create(cfg):
    """The hardware backend for this platform, for the device configured by `cfg`."""
    if sys.platform == "esp32":
        from hal.esp32 import Esp32Hal

        return Esp32Hal(cfg)
    from hal.host import HostHal

    return HostHal(cfg)
