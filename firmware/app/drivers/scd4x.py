"""Sensirion SCD40/41 CO2 over I2C, in periodic measurement mode (a new value every 5 s)."""

import asyncio

from app.drivers import NO_ANSWER, SensorError, i2c_read, i2c_write, words

SCD4X_ADDR = 0x62
_START_PERIODIC = b"\x21\xb1"
_READ_MEASUREMENT = b"\xec\x05"
_DATA_READY = b"\xe4\xb8"
# The part needs this long after a command before its answer may be read.
_CMD_WAIT_MS = 1
# After start_periodic_measurement the first value takes 5 s; until then "not ready" is no fault.
_FIRST_VALUE_GRACE = 3


class Scd4x:
    """CO2 (ppm); the part's own temperature and humidity words feed only the stuck check."""

    NAME = "scd4x"
    CHECK_STUCK = True

    def __init__(self, i2c, addr=SCD4X_ADDR):
        self.i2c = i2c
        self.addr = addr
        self._started = False
        self._not_ready = 0
        self._buf3 = bytearray(3)
        self._buf9 = bytearray(9)

    async def _command_read(self, cmd, buf):
        i2c_write(self.i2c, self.addr, cmd)
        await asyncio.sleep_ms(_CMD_WAIT_MS)
        i2c_read(self.i2c, self.addr, buf)

    async def read(self):
        """({"co2_ppm"}, raw words), or None while no new value is ready."""
        if not self._started:
            i2c_write(self.i2c, self.addr, _START_PERIODIC)
            self._started = True
        try:
            await self._command_read(_DATA_READY, self._buf3)
        except SensorError:
            # A part that lost power forgets periodic mode; start it again next time.
            self._started = False
            raise
        if not words(self._buf3, 1)[0] & 0x07FF:
            self._not_ready += 1
            if self._not_ready > _FIRST_VALUE_GRACE:
                self._started = False
                raise SensorError(NO_ANSWER)
            return None
        self._not_ready = 0
        await self._command_read(_READ_MEASUREMENT, self._buf9)
        co2, t_raw, rh_raw = words(self._buf9, 3)
        return {"co2_ppm": co2}, (co2, t_raw, rh_raw)
