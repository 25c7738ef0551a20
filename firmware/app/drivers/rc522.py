"""NXP MFRC522 card reader over SPI: ISO 14443A request, anticollision and select, for 4, 7 and 10
byte UIDs. Register and command numbers from the MFRC522 datasheet; frames from ISO/IEC 14443-3."""

_COMMAND = 0x01
_COM_IRQ = 0x04
_ERROR = 0x06
_FIFO_DATA = 0x09
_FIFO_LEVEL = 0x0A
_CONTROL = 0x0C
_BIT_FRAMING = 0x0D
_MODE = 0x11
_TX_CONTROL = 0x14
_TX_ASK = 0x15
_T_MODE = 0x2A
_T_PRESCALER = 0x2B
_T_RELOAD_H = 0x2C
_T_RELOAD_L = 0x2D
_VERSION = 0x37

_IDLE = 0x00
_TRANSCEIVE = 0x0C
_SOFT_RESET = 0x0F

_REQA = 0x26
_HLTA = 0x50
_SEL = (0x93, 0x95, 0x97)
_CASCADE_TAG = 0x88
# VersionReg of genuine chips (1.0, 2.0) and of the common clones.
VERSIONS = (0x91, 0x92, 0x88, 0x12)
# ComIrqReg polls before giving up; the chip's own timer (25 ms) ends a silent exchange first.
_POLLS = 200


class ReaderError(Exception):
    """The reader chip does not answer on SPI."""


def crc_a(data):
    """ISO 14443A CRC (init 0x6363, reflected polynomial 0x8408), two bytes, low byte first."""
    crc = 0x6363
    for b in data:
        b ^= crc & 0xFF
        b = (b ^ (b << 4)) & 0xFF
        crc = (crc >> 8) ^ (b << 8) ^ (b << 3) ^ (b >> 4)
    return bytes((crc & 0xFF, (crc >> 8) & 0xFF))


class Rc522:
    """The reader on `spi` with chip select `cs` (a Pin, active low)."""

    def __init__(self, spi, cs):
        self.spi = spi
        self.cs = cs
        self._tx = bytearray(2)
        self._rx = bytearray(2)
        cs.value(1)

    def _write(self, reg, value):
        self._tx[0] = (reg << 1) & 0x7E
        self._tx[1] = value
        self.cs.value(0)
        self.spi.write_readinto(self._tx, self._rx)
        self.cs.value(1)

    def _read(self, reg):
        self._tx[0] = ((reg << 1) & 0x7E) | 0x80
        self._tx[1] = 0
        self.cs.value(0)
        self.spi.write_readinto(self._tx, self._rx)
        self.cs.value(1)
        return self._rx[1]

    def version(self):
        """VersionReg; ReaderError when it is not a known MFRC522."""
        v = self._read(_VERSION)
        if v not in VERSIONS:
            raise ReaderError("no MFRC522 on SPI (version 0x%02x)" % v)
        return v

    def init(self):
        """Reset and configure the chip, antenna on; ReaderError when it is not there."""
        self.version()
        self._write(_COMMAND, _SOFT_RESET)
        self._write(_T_MODE, 0x8D)  # timer starts after transmission; prescaler high bits
        self._write(_T_PRESCALER, 0x3E)
        self._write(_T_RELOAD_H, 0)
        self._write(_T_RELOAD_L, 30)  # about 25 ms
        self._write(_TX_ASK, 0x40)  # 100 % ASK
        self._write(_MODE, 0x3D)  # CRC preset 0x6363
        self._write(_TX_CONTROL, self._read(_TX_CONTROL) | 0x03)

    def _transceive(self, data, last_bits=0):
        self._write(_COMMAND, _IDLE)
        self._write(_COM_IRQ, 0x7F)
        self._write(_FIFO_LEVEL, 0x80)
        for b in data:
            self._write(_FIFO_DATA, b)
        self._write(_BIT_FRAMING, last_bits)
        self._write(_COMMAND, _TRANSCEIVE)
        self._write(_BIT_FRAMING, 0x80 | last_bits)
        for _ in range(_POLLS):
            irq = self._read(_COM_IRQ)
            if irq & 0x30:  # RxIRq or IdleIRq: an answer came
                break
            if irq & 0x01:  # TimerIRq: the card said nothing
                return None
        else:
            return None
        self._write(_BIT_FRAMING, last_bits)
        if self._read(_ERROR) & 0x13:  # buffer overflow, parity or protocol error
            return None
        n = self._read(_FIFO_LEVEL)
        out = bytearray(n)
        for i in range(n):
            out[i] = self._read(_FIFO_DATA)
        return out

    def read_uid(self):
        """The UID (bytes) of a card in the field, halted afterwards so it is read once; or None."""
        if self._transceive(bytes((_REQA,)), 7) is None:
            return None
        uid = bytearray()
        for level in _SEL:
            part = self._transceive(bytes((level, 0x20)))
            if part is None or len(part) != 5 or part[0] ^ part[1] ^ part[2] ^ part[3] != part[4]:
                return None
            frame = bytes((level, 0x70)) + part
            sak = self._transceive(frame + crc_a(frame))
            if sak is None or len(sak) != 3 or crc_a(sak[:1]) != sak[1:]:
                return None
            if part[0] == _CASCADE_TAG:
                uid.extend(part[1:4])
            else:
                uid.extend(part[0:4])
            if not sak[0] & 0x04:  # UID complete
                halt = bytes((_HLTA, 0))
                self._transceive(halt + crc_a(halt))
                return bytes(uid)
        return None
