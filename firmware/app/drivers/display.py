"""The smart display's RS-232 control port (protocol/display.py) over an asyncio stream."""

import asyncio

from protocol import display as proto

ANSWER_TIMEOUT_MS = 800
RETRIES = 2


class DisplayError(Exception):
    """A request the display did not carry out; `kind` is no_answer, busy, refused or nak."""

    def __init__(self, kind):
        super().__init__(kind)
        self.kind = kind


class DisplayLink:
    """Requests and answers on one serial stream (a machine.UART, or a tty opened as a file)."""

    def __init__(self, stream, addr=proto.DEFAULT_ADDR):
        self.addr = addr
        self._reader = asyncio.StreamReader(stream)
        self._writer = asyncio.StreamWriter(stream, {})
        self._parser = proto.Parser()
        self._lock = asyncio.Lock()
        self.no_answers = 0

    async def _read_frame(self):
        while True:
            # One byte at a time: a tty opened as a file blocks on a read of more than is there.
            frames = self._parser.feed(await self._reader.readexactly(1))
            if frames:
                return frames[0]

    async def request(self, frame, cmd):
        """Send one request; the reply's data after the status. DisplayError when not carried out."""
        async with self._lock:
            for _ in range(RETRIES + 1):
                self._parser = proto.Parser()
                self._writer.write(frame)
                await self._writer.drain()
                try:
                    answer = await asyncio.wait_for_ms(self._read_frame(), ANSWER_TIMEOUT_MS)
                except asyncio.TimeoutError:
                    continue
                try:
                    status, data = proto.parse_reply(answer, cmd)
                except proto.DisplayProtocolError:
                    continue
                if status == proto.ACK:
                    return data
                raise DisplayError(proto.STATUS_NAMES.get(status, "nak"))
            self.no_answers += 1
            raise DisplayError("no_answer")

    async def power(self, on):
        """Switch the panel on or to standby."""
        await self.request(proto.power_set(on, self.addr), proto.POWER_SET)

    async def query_power(self):
        """True if the panel is on."""
        return proto.decode_power(await self.request(proto.power_get(self.addr), proto.POWER_GET))

    async def set_input(self, source):
        """Show input `source` (a name of protocol.display.SOURCES)."""
        await self.request(proto.input_set(source, self.addr), proto.INPUT_SET)

    async def query_input(self):
        """Name of the input shown."""
        return proto.decode_input(await self.request(proto.input_get(self.addr), proto.INPUT_GET))

    async def query_hours(self):
        """The display's own count of hours on."""
        return proto.decode_hours(await self.request(proto.hours_get(self.addr), proto.HOURS_GET))
