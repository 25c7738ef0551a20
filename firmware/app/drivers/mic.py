"""Classroom noise level from an electret microphone amplifier on an ADC input.

The level is the RMS of a burst of samples around their mean, in dB against the calibration below: a
MAX4466-class amplifier at gain 25 on a 16-bit reading gives about 1 count RMS at 20 dBA.
"""

import math

from app.drivers import NO_ANSWER, SensorError

SAMPLES = 64
DB_AT_ONE_COUNT = 20.0
# Below this RMS the microphone is disconnected or dead: even a silent room has some noise.
MIN_RMS = 0.5


class Microphone:
    """Noise in dBA from one burst of ADC samples."""

    NAME = "mic"
    CHECK_STUCK = True

    def __init__(self, adc):
        self.adc = adc

    async def read(self):
        """({"noise_dba"}, raw)."""
        adc = self.adc
        total = 0
        total_sq = 0
        for _ in range(SAMPLES):
            v = adc.read_u16()
            total += v
            total_sq += v * v
        mean = total / SAMPLES
        var = total_sq / SAMPLES - mean * mean
        rms = math.sqrt(var) if var > 0 else 0.0
        if rms < MIN_RMS:
            raise SensorError(NO_ANSWER)
        return {"noise_dba": round(DB_AT_ONE_COUNT + 20 * math.log10(rms), 1)}, (total, total_sq)
