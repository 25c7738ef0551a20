"""A small MQTT 3.1.1 client on asyncio streams, for MicroPython and the unix port.

Transport failures surface as OSError, broken protocol as MQTTError. The client keeps no session
(clean_session=1): the device's flash ring buffer, not the broker, is what makes events durable.
"""

import asyncio
import struct
from array import array

from app.waits import wait_event_ms

try:
    from time import ticks_diff, ticks_ms
except ImportError:  # CPython, for tools that import this module to inspect it
    from time import monotonic

    def ticks_ms():
        return int(monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b


CONNECT_TIMEOUT_S = 10
SUBACK_TIMEOUT_S = 10
# QoS 1 publishes that may await their PUBACK at once; more wait for room. Bounds the heap during a
# replay burst and paces the device to what the broker takes.
MAX_INFLIGHT = 16
# Largest packet accepted from the broker: commands and configs are small, anything bigger is junk
# that must not exhaust the heap.
MAX_INCOMING = 4096 + 256
# Bytes asked of the socket at once. Each read from an asyncio stream is a trip through the scheduler
# (and a poll of every socket of the VM); reading what is there, several small packets at a time,
# instead of a byte for the type, a byte per length byte and then the body, saves most of those trips.
READ_CHUNK = 256

_CONNECT = 0x10
_CONNACK = 0x20
_PUBLISH = 0x30
_PUBACK = 0x40
_SUBSCRIBE = 0x82
_SUBACK = 0x90
_PINGREQ = b"\xc0\x00"
_PINGRESP = 0xD0
_DISCONNECT = b"\xe0\x00"

_ETIMEDOUT = 110
_ECONNRESET = 104


class MQTTError(Exception):
    """The broker broke or refused the protocol; `code` is the CONNACK/SUBACK code when there is one."""

    def __init__(self, msg, code=None):
        super().__init__(msg)
        self.code = code


def _put_varlen(buf, pos, n):
    while True:
        byte = n & 0x7F
        n >>= 7
        buf[pos] = byte | 0x80 if n else byte
        pos += 1
        if not n:
            return pos


def _put_str(buf, pos, data):
    n = len(data)
    buf[pos] = n >> 8
    buf[pos + 1] = n & 0xFF
    buf[pos + 2:pos + 2 + n] = data
    return pos + 2 + n


def _b(value):
    return value.encode() if isinstance(value, str) else value


class MQTTClient:
    """One connection to a broker; make a new instance or call `connect` again after a failure.

    `on_message(topic, payload)` is called for every PUBLISH received (topic as str, payload bytes);
    it may be a plain function or a coroutine function.
    """

    def __init__(self, client_id, host, port=1883, user=None, password=None, keepalive=60,
                 on_message=None):
        self.client_id = _b(client_id)
        self.host = host
        self.port = port
        self.user = _b(user) if user else None
        self.password = _b(password) if password else None
        self.keepalive = keepalive
        self.on_message = on_message
        self.will = None
        self.connected = False
        self._reader = None
        self._writer = None
        # Received bytes not yet handled: the start of the next packet(s).
        self._rbuf = b""
        self._lock = asyncio.Lock()
        self._pid = 0
        # Packet ids awaiting PUBACK; 0 marks a free place.
        self._inflight = array("H", bytes(2 * MAX_INFLIGHT))
        self._room = asyncio.Event()
        self._suback = None
        self._last_rx = 0
        self._run_task = None
        self._abort_reason = None
        # Header scratch: fixed header (max 5) + topic length + packet id leaves room for long topics.
        self._hdr = bytearray(160)

    def set_will(self, topic, payload, retain=True, qos=1):
        """Last will the broker publishes if this client vanishes without DISCONNECT."""
        self.will = (_b(topic), _b(payload), retain, qos)

    async def connect(self):
        """Open the TCP link, send CONNECT and wait for CONNACK; raise OSError or MQTTError."""
        self.close()
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), CONNECT_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise OSError(_ETIMEDOUT)
        flags = 0x02
        size = 10 + 2 + len(self.client_id)
        if self.will:
            topic, msg, retain, qos = self.will
            flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
            size += 4 + len(topic) + len(msg)
        if self.user:
            flags |= 0x80
            size += 2 + len(self.user)
            if self.password:
                flags |= 0x40
                size += 2 + len(self.password)
        pkt = bytearray(size + 5)
        pkt[0] = _CONNECT
        pos = _put_varlen(pkt, 1, size)
        pos = _put_str(pkt, pos, b"MQTT")
        pkt[pos] = 4
        pkt[pos + 1] = flags
        pkt[pos + 2] = self.keepalive >> 8
        pkt[pos + 3] = self.keepalive & 0xFF
        pos = _put_str(pkt, pos + 4, self.client_id)
        if self.will:
            pos = _put_str(pkt, pos, self.will[0])
            pos = _put_str(pkt, pos, self.will[1])
        if self.user:
            pos = _put_str(pkt, pos, self.user)
            if self.password:
                pos = _put_str(pkt, pos, self.password)
        await self._send(memoryview(pkt)[:pos])
        try:
            kind, body = await asyncio.wait_for(self._read_packet(), CONNECT_TIMEOUT_S)
        except asyncio.TimeoutError:
            self.close()
            raise OSError(_ETIMEDOUT)
        if kind != _CONNACK or len(body) != 2:
            raise MQTTError("expected CONNACK, got packet type 0x%02x" % kind)
        if body[1]:
            raise MQTTError("broker refused the connection, code %d" % body[1], body[1])
        for i in range(MAX_INFLIGHT):
            self._inflight[i] = 0
        self.connected = True

    async def _send(self, *parts):
        w = self._writer
        if w is None:
            raise OSError(_ECONNRESET)
        async with self._lock:
            for part in parts:
                w.write(part)
            # MicroPython's stream writes at once what the socket takes and keeps the rest in
            # `out_buf`; drain only then: an empty drain is still a trip through the scheduler.
            if getattr(w, "out_buf", True):
                await w.drain()

    async def _more(self, r):
        data = await r.read(READ_CHUNK)
        if not data:
            raise OSError(_ECONNRESET)
        self._rbuf = self._rbuf + data if self._rbuf else data

    async def _read_packet(self):
        r = self._reader
        if r is None:
            raise OSError(_ECONNRESET)
        try:
            # Fixed header: the type byte and 1-4 bytes of remaining length.
            pos = 1
            n = 0
            shift = 0
            while True:
                while len(self._rbuf) <= pos:
                    await self._more(r)
                byte = self._rbuf[pos]
                pos += 1
                n |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    break
                shift += 7
                if shift > 21:
                    raise MQTTError("malformed remaining length")
            if n > MAX_INCOMING:
                raise MQTTError("packet of %d bytes exceeds %d" % (n, MAX_INCOMING))
            buf = self._rbuf
            end = pos + n
            if len(buf) < end:
                # The rest of a large packet in one read of exactly what is missing.
                buf += await r.readexactly(end - len(buf))
        except EOFError:
            raise OSError(_ECONNRESET)
        first = buf[0]
        body = buf[pos:end] if n else b""
        self._rbuf = buf[end:] if len(buf) > end else b""
        self._last_rx = ticks_ms()
        return first, body

    def _next_pid(self):
        pid = self._pid
        while True:
            pid = pid + 1 if pid < 65535 else 1
            if not self._awaiting(pid):
                self._pid = pid
                return pid

    async def publish(self, topic, payload, retain=False, qos=0):
        """Send one PUBLISH; return its packet id (0 for QoS 0). QoS 1 is tracked until PUBACK."""
        if not self.connected:
            raise OSError(_ECONNRESET)
        topic = _b(topic)
        # Wait for room before touching the shared header buffer: another publish may fill it
        # while this one waits.
        place = await self._inflight_place() if qos else 0
        hdr = self._hdr
        size = 2 + len(topic) + len(payload) + (2 if qos else 0)
        if len(topic) + 9 > len(hdr):
            hdr = bytearray(len(topic) + 9)
        hdr[0] = _PUBLISH | (qos << 1) | (1 if retain else 0)
        pos = _put_varlen(hdr, 1, size)
        pos = _put_str(hdr, pos, topic)
        pid = 0
        if qos:
            pid = self._next_pid()
            hdr[pos] = pid >> 8
            hdr[pos + 1] = pid & 0xFF
            pos += 2
            self._inflight[place] = pid
        try:
            # The header is copied before the first await: another publish may refill the buffer.
            await self._send(bytes(memoryview(hdr)[:pos]), payload)
        except Exception:
            if qos:
                self._inflight[place] = 0
            raise
        return pid

    async def _inflight_place(self):
        while True:
            for i in range(MAX_INFLIGHT):
                if not self._inflight[i]:
                    return i
            if not self.connected:
                raise OSError(_ECONNRESET)
            self._room.clear()
            await wait_event_ms(self._room, 1000)

    def acked(self, pid):
        """True once the broker's PUBACK for `pid` has arrived (or for QoS 0's pid 0)."""
        return not pid or not self._awaiting(pid)

    def _awaiting(self, pid):
        # MicroPython's array has no `in`.
        for held in self._inflight:
            if held == pid:
                return True
        return False

    async def wait_acked(self, pid, timeout_ms):
        """Wait up to `timeout_ms` for the PUBACK of `pid`; return whether it came."""
        start = ticks_ms()
        while not self.acked(pid) and self.connected:
            if ticks_diff(ticks_ms(), start) > timeout_ms:
                return False
            await asyncio.sleep_ms(10)
        return self.acked(pid)

    def inflight(self):
        """Number of QoS 1 publishes still waiting for their PUBACK."""
        n = 0
        for pid in self._inflight:
            if pid:
                n += 1
        return n

    async def subscribe(self, topic_filter, qos=1):
        """SUBSCRIBE to one filter and wait for its SUBACK; call before `run`.

        Packets other than the SUBACK that arrive meanwhile (a retained message, say) are handled
        as `run` would handle them.
        """
        topic_filter = _b(topic_filter)
        pid = self._next_pid()
        size = 2 + 2 + len(topic_filter) + 1
        pkt = bytearray(size + 5)
        pkt[0] = _SUBSCRIBE
        pos = _put_varlen(pkt, 1, size)
        pkt[pos] = pid >> 8
        pkt[pos + 1] = pid & 0xFF
        pos = _put_str(pkt, pos + 2, topic_filter)
        pkt[pos] = qos
        await self._send(memoryview(pkt)[:pos + 1])
        self._suback = None
        start = ticks_ms()
        while self._suback is None:
            if ticks_diff(ticks_ms(), start) > SUBACK_TIMEOUT_S * 1000:
                raise OSError(_ETIMEDOUT)
            try:
                kind, body = await asyncio.wait_for(self._read_packet(), SUBACK_TIMEOUT_S)
            except asyncio.TimeoutError:
                raise OSError(_ETIMEDOUT)
            await self._dispatch(kind, body)
        got_pid, code = self._suback
        if got_pid != pid:
            raise MQTTError("SUBACK for packet %d, expected %d" % (got_pid, pid))
        if code == 0x80:
            raise MQTTError("broker refused subscription to %s" % topic_filter.decode(), code)
        return code

    async def _dispatch(self, first, body):
        kind = first & 0xF0
        if kind == _PUBLISH:
            qos = (first >> 1) & 3
            n = (body[0] << 8) | body[1]
            topic = body[2:2 + n].decode()
            pos = 2 + n
            if qos == 1:
                pid = (body[pos] << 8) | body[pos + 1]
                pos += 2
            elif qos:
                raise MQTTError("QoS %d delivery was never subscribed for" % qos)
            if self.on_message is not None:
                res = self.on_message(topic, body[pos:])
                if res is not None and hasattr(res, "send"):
                    await res
            if qos == 1:
                # Acknowledged after handling, so that a message whose handling crashed the link is
                # delivered again.
                await self._send(struct.pack(">BBH", _PUBACK, 2, pid))
        elif kind == _PUBACK:
            if len(body) == 2:
                pid = (body[0] << 8) | body[1]
                for i in range(MAX_INFLIGHT):
                    if self._inflight[i] == pid:
                        self._inflight[i] = 0
                        self._room.set()
                        break
        elif kind == _SUBACK:
            if len(body) < 3:
                raise MQTTError("short SUBACK")
            self._suback = ((body[0] << 8) | body[1], body[2])
        elif kind != _PINGRESP:
            raise MQTTError("unexpected packet type 0x%02x" % first)

    async def run(self):
        """Receive and handle packets and keep the link alive until it fails; always raises.

        A link that stays silent for 1.5 keepalive periods counts as dead (OSError ETIMEDOUT).
        """
        self._run_task = asyncio.current_task()
        self._abort_reason = None
        pinger = asyncio.create_task(self._keepalive())
        try:
            while True:
                kind, body = await self._read_packet()
                await self._dispatch(kind, body)
        except asyncio.CancelledError:
            if self._abort_reason is None:
                raise
            raise OSError(self._abort_reason)
        finally:
            self._run_task = None
            pinger.cancel()
            self.close()

    def abort(self, errno=_ECONNRESET):
        """Drop the link from another task; `run` then raises OSError(errno)."""
        self.connected = False
        task = self._run_task
        if task is not None and self._abort_reason is None:
            self._abort_reason = errno
            task.cancel()
        elif task is None:
            self.close()

    async def _keepalive(self):
        if not self.keepalive:
            return
        period_ms = self.keepalive * 500
        self._last_rx = ticks_ms()
        while True:
            await asyncio.sleep_ms(period_ms)
            if ticks_diff(ticks_ms(), self._last_rx) > self.keepalive * 1500:
                self.abort(_ETIMEDOUT)
                return
            try:
                await self._send(_PINGREQ)
            except OSError:
                self.abort()
                return

    async def disconnect(self):
        """Send DISCONNECT (so the broker drops the will) and close."""
        try:
            if self.connected:
                await self._send(_DISCONNECT)
        finally:
            self.close()

    def close(self):
        """Close the socket without ceremony; safe to call twice."""
        self.connected = False
        w = self._writer
        self._reader = self._writer = None
        self._rbuf = b""
        if w is not None:
            try:
                w.close()
                # MicroPython's Stream.close() leaves the socket open (wait_closed would close it,
                # but that needs a coroutine); close it here so that reconnects do not leak sockets.
                sock = getattr(w, "s", None)
                if sock is not None:
                    sock.close()
            except Exception:
                pass
