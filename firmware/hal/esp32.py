"""Hardware layer for the ESP32: Wi-Fi, NTP, reset cause, IDF heap figures and the flash filesystem.

Imported only on the chip (`sys.platform == "esp32"`).
"""

import asyncio
import gc
import time

import esp32
import machine
import network
import ntptime

from hal import NoCardReader
from protocol import topics

WIFI_TIMEOUT_S = 20
# Seconds from 1970 to 2000, for ports whose time() counts from 2000.
EPOCH_2000 = 946684800
# Before NTP has answered, a clock earlier than this is the RTC's power-on default, not the time.
PLAUSIBLE_EPOCH = 1704067200

_RESET_NAMES = (
    ("PWRON_RESET", "power_on"),
    ("HARD_RESET", "hard"),
    ("WDT_RESET", "watchdog"),
    ("DEEPSLEEP_RESET", "deepsleep"),
    ("SOFT_RESET", "soft"),
)


def _makedirs(path):
    import os

    cur = ""
    for part in path.split("/"):
        if part:
            cur += "/" + part
            try:
                os.mkdir(cur)
            except OSError:
                pass


class Esp32Hal:
    """Backend for the one device that this chip is."""

    def __init__(self, cfg):
        self._cfg = cfg
        self._wlan = network.WLAN(network.STA_IF)
        self._wlan.active(True)
        self.device_id = cfg["device_id"] or topics.device_id_from_mac(self._wlan.config("mac"))
        self.data_dir = cfg["data_dir"] or "/data"
        _makedirs(self.data_dir)
        self._epoch_offset = EPOCH_2000 if time.gmtime(0)[0] == 2000 else 0
        self._clock_ok = False
        cause = machine.reset_cause()
        self._reset = "unknown"
        for attr, name in _RESET_NAMES:
            if getattr(machine, attr, None) == cause:
                self._reset = name
                break

    def fw_version(self):
        """MicroPython version as x.y.z."""
        import sys

        v = sys.implementation.version
        return "micropython-%d.%d.%d" % (v[0], v[1], v[2])

    def time(self):
        """Unix epoch seconds, whatever epoch this port's time() uses."""
        return time.time() + self._epoch_offset

    def clock_ok(self):
        """True once NTP has set the clock, or the RTC already holds a plausible time."""
        return self._clock_ok or self.time() > PLAUSIBLE_EPOCH

    def reset_reason(self):
        """machine.reset_cause() by name."""
        return self._reset

    def heap(self):
        """(free MicroPython heap, largest free block of the IDF heap that MicroPython's grows into)."""
        block = 0
        for region in esp32.idf_heap_info(esp32.HEAP_DATA):
            if region[2] > block:
                block = region[2]
        return gc.mem_free(), block

    def rssi(self):
        """Signal of the access point, or None while not associated."""
        if not self._wlan.isconnected():
            return None
        try:
            return self._wlan.status("rssi")
        except (OSError, ValueError):
            return None

    async def network_up(self):
        """Join the configured Wi-Fi if not joined; set the clock by NTP the first time."""
        wlan = self._wlan
        if not wlan.isconnected():
            ssid = self._cfg["wifi_ssid"]
            if not ssid:
                raise OSError("no wifi_ssid configured")
            wlan.connect(ssid, self._cfg["wifi_password"] or "")
            waited = 0
            while not wlan.isconnected():
                if waited >= WIFI_TIMEOUT_S * 10:
                    wlan.disconnect()
                    raise OSError("wifi join timed out")
                await asyncio.sleep_ms(100)
                waited += 1
        if not self._clock_ok:
            try:
                ntptime.settime()
                self._clock_ok = True
            except (OSError, OverflowError):
                pass

    def card_reader(self):
        """No RC522 driver yet: the reader never reports."""
        return NoCardReader()

    def restart(self):
        """Hard restart; the next boot reports reset cause soft."""
        machine.reset()
