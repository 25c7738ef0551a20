"""The broker link's own PUBLISH reader: whatever way the stream is cut into reads, every message comes
out once, whole and in order, and other packets still reach paho."""

import random

import paho.mqtt.client as mqtt
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.broker import Incoming, _FastClient


def publish(topic: str, payload: bytes, qos: int, mid: int) -> bytes:
    body = len(topic.encode()).to_bytes(2, "big") + topic.encode()
    body += mid.to_bytes(2, "big") if qos else b""
    body += payload
    length, n = bytearray(), len(body)
    while True:
        byte, n = n & 127, n >> 7
        length.append(byte | 128 if n else byte)
        if not n:
            break
    return bytes([0x30 | qos << 1]) + bytes(length) + body


class ChunkedSocket:
    """Hands out a byte stream in the given read sizes, then says it would block."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self.data, self.sizes = data, sizes

    def recv(self, bufsize: int) -> bytes:
        if not self.data:
            raise BlockingIOError
        size = min(bufsize, self.sizes.pop(0) if self.sizes else len(self.data))
        out, self.data = self.data[:size], self.data[size:]
        return out

    def pending(self) -> int:
        return 0

    def close(self) -> None:
        self.data = b""


messages = st.lists(
    st.tuples(st.sampled_from(["classops/v1/S1/up/esp32-246f00000001/attendance", "a/b", "温度/1"]),
              st.binary(max_size=300), st.sampled_from([0, 1]), st.integers(1, 65535)),
    min_size=1, max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(msgs=messages, seed=st.integers(0, 2**32))
def test_every_publish_comes_out_once_whatever_the_reads(msgs: list[tuple[str, bytes, int, int]], seed: int) -> None:
    got: list[Incoming] = []
    client = _FastClient(mqtt.CallbackAPIVersion.VERSION2, client_id="t", on_publishes=got.extend)
    stream = b""
    for n, (topic, payload, qos, mid) in enumerate(msgs):
        stream += publish(topic, payload, qos, mid)
        if n % 3 == 1:
            stream += b"\xd0\x00"  # PINGRESP, handled by paho in between
    rng = random.Random(seed)
    client._sock = ChunkedSocket(stream, [rng.randint(1, 64) for _ in range(len(stream))])  # type: ignore[assignment]
    client._ping_t = 1.0
    while client._sock.data:  # type: ignore[union-attr]
        assert client.loop_read() == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
    assert [(m.topic, m.payload, m.qos, m.mid if m.qos else 0) for m in got] == [
        (t, p, q, mid if q else 0) for t, p, q, mid in msgs
    ]
    assert client._rbuf == b""
    if len(msgs) > 1:
        assert client._ping_t == 0  # the PINGRESPs reached paho


def test_a_malformed_length_is_a_protocol_error() -> None:
    client = _FastClient(mqtt.CallbackAPIVersion.VERSION2, client_id="t", on_publishes=lambda batch: None)
    client._sock = ChunkedSocket(b"\x30\xff\xff\xff\xff\x01", [])  # type: ignore[assignment]
    assert client._packet_read() == mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL
