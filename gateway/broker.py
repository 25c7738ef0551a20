"""The gateway's link to the school's Mosquitto, with manual acknowledgement of QoS 1 messages."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from gateway.config import GatewaySettings
from gateway.metrics import Metrics
from protocol import topics

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
RECV_CHUNK = 256 * 1024


class _FastClient(mqtt.Client):
    """paho's client with two costs of its read path taken off, for a consumer of tens of thousands of
    messages a second.

    - paho reads a packet with three or four small recv() calls and handles one packet per select();
      here reads come out of a buffer filled by large recv() calls, and each wake-up drains it.
    - paho matches every message's topic against per-topic callbacks; the gateway registers none.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._rbuf = b""
        self._rpos = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(RECV_CHUNK)
            if not data:
                return b""
            self._rbuf, self._rpos = data, 0
        start = self._rpos
        self._rpos = min(start + bufsize, len(self._rbuf))
        return self._rbuf[start:self._rpos]

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        rc = super().loop_read(max_packets)
        # Packets already in the buffer would otherwise wait for the socket's next readiness.
        while (rc == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS and self._rpos < len(self._rbuf)
               and self._sock is not None):
            rc = super().loop_read(max_packets)
        return rc

    def _sock_close(self) -> None:
        self._rbuf, self._rpos = b"", 0
        super()._sock_close()

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        on_message = self.on_message
        if on_message is not None:
            with self._in_callback_mutex:
                on_message(self, self._userdata, message)


@dataclass(frozen=True)
class Incoming:
    """One message as the broker delivered it; `mid` and `qos` are needed to acknowledge it."""

    topic: str
    payload: bytes | bytearray
    qos: int
    mid: int
    retain: bool
    received: float = 0.0


class BrokerLink:
    """paho-mqtt client in its own network thread; messages are handed to `on_message` unacknowledged.

    The session is persistent (clean_session=False, a fixed client id), so QoS 1 messages that arrive
    while the gateway is down wait for it in the broker, and nothing is acknowledged before the store
    has committed it.
    """

    def __init__(self, settings: GatewaySettings, on_message: Callable[[Incoming], None],
                 metrics: Metrics) -> None:
        self._settings = settings
        self._on_message = on_message
        self._metrics = metrics
        self.connected = threading.Event()
        self._client = _FastClient(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            clean_session=False,
            manual_ack=True,
        )
        if settings.broker.username:
            self._client.username_pw_set(settings.broker.username, settings.broker.password or None)
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message

    def start(self) -> None:
        """Connect in the background; paho reconnects by itself after any loss."""
        broker = self._settings.broker
        self._client.connect_async(broker.host, broker.port, keepalive=broker.keepalive_s)
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect cleanly and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a delivered message to the broker (a no-op for QoS 0)."""
        if qos > 0:
            self._client.ack(mid, qos)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Queue a message for the broker."""
        self._client.publish(topic, payload, qos=qos, retain=retain)

    def _handle_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                        reason: mqtt.ReasonCode, properties: object) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            self._metrics.inc("broker_connect_failures")
            return
        log.info("connected to broker %s:%s (session present: %s)",
                 self._settings.broker.host, self._settings.broker.port, flags.session_present)
        self._metrics.inc("broker_connects")
        client.subscribe(topics.school_uplink_filter(self._settings.school), qos=1)
        self.connected.set()

    def _handle_disconnect(self, client: mqtt.Client, userdata: object, flags: mqtt.DisconnectFlags,
                           reason: mqtt.ReasonCode, properties: object) -> None:
        self.connected.clear()
        log.warning("disconnected from broker: %s", reason)

    def _handle_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self._on_message(Incoming(message.topic, message.payload, message.qos, message.mid, message.retain,
                                  time.monotonic()))
