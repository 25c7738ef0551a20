"""The gateway's link to the school's Mosquitto, with manual acknowledgement of QoS 1 messages."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

import paho.mqtt.client as mqtt

from gateway.config import GatewaySettings
from gateway.metrics import Metrics
from gateway.paho_internals import PahoInternals
from protocol import topics

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
RECV_CHUNK = 256 * 1024
READ_GATE_WAIT_S = 0.05
SMALL_READ = 16 * 1024
SMALL_READ_PAUSE_S = 0.001
MAX_REMAINING_LENGTH_BYTES = 4
_PUBLISH = 0x30


class Incoming(NamedTuple):
    """One message as the broker delivered it; `mid`, `qos` and `link` are needed to acknowledge it."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    received: float = 0.0
    # Which broker connection delivered it: an ack belongs to the connection that delivered the message.
    link: int = 0


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 127
        n >>= 7
        out.append(byte | 128 if n else byte)
        if not n:
            return bytes(out)


def publish_packet(topic: str, payload: bytes) -> bytes:
    """A QoS 0 PUBLISH packet, as the broker link sends it alongside acknowledgements."""
    name = topic.encode()
    body_len = 2 + len(name) + len(payload)
    return b"".join((bytes((_PUBLISH,)), _remaining_length(body_len), len(name).to_bytes(2, "big"), name,
                     payload))


class _FastClient(PahoInternals):
    """paho's client with its per-message costs taken off the read and acknowledge paths, for a consumer
    of tens of thousands of messages a second.

    - paho reads a packet with three or four small recv() calls, handles one packet per select(), and
      builds a message object and runs its callback machinery for each; here one large recv() fills a
      buffer, every complete PUBLISH in it is cut out directly, and the batch goes to `on_publishes` in
      one call. Every other packet (CONNACK, SUBACK, PINGRESP, PUBACK of the gateway's own publishes, a
      QoS 2 PUBLISH) still goes through paho's own handling.
    - acknowledgements and the gateway's QoS 0 replies of one batch go out as one write (`send_raw`)
      instead of one queued packet each.
    Connection, keepalive, reconnection, subscription and the gateway's own publishes stay paho's; what
    this needs of paho's internals is in paho_internals.py.
    """

    def __init__(self, *args: object, on_publishes: Callable[[list[Incoming]], None],
                 read_gate: Callable[[float], bool] | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._rbuf = b""
        self._on_publishes = on_publishes
        self._read_gate = read_gate
        self._last_read = 0
        self.reads = 0
        self.read_bytes = 0
        self.link = 0

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        if not self.has_socket():
            return mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN
        if self._read_gate is not None and not self._read_gate(READ_GATE_WAIT_S):
            # The consumer is behind: leave the data with the broker for now. Returning lets paho's loop
            # write pending acks and keep the connection alive meanwhile.
            return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
        rc = self.read_packets()
        if rc > 0:
            return self.read_failed(rc)
        if 0 < self._last_read < SMALL_READ:
            # Under a steady stream, a short pause lets the next read carry many messages instead of a
            # few: each wake-up of this thread costs as much as handling a dozen messages.
            time.sleep(SMALL_READ_PAUSE_S)
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def read_packets(self) -> mqtt.MQTTErrorCode:
        """Read what the socket has; hand every complete PUBLISH on in one batch, let paho handle the rest."""
        try:
            data = self.receive(RECV_CHUNK)
        except BlockingIOError:
            return mqtt.MQTTErrorCode.MQTT_ERR_AGAIN
        except OSError as err:
            log.warning("broker socket read failed: %s", err)
            return mqtt.MQTTErrorCode.MQTT_ERR_CONN_LOST
        if not data:
            return mqtt.MQTTErrorCode.MQTT_ERR_CONN_LOST
        self._last_read = len(data)
        self.reads += 1
        self.read_bytes += len(data)
        self.mark_received()
        # Usually only the tail of the last read (a packet cut in two) is left over.
        buf = self._rbuf + data if self._rbuf else data
        received = time.monotonic()
        link = self.link
        publishes: list[Incoming] = []
        rc = mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
        pos, size = 0, len(buf)
        while pos + 1 < size:
            command = buf[pos]
            length, mult, i = 0, 1, pos + 1
            while i < size:
                byte = buf[i]
                length += (byte & 127) * mult
                mult <<= 7
                i += 1
                if not byte & 128:
                    break
                if i - pos > MAX_REMAINING_LENGTH_BYTES:
                    log.error("broker sent a packet with a malformed length")
                    return mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL
            else:
                break  # the length itself is not complete yet
            end = i + length
            if end > size:
                break
            if command & 0xF0 == _PUBLISH and not command & 0x04 and length >= 2:
                topic_end = i + 2 + (buf[i] << 8 | buf[i + 1])
                qos = command >> 1 & 3
                if qos:
                    mid = buf[topic_end] << 8 | buf[topic_end + 1]
                    start = topic_end + 2
                else:
                    mid, start = 0, topic_end
                # A topic that is not UTF-8 stays recognisably bad and is quarantined as a bad topic.
                publishes.append(Incoming(buf[i + 2:topic_end].decode(errors="replace"), buf[start:end],
                                          qos, mid, received, link))
            else:
                rc = self.handle_packet(command, buf[i:end])
                link = self.link  # a CONNACK just handled starts a new connection
            pos = end
            if rc != mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        self._rbuf = buf[pos:]
        if publishes:
            self.deliver(self._on_publishes, publishes)
        return rc

    def send_raw(self, data: bytes, link: int) -> bool:
        """Queue ready-made packets for the connection `link`; False if that connection is gone."""
        if link != self.link or not self.has_socket():
            return False
        self.queue_raw(data)
        return True

    def socket_closed(self) -> None:
        """Drop the tail of a packet the closed connection left unread."""
        self._rbuf = b""


class BrokerLink:
    """paho-mqtt client in its own network thread; messages are handed to `on_messages` unacknowledged.

    The session is persistent (clean_session=False, a fixed client id), so QoS 1 messages that arrive
    while the gateway is down wait for it in the broker, and nothing is acknowledged before the store
    has committed it.
    """

    def __init__(self, settings: GatewaySettings, on_messages: Callable[[list[Incoming]], None],
                 metrics: Metrics, read_gate: Callable[[float], bool] | None = None) -> None:
        self._settings = settings
        self._metrics = metrics
        self.connected = threading.Event()
        self._client = _FastClient(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            clean_session=False,
            manual_ack=True,
            on_publishes=on_messages,
            read_gate=read_gate,
        )
        # Always a user name: the school's broker refuses clients without one, and takes it as the
        # client id (a broker without a password file ignores it).
        self._client.username_pw_set(settings.broker_user, settings.broker.password or None)
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect

    def start(self) -> None:
        """Connect in the background; paho reconnects by itself after any loss."""
        broker = self._settings.broker
        self._client.connect_async(broker.host, broker.port, keepalive=broker.keepalive_s)
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect cleanly and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()

    def ack(self, messages: Iterable[Incoming], replies: Iterable[tuple[str, bytes]] = ()) -> int:
        """Acknowledge committed messages (QoS 1 ones; QoS 0 need none) and send QoS 0 `replies`
        (topic, payload) with them in one write. Return how many acks went out.

        Messages delivered on an earlier connection are not acknowledged on this one: the broker sends
        them again, the store drops the copies by their key, and the copies are acknowledged.
        """
        link = self._client.link
        acks = [b"\x40\x02" + m.mid.to_bytes(2, "big") for m in messages if m.qos == 1 and m.link == link]
        packets = acks + [publish_packet(topic, payload) for topic, payload in replies]
        if packets and not self._client.send_raw(b"".join(packets), link):
            return 0
        return len(acks)

    def reads(self) -> tuple[int, int]:
        """How many reads from the broker's socket so far, and how many bytes they brought."""
        return self._client.reads, self._client.read_bytes

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Queue a message for the broker."""
        self._client.publish(topic, payload, qos=qos, retain=retain)

    def _handle_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                        reason: mqtt.ReasonCode, properties: object) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            self._metrics.inc("broker_connect_failures")
            return
        self._client.link += 1
        log.info("connected to broker %s:%s (session present: %s)",
                 self._settings.broker.host, self._settings.broker.port, flags.session_present)
        self._metrics.inc("broker_connects")
        client.subscribe(topics.school_uplink_filter(self._settings.school), qos=1)
        self.connected.set()

    def _handle_disconnect(self, client: mqtt.Client, userdata: object, flags: mqtt.DisconnectFlags,
                           reason: mqtt.ReasonCode, properties: object) -> None:
        self.connected.clear()
        log.warning("disconnected from broker: %s", reason)
