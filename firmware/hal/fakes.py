"""Faithful stand-ins for the classroom parts on the host: each answers its bus (I2C, UART, ADC, SPI)
byte for byte as the datasheet says the part does, so the real drivers run unchanged against them.

What a part measures and how it fails is set from outside through the hardware bus (hal/host.py).
Real parts have noise; so do these (a few raw counts), which is what tells a working sensor from a
stuck one. Faults: no_answer (the part does not acknowledge), crc (answers with a bad checksum),
stuck (the raw value freezes).
"""

import math
from random import getrandbits

from app.drivers import crc8
from app.drivers.rc522 import crc_a

_ENODEV = 19


def _noise(span):
    return (getrandbits(8) % (2 * span + 1)) - span


def _clamp16(v):
    return max(0, min(65535, int(v)))


def _triplets(values):
    out = bytearray()
    for v in values:
        pair = bytes(((v >> 8) & 0xFF, v & 0xFF))
        out.extend(pair)
        out.append(crc8(pair))
    return out


class Part:
    """A part with a value set from outside and a fault state."""

    def __init__(self, value):
        self.value = value
        self.fault = "none"
        self._frozen = None

    def set_value(self, text):
        """Parse and take a new value from a bus line; ValueError if it does not fit."""
        self.value = float(text)

    def set_fault(self, kind):
        self.fault = kind
        self._frozen = None

    def raw(self):
        """Raw words for the current value, frozen while stuck."""
        if self.fault == "stuck":
            if self._frozen is None:
                self._frozen = self.fresh()
            return self._frozen
        return self.fresh()

    def fresh(self):
        raise NotImplementedError


class I2cPart(Part):
    """An I2C part: takes command writes, answers reads with Sensirion-style word triplets."""

    def __init__(self, value):
        super().__init__(value)
        self.answer = b""

    def write(self, data):
        self.answer = self.command(bytes(data))

    def read(self, n):
        data = bytearray(self.answer[:n])
        if len(data) < n:
            data.extend(b"\xff" * (n - len(data)))
        if self.fault == "crc" and len(data) >= 3:
            data[2] ^= 0x5A
        return data

    def command(self, cmd):
        raise NotImplementedError


class Sht4xPart(I2cPart):
    """SHT4x: 0xFD starts a measurement; six bytes back."""

    def __init__(self, temp=22.0, rh=45.0):
        super().__init__((temp, rh))

    def set_value(self, text):
        temp, rh = text.split(",")
        self.value = (float(temp), float(rh))

    def _rh_raw(self, rh):
        return (rh + 6) * 65535 / 125

    def fresh(self):
        temp, rh = self.value
        return (_clamp16((temp + 45) * 65535 / 175 + _noise(3)), _clamp16(self._rh_raw(rh) + _noise(3)))

    def command(self, cmd):
        return _triplets(self.raw()) if cmd == b"\xfd" else b""


class Sht3xPart(Sht4xPart):
    """SHT3x: 0x2400 single shot; linear humidity."""

    def _rh_raw(self, rh):
        return rh * 65535 / 100

    def command(self, cmd):
        return _triplets(self.raw()) if cmd == b"\x24\x00" else b""


class Scd4xPart(I2cPart):
    """SCD4x in periodic mode: data ready once started; measurement words co2, temperature, humidity."""

    def __init__(self, co2=600.0):
        super().__init__(co2)
        self.started = False

    def fresh(self):
        return (_clamp16(self.value + _noise(3)), _clamp16(26000 + _noise(20)), _clamp16(30000 + _noise(20)))

    def command(self, cmd):
        if cmd == b"\x21\xb1":
            self.started = True
            return b""
        if cmd == b"\x3f\x86":
            self.started = False
            return b""
        if cmd == b"\xe4\xb8":
            return _triplets((0x8006 if self.started else 0x8000,))
        if cmd == b"\xec\x05":
            return _triplets(self.raw()) if self.started else b""
        return b""


class Bh1750Part(I2cPart):
    """BH1750: power on and mode commands, then two raw bytes per read (lux * 1.2)."""

    def __init__(self, lux=300.0):
        super().__init__(lux)

    def fresh(self):
        return (_clamp16(self.value * 1.2 + (_noise(1) if self.value else 0)),)

    def command(self, cmd):
        return b""

    def read(self, n):
        raw = self.raw()[0]
        return bytes(((raw >> 8) & 0xFF, raw & 0xFF))[:n]


class FakeI2C:
    """machine.I2C's read and write calls against the parts at their addresses."""

    def __init__(self):
        self.parts = {}

    def _part(self, addr):
        part = self.parts.get(addr)
        if part is None or part.fault == "no_answer":
            raise OSError(_ENODEV)
        return part

    def writeto(self, addr, buf):
        self._part(addr).write(buf)
        return len(buf)

    def readfrom_into(self, addr, buf):
        data = self._part(addr).read(len(buf))
        for i in range(len(buf)):
            buf[i] = data[i]


class Pms5003Part(Part):
    """PMS5003 behind machine.UART's read(): a fresh 32-byte frame on every read."""

    def __init__(self, pm25=12.0):
        super().__init__(pm25)

    def fresh(self):
        pm25 = int(self.value)
        return (int(pm25 * 0.7), pm25, int(pm25 * 1.3))

    def read(self):
        if self.fault == "no_answer":
            return None
        pm1, pm25, pm10 = self.raw()
        data = [pm1, pm25, pm10, pm1, pm25, pm10] + [0] * 7
        frame = bytearray(b"\x42\x4d\x00\x1c")
        for w in data:
            frame.append((w >> 8) & 0xFF)
            frame.append(w & 0xFF)
        total = sum(frame)
        if self.fault == "crc":
            total += 1
        frame.append((total >> 8) & 0xFF)
        frame.append(total & 0xFF)
        return bytes(frame)

    def any(self):
        return 0 if self.fault == "no_answer" else 32


class MicPart(Part):
    """Microphone amplifier behind machine.ADC's read_u16(): mid-scale plus a sine of the level's RMS.

    Stuck, the amplifier repeats one 64-sample pattern exactly; working, it adds a count of noise.
    """

    def __init__(self, dba=45.0):
        super().__init__(dba)
        self._phase = 0

    def fresh(self):
        return None

    def read_u16(self):
        if self.fault == "no_answer":
            return 32768
        stuck = self.fault == "stuck"
        self._phase = (self._phase + 1) % 64 if stuck else self._phase + 1
        rms = 10 ** ((self.value - 20.0) / 20)
        jitter = 0 if stuck else _noise(1)
        return _clamp16(32768 + rms * 1.4142 * math.sin(self._phase * 2 * math.pi * 5 / 64) + jitter)


class FakePin:
    """An output pin that remembers its level."""

    def __init__(self, level=1):
        self.level = level

    def value(self, v=None):
        if v is None:
            return self.level
        self.level = v
        return None


class Rc522Part:
    """MFRC522 registers behind machine.SPI's write_readinto(), and the card in its field.

    Transceive takes the FIFO's bytes as one frame to the card and puts the card's answer in the FIFO
    (or raises the timer interrupt when the card stays silent), as the chip does.
    """

    def __init__(self):
        self.regs = bytearray(64)
        self.regs[0x37] = 0x92
        self.fifo = bytearray()
        self.card = None
        self.halted = False
        self.fault = "none"

    def present(self, uid):
        self.card = bytes(uid)
        self.halted = False

    def remove(self):
        self.card = None

    def write_readinto(self, out, into):
        if self.fault == "no_answer":
            for i in range(len(into)):
                into[i] = 0
            return
        addr = (out[0] >> 1) & 0x3F
        if out[0] & 0x80:
            into[1] = self._read(addr)
        else:
            self._write(addr, out[1])

    def _read(self, reg):
        if reg == 0x09:
            if not self.fifo:
                return 0
            b = self.fifo[0]
            self.fifo = self.fifo[1:]
            return b
        if reg == 0x0A:
            return len(self.fifo)
        return self.regs[reg]

    def _write(self, reg, value):
        if reg == 0x09:
            self.fifo.append(value)
        elif reg == 0x0A:
            if value & 0x80:
                self.fifo = bytearray()
        elif reg == 0x04:
            if not value & 0x80:
                self.regs[0x04] &= ~value & 0xFF
        elif reg == 0x0D:
            self.regs[0x0D] = value & 0x7F
            if value & 0x80 and self.regs[0x01] == 0x0C:
                self._transceive(value & 0x07)
        elif reg == 0x01:
            self.regs[0x01] = 0 if value == 0x0F else value
        else:
            self.regs[reg] = value

    def _answer(self, data):
        self.fifo = bytearray(data)
        self.regs[0x06] = 0
        self.regs[0x04] |= 0x30

    def _transceive(self, last_bits):
        frame = bytes(self.fifo)
        self.fifo = bytearray()
        uid = self.card
        self.regs[0x04] |= 0x01 if uid is None else 0
        if uid is None:
            return
        n = len(uid)
        if len(frame) == 1 and last_bits == 7 and frame[0] in (0x26, 0x52):
            if frame[0] == 0x26 and self.halted:
                self.regs[0x04] |= 0x01
                return
            self.halted = False
            self._answer(b"\x04\x00" if n == 4 else (b"\x44\x00" if n == 7 else b"\x84\x00"))
            return
        levels = (0x93, 0x95, 0x97)
        if frame and frame[0] in levels:
            level = levels.index(frame[0])
            if level == 0:
                part = uid[0:4] if n == 4 else b"\x88" + uid[0:3]
            elif level == 1:
                part = uid[3:7] if n == 7 else b"\x88" + uid[3:6]
            else:
                part = uid[6:10]
            if len(part) != 4 or (level == 1 and n == 4) or (level == 2 and n != 10):
                self.regs[0x04] |= 0x01
                return
            bcc = part[0] ^ part[1] ^ part[2] ^ part[3]
            if len(frame) == 2 and frame[1] == 0x20:
                self._answer(part + bytes((bcc,)))
                return
            if len(frame) == 9 and frame[1] == 0x70 and frame[2:7] == part + bytes((bcc,)):
                if crc_a(frame[:7]) != frame[7:]:
                    self.regs[0x04] |= 0x01
                    return
                complete = (level == 0 and n == 4) or (level == 1 and n == 7) or level == 2
                sak = b"\x08" if complete else b"\x04"
                self._answer(sak + crc_a(sak))
                return
        if len(frame) == 4 and frame[0] == 0x50:
            self.halted = True
        self.regs[0x04] |= 0x01
