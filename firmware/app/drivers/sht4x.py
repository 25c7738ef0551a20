"""Sensirion SHT4x (and SHT3x) temperature and humidity over I2C."""

import asyncio

from app.drivers import i2c_read, i2c_write, words

SHT4X_ADDR = 0x44
SHT3X_ADDR = 0x45  # ADDR pin high, so that an SHT3x can share a bus with an SHT4x
_SHT4X_MEASURE_HIGH = b"\xfd"  # high repeatability, 8.3 ms max
_SHT3X_SINGLE_HIGH = b"\x24\x00"  # single shot, high repeatability, no clock stretching, 15 ms max


class Sht4x:
    """SHT40/41/45: one command, six bytes back (temperature word, crc, humidity word, crc)."""

    NAME = "sht4x"
    CHECK_STUCK = True
    _WAIT_MS = 10

    def __init__(self, i2c, addr=SHT4X_ADDR):
        self.i2c = i2c
        self.addr = addr
        self._buf = bytearray(6)

    def _command(self):
        return _SHT4X_MEASURE_HIGH

    def _rh(self, raw):
        return -6 + 125 * raw / 65535

    async def read(self):
        """({"temp_c", "rh_pct"}, raw words)."""
        i2c_write(self.i2c, self.addr, self._command())
        await asyncio.sleep_ms(self._WAIT_MS)
        i2c_read(self.i2c, self.addr, self._buf)
        t_raw, rh_raw = words(self._buf, 2)
        rh = min(100.0, max(0.0, self._rh(rh_raw)))
        return {"temp_c": round(-45 + 175 * t_raw / 65535, 2), "rh_pct": round(rh, 1)}, (t_raw, rh_raw)


class Sht3x(Sht4x):
    """SHT30/31/35 in single-shot mode: a two-byte command and a linear humidity scale."""

    NAME = "sht3x"
    _WAIT_MS = 16

    def __init__(self, i2c, addr=SHT3X_ADDR):
        super().__init__(i2c, addr)

    def _command(self):
        return _SHT3X_SINGLE_HIGH

    def _rh(self, raw):
        return 100 * raw / 65535
