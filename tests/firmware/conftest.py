"""Fixtures for firmware tests: a real Mosquitto, the hardware bus, a paho observer standing in for
the gateway, and a launcher for real firmware VMs."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from protocol import messages, topics
from simulator.firmware import FirmwareProcess, write_device_config
from simulator.hwbus import HardwareBus
from tests.support.broker import Mosquitto

SCHOOL = "T001"
DEVICE = "esp32-a1b2c3d4e5f6"
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
    """Paho client that records every uplink of one school and can play the gateway's part."""

    def __init__(self, port: int, school: str = SCHOOL) -> None:
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
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(WAIT_S):
            raise TimeoutError("observer did not subscribe")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
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
        """Wait until at least `count` matching messages have arrived; return all matches."""
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


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path / "broker")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def hwbus() -> Iterator[HardwareBus]:
    with HardwareBus() as bus:
        yield bus


@pytest.fixture
def observer(broker: Mosquitto) -> Iterator[Observer]:
    obs = Observer(broker.port)
    yield obs
    obs.stop()
    assert not obs.invalid, f"devices published invalid messages: {obs.invalid}"


@pytest.fixture
def launch(tmp_path: Path, broker: Mosquitto, hwbus: HardwareBus) -> Iterator[Callable[..., FirmwareProcess]]:
    """Start a firmware VM for one device (or several: pass device_ids); killed after the test."""
    started: list[FirmwareProcess] = []
    counter = itertools.count()

    def start(device_id: str = DEVICE, device_ids: list[str] | None = None, **fields: Any) -> FirmwareProcess:
        settings: dict[str, Any] = {
            "school": SCHOOL, "broker_port": broker.port, "hwbus": "{}:{}".format(*hwbus.address),
            "health_s": 1, "resend_s": 1, "debounce_s": 3, "keepalive_s": 10,
        }
        settings.update(fields)
        paths = []
        for dev in device_ids or [device_id]:
            paths.append(write_device_config(tmp_path / dev / "config.json", device_id=dev,
                                              data_dir=str(tmp_path / dev / "flash"), **settings))
        proc = FirmwareProcess(paths, log_path=tmp_path / f"firmware-{next(counter)}.log")
        proc.start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
    for proc in started:
        print(f"--- {proc.log_path}\n{proc.log_tail(60)}")


@pytest.fixture
def display(hwbus: HardwareBus) -> Iterator[Any]:
    """A virtual smart display on a pty, its mains on the device's relay and its power on the
    device's power-sense input, as the classroom wires them."""
    from simulator.display import VirtualDisplay

    def relay(device_id: str, name: str, value: str) -> None:
        if name == "relay":
            panel.set_mains(value == "1")

    def sense(panel: VirtualDisplay) -> None:
        try:
            hwbus.set_power_sense(DEVICE, panel.power, timeout=2)
        except Exception:
            pass

    panel = VirtualDisplay(mains=False, on_change=sense)
    hwbus.on_output = relay
    panel.start()
    yield panel
    hwbus.on_output = None
    panel.stop()


def poll(condition: Callable[[], Any], timeout: float = WAIT_S, what: str = "condition") -> Any:
    """Poll `condition` until it is truthy; its value. AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
