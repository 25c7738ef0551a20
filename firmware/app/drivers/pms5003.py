"""Plantower PMS5003 particulate matter over UART (9600 8N1), active mode: a 32-byte frame a second.

Frame: 0x42 0x4D, frame length 28 (big-endian), thirteen big-endian data words, then the 16-bit sum
of all bytes before it. Words 4-6 are PM1.0, PM2.5 and PM10 in ug/m3 under atmospheric conditions.
"""

import asyncio

from app.drivers import CRC, NO_ANSWER, SensorError

FRAME_LEN = 32
# A frame comes at least every 2.3 s; wait a little longer before calling the part silent.
TIMEOUT_MS = 3000
_POLL_MS = 100


class Pms5003:
    """PM2.5 (and PM1.0, PM10) from the latest valid frame in the UART's buffer."""

    NAME = "pms5003"
    CHECK_STUCK = False

    def __init__(self, uart):
        self.uart = uart
        self._buf = bytearray()

    def _take_frames(self):
        data = self.uart.read()
        if data:
            self._buf.extend(data)
            if len(self._buf) > 4 * FRAME_LEN:
                self._buf[:] = self._buf[-2 * FRAME_LEN:]
        found = None
        bad = False
        buf = self._buf
        while True:
            start = buf.find(b"\x42\x4d")
            if start < 0 or len(buf) - start < FRAME_LEN:
                if start > 0:
                    buf[:] = buf[start:]
                return found, bad
            frame = buf[start:start + FRAME_LEN]
            buf[:] = buf[start + FRAME_LEN:]
            total = 0
            for i in range(FRAME_LEN - 2):
                total += frame[i]
            if frame[2] != 0 or frame[3] != 28 or total != (frame[30] << 8) | frame[31]:
                bad = True
                continue
            found = frame

    async def read(self):
        """({"pm1_ugm3", "pm25_ugm3", "pm10_ugm3"}, raw words)."""
        waited = 0
        bad = False
        while True:
            frame, was_bad = self._take_frames()
            bad = bad or was_bad
            if frame is not None:
                break
            if waited >= TIMEOUT_MS:
                raise SensorError(CRC if bad else NO_ANSWER)
            await asyncio.sleep_ms(_POLL_MS)
            waited += _POLL_MS
        pm1 = (frame[10] << 8) | frame[11]
        pm25 = (frame[12] << 8) | frame[13]
        pm10 = (frame[14] << 8) | frame[15]
        return {"pm1_ugm3": pm1, "pm25_ugm3": pm25, "pm10_ugm3": pm10}, (pm1, pm25, pm10)
