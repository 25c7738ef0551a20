"""ROHM BH1750 ambient light over I2C, continuous high-resolution mode (1 lx, 120 ms)."""

import asyncio

from app.drivers import i2c_read, i2c_write

BH1750_ADDR = 0x23
_POWER_ON = b"\x01"
_CONT_H_RES = b"\x10"
_FIRST_MEASURE_MS = 180


class Bh1750:
    """Illuminance in lux; a dark room reads a steady 0, so a constant value is no fault here."""

    NAME = "bh1750"
    CHECK_STUCK = False

    def __init__(self, i2c, addr=BH1750_ADDR):
        self.i2c = i2c
        self.addr = addr
        self._started = False
        self._buf = bytearray(2)

    async def read(self):
        """({"lux"}, raw count)."""
        if not self._started:
            i2c_write(self.i2c, self.addr, _POWER_ON)
            i2c_write(self.i2c, self.addr, _CONT_H_RES)
            self._started = True
            await asyncio.sleep_ms(_FIRST_MEASURE_MS)
        try:
            i2c_read(self.i2c, self.addr, self._buf)
        except Exception:
            self._started = False
            raise
        raw = (self._buf[0] << 8) | self._buf[1]
        return {"lux": round(raw / 1.2, 1)}, (raw,)
