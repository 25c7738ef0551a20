"""A stand-in for the school gateway on the broker: records every uplink of one school, validated
against the protocol, and sends downlinks and end-to-end event acks as the gateway does.

Tests and benches of the real firmware use it where the whole gateway would be more than they need.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from protocol import messages, topics

WAIT_S = 20.0


@dataclass
class Received:
    """One message a device published, validated against the protocol."""

    topic: str
    leaf: str
    device: str
    msg: dict[str, Any]
    retain: bool
    at: float


class Observer:
    """Paho client that records every uplink of one school and can play the gateway's part.

    Messages that fail validation are not recorded but kept in `invalid` as (topic, payload, why).
    """

    def __init__(self, port: int, school: str, host: str = "127.0.0.1") -> None:
        self.school = school
        self.received: list[Received] = []
        self.invalid: list[tuple[str, bytes, str]] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"observer-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(WAIT_S):
            self.stop()
            raise TimeoutError("observer did not subscribe")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        # Again on every reconnect: the session is clean, so a restarted broker forgets the subscription.
        client.subscribe(topics.school_uplink_filter(self.school), qos=1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._subscribed.set()

    def _on_message(self, client, userdata, message) -> None:
        try:
            _, device, msg = messages.decode_uplink(message.topic, message.payload)
        except messages.ProtocolError as exc:
            with self._cond:
                self.invalid.append((message.topic, message.payload, str(exc)))
            return
        leaf = topics.parse(message.topic)[3]
        with self._cond:
            self.received.append(
                Received(message.topic, leaf, device, msg, bool(message.retain), time.time()))
            self._cond.notify_all()

    def select(self, kind: str | None = None, device: str | None = None, **fields: Any) -> list[Received]:
        """Messages so far of `kind` (and device, and field values), oldest first."""
        with self._cond:
            items = list(self.received)
        return [
            r for r in items
            if (kind is None or r.msg["kind"] == kind)
            and (device is None or r.device == device)
            and all(r.msg.get(k) == v for k, v in fields.items())
        ]

    def wait_for(self, kind: str, device: str | None = None, count: int = 1, timeout: float = WAIT_S,
                 where: Callable[[Received], bool] | None = None, **fields: Any) -> list[Received]:
        """Wait until at least `count` matching messages have arrived; return all matches.

        AssertionError on timeout, naming what arrived: callers are mostly tests.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [r for r in self.select(kind, device, **fields) if where is None or where(r)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"waited {timeout} s for {count} {kind} {fields}; got {len(found)}; "
                        f"all: {[r.msg for r in self.received][-20:]}")
                self._cond.wait(min(left, 0.2))

    def send(self, device: str, leaf: str, payload: bytes | dict[str, Any], qos: int = 1) -> None:
        """Publish to a device's downlink `leaf`, as the gateway does."""
        data = messages.encode(payload) if isinstance(payload, dict) else payload
        info = self.client.publish(topics.down(self.school, device, leaf), data, qos=qos)
        info.wait_for_publish(WAIT_S)

    def event_ack(self, device: str, received: list[Received]) -> None:
        """The gateway's end-to-end ack for these events."""
        keys = [[r.msg["boot"], r.msg["seq"]] for r in received]
        self.send(device, topics.EVENT_ACK, messages.event_ack(keys))

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
