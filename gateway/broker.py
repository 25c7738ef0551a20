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


@dataclass(frozen=True)
class Incoming:
    """One message as the broker delivered it; `mid` and `qos` are needed to acknowledge it."""

    topic: str
    payload: bytes
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
        self._client = mqtt.Client(
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
        self._metrics.inc("messages_in")
        self._on_message(Incoming(message.topic, message.payload, message.qos, message.mid, message.retain,
                                  time.monotonic()))
