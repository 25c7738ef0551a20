"""Drivers for the classroom parts, written from their datasheets' command and register descriptions.

A sensor driver offers `async read()` returning (readings, raw): readings by name, and the raw words
the readings came from (identical raw words in a row are how a stuck sensor shows). It raises
SensorError with a fault kind when the part does not answer properly; a fault is never a reading.
"""

NO_ANSWER = "no_answer"
CRC = "crc"
STUCK = "stuck"
RANGE = "range"


class SensorError(Exception):
    """A failed read; `kind` is NO_ANSWER, CRC, STUCK or RANGE."""

    def __init__(self, kind):
        super().__init__(kind)
        self.kind = kind


def crc8(data, start=0, end=None):
    """Sensirion CRC-8 (polynomial 0x31, init 0xFF) of data[start:end]."""
    crc = 0xFF
    for i in range(start, len(data) if end is None else end):
        crc ^= data[i]
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def words(buf, count):
    """`count` big-endian 16-bit words from Sensirion's word+crc triplets; SensorError(CRC) on a bad crc."""
    out = []
    for i in range(count):
        pos = 3 * i
        if crc8(buf, pos, pos + 2) != buf[pos + 2]:
            raise SensorError(CRC)
        out.append((buf[pos] << 8) | buf[pos + 1])
    return out


def i2c_write(i2c, addr, data):
    """Write to an I2C part; SensorError(NO_ANSWER) when it does not acknowledge."""
    try:
        i2c.writeto(addr, data)
    except OSError:
        raise SensorError(NO_ANSWER)


def i2c_read(i2c, addr, buf):
    """Read into `buf` from an I2C part; SensorError(NO_ANSWER) when it does not acknowledge."""
    try:
        i2c.readfrom_into(addr, buf)
    except OSError:
        raise SensorError(NO_ANSWER)
