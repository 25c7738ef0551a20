"""RS-232 control protocol of the classroom smart display (interactive flat panel).

Transport-free: bytes in, bytes out. The blackboard controller speaks it over its UART, the gateway
over a serial port of its own, the simulator's virtual display over a pseudo-terminal. Runs on
MicroPython and CPython alike. Serial settings: 9600 baud, 8 data bits, no parity, 1 stop bit.

One frame format serves both directions:

    STX 0xA5 | addr | cmd | len | data (len bytes) | check

`check` is the low byte of the sum of addr, cmd, len and the data bytes. A reply sets the top bit of
the request's cmd and starts its data with a status byte (ACK, NAK, BUSY, REFUSED); a query's answer
follows the status. Address 1 is a display's default; BROADCAST reaches every display on the line and
is never answered.

    request                        reply data (after status)
    POWER_SET  [0 standby | 1 on]  -
    POWER_GET  []                  [0 | 1]
    INPUT_SET  [source]            -
    INPUT_GET  []                  [source]
    HOURS_GET  []                  [hours on, 4 bytes big-endian]
"""

STX = 0xA5
REPLY = 0x80
BROADCAST = 0xFF
DEFAULT_ADDR = 1
MAX_DATA = 16
BAUDRATE = 9600

POWER_SET = 0x11
POWER_GET = 0x12
INPUT_SET = 0x13
INPUT_GET = 0x14
HOURS_GET = 0x15
COMMANDS = (POWER_SET, POWER_GET, INPUT_SET, INPUT_GET, HOURS_GET)

ACK = 0x00
NAK = 0x01  # malformed or unknown request, or a value out of range
BUSY = 0x02  # the display cannot do it now (still starting up); ask again later
REFUSED = 0x03  # understood and valid, but the display would not do it (a hardware fault)
STATUS_NAMES = {ACK: "ack", NAK: "nak", BUSY: "busy", REFUSED: "refused"}

# Input sources by name; the codes are the wire values.
SOURCES = {"hdmi1": 1, "hdmi2": 2, "hdmi3": 3, "dp": 4, "vga": 5, "ops": 6, "usbc": 7}


class DisplayProtocolError(ValueError):
    """A frame or value that breaks the display protocol."""


def _check(addr, cmd, data):
    total = addr + cmd + len(data)
    for b in data:
        total += b
    return total & 0xFF


def encode(addr, cmd, data=b""):
    """One frame (request or reply) as bytes."""
    if not 0 <= addr <= 0xFF or not 0 <= cmd <= 0xFF:
        raise DisplayProtocolError("address and command are single bytes")
    if len(data) > MAX_DATA:
        raise DisplayProtocolError("frame data longer than %d bytes" % MAX_DATA)
    data = bytes(data)
    return bytes((STX, addr, cmd, len(data))) + data + bytes((_check(addr, cmd, data),))


def power_set(on, addr=DEFAULT_ADDR):
    """Request: power on (True) or to standby (False)."""
    return encode(addr, POWER_SET, b"\x01" if on else b"\x00")


def power_get(addr=DEFAULT_ADDR):
    """Request: is the display on?"""
    return encode(addr, POWER_GET)


def input_set(source, addr=DEFAULT_ADDR):
    """Request: switch to input `source` (a name of SOURCES)."""
    return encode(addr, INPUT_SET, bytes((source_code(source),)))


def input_get(addr=DEFAULT_ADDR):
    """Request: which input is shown?"""
    return encode(addr, INPUT_GET)


def hours_get(addr=DEFAULT_ADDR):
    """Request: the display's own count of hours powered on."""
    return encode(addr, HOURS_GET)


def reply(addr, cmd, status=ACK, data=b""):
    """The display's answer to request `cmd`: status byte, then the query's data."""
    return encode(addr, cmd | REPLY, bytes((status,)) + bytes(data))


def source_code(name):
    """Wire code of an input source name; DisplayProtocolError for an unknown one."""
    code = SOURCES.get(name)
    if code is None:
        raise DisplayProtocolError("unknown input source %r" % (name,))
    return code


def source_name(code):
    """Name of a wire source code, or None for an unknown one."""
    for name in SOURCES:
        if SOURCES[name] == code:
            return name
    return None


class Parser:
    """Incremental frame reader: feed it bytes as they come, get whole frames back.

    Noise before a frame, a frame with a bad check or an impossible length is skipped and counted in
    `bad`; the parser then looks for the next STX, so one corrupted byte costs one frame.
    """

    def __init__(self):
        self._buf = bytearray()
        self.bad = 0

    def feed(self, data):
        """Add bytes; return the list of complete frames as (addr, cmd, data) tuples."""
        buf = self._buf
        buf.extend(data)
        frames = []
        while True:
            start = buf.find(bytes((STX,)))
            if start < 0:
                if buf:
                    self.bad += 1
                buf[:] = b""
                return frames
            if start:
                self.bad += 1
                buf[:] = buf[start:]
            if len(buf) < 4:
                return frames
            n = buf[3]
            if n > MAX_DATA:
                self.bad += 1
                buf[:] = buf[1:]
                continue
            if len(buf) < 5 + n:
                return frames
            addr, cmd = buf[1], buf[2]
            data = bytes(buf[4:4 + n])
            if buf[4 + n] != _check(addr, cmd, data):
                self.bad += 1
                buf[:] = buf[1:]
                continue
            buf[:] = buf[5 + n:]
            frames.append((addr, cmd, data))


def parse_reply(frame, cmd):
    """(status, data) of a reply frame to request `cmd`; DisplayProtocolError if it answers another."""
    addr, got, data = frame
    if got != cmd | REPLY:
        raise DisplayProtocolError("reply to command 0x%02x, expected 0x%02x" % (got & 0x7F, cmd))
    if not data:
        raise DisplayProtocolError("reply without status")
    return data[0], data[1:]


def decode_power(data):
    """True/False from a POWER_GET reply's data."""
    if len(data) != 1 or data[0] > 1:
        raise DisplayProtocolError("bad power state")
    return data[0] == 1


def decode_input(data):
    """Source name from an INPUT_GET reply's data."""
    name = source_name(data[0]) if len(data) == 1 else None
    if name is None:
        raise DisplayProtocolError("bad input source")
    return name


def decode_hours(data):
    """Hours on from a HOURS_GET reply's data."""
    if len(data) != 4:
        raise DisplayProtocolError("bad hours")
    return (data[0] << 24) | (data[1] << 16) | (data[2] << 8) | data[3]


def encode_hours(hours):
    """HOURS_GET reply data for `hours`."""
    hours = max(0, min(int(hours), 0xFFFFFFFF))
    return bytes(((hours >> 24) & 0xFF, (hours >> 16) & 0xFF, (hours >> 8) & 0xFF, hours & 0xFF))
