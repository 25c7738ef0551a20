"""The gateway against a real Mosquitto and a real cloud server: commit, ack, pseudonymise, sync, reject."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway.app import Gateway
from gateway.config import load_settings
from gateway.privacy import card_pseudonym
from protocol import messages, topics
from simulator.stack import CloudServer, Mosquitto, gateway_toml, http_json, wait_for

pytestmark = pytest.mark.slow

SCHOOL = "S042"
SECRET = "s3cret-s3cret-s3cret"
DEV = "esp32-246f28000001"
BOOT = "1234abcd"


def backlog(gateway: Gateway) -> int:
    """Records waiting for the cloud, read on a connection of the test's own."""
    with sqlite3.connect(f"file:{gateway.settings.db_path}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT COUNT(*) FROM record WHERE sync_state = 0").fetchone()[0])


class RunningGateway:
    """A Gateway on its own event loop in a thread, so the test can look at its metrics and store."""

    def __init__(self, config: Path) -> None:
        self.gateway = Gateway(load_settings(config))
        self._thread = threading.Thread(target=lambda: asyncio.run(self.gateway.run()), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        wait_for(lambda: self.gateway._loop is not None, 10, "the gateway loop")
        loop = self.gateway._loop
        assert loop is not None
        loop.call_soon_threadsafe(self.gateway.request_stop)
        self._thread.join(timeout=20)
        assert not self._thread.is_alive()


class Observer:
    """A paho client standing in for a device: publishes, and collects what the gateway sends back."""

    def __init__(self, port: int) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="observer")
        self.client.on_message = lambda c, u, m: self.received.append((m.topic, m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topics.device_downlink_filter(SCHOOL, DEV), qos=1)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def acked(self) -> set[tuple[str, int]]:
        keys: set[tuple[str, int]] = set()
        for topic, payload in self.received:
            if topic.endswith("/" + topics.EVENT_ACK):
                keys.update((b, s) for b, s in messages.decode(payload, topics.EVENT_ACK)["keys"])
        return keys

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Mosquitto, CloudServer, Path, str]]:
    broker = Mosquitto(tmp_path / "broker")
    cloud = CloudServer(tmp_path / "cloud")
    try:
        broker.start()
        cloud.start()
        cloud.add_school(SCHOOL, "Test school")
        cloud.add_user("admin42", "school-pass-123", "school_admin", SCHOOL)
        token = cloud.add_gateway(SCHOOL)["token"]
        config = tmp_path / "gateway.toml"
        config.write_text(gateway_toml(school=SCHOOL, school_secret=SECRET, data_dir=tmp_path / "gw",
                                       broker_port=broker.port, cloud_url=cloud.url, cloud_token=token,
                                       heartbeat_s=1.0))
        yield broker, cloud, config, cloud.login("admin42", "school-pass-123")
    finally:
        cloud.stop()
        broker.stop()


def tap(seq: int, card: str) -> bytes:
    return messages.encode(messages.message(messages.ATTENDANCE, DEV, BOOT, seq, 1795454769 + seq,
                                            {"card": card, "hist": False}))


def test_good_messages_survive_bad_ones_beside_them(world) -> None:
    broker, cloud, config, token = world
    running = RunningGateway(config)
    observer = Observer(broker.port)
    try:
        wait_for(running.gateway.broker.connected.is_set, 10, "gateway connected")
        attendance_topic = topics.up(SCHOOL, DEV, topics.ATTENDANCE)
        observer.publish(attendance_topic, tap(1, "04a1b2c3"))
        observer.publish(attendance_topic, b"{not json")
        observer.publish(attendance_topic, json.dumps({"v": 1, "kind": "attendance"}).encode())
        observer.publish(topics.up(SCHOOL, "esp32-246f28000002", topics.ATTENDANCE), tap(2, "04a1b2c4"))
        observer.publish(attendance_topic, tap(3, "04a1b2c5"))
        observer.publish(attendance_topic, tap(3, "04a1b2c5"))  # a replay: acked again, stored once

        wait_for(lambda: observer.acked() >= {(BOOT, 1), (BOOT, 3)}, 10, "end-to-end acks")
        assert (BOOT, 2) not in observer.acked()

        def in_cloud() -> list[dict]:
            _, body = http_json("GET", cloud.url + "/api/v1/attendance-events", token=token)
            return list(body["items"])

        wait_for(lambda: len(in_cloud()) == 2, 15, "two events in the cloud")
        events = in_cloud()
        assert sorted(e["seq"] for e in events) == [1, 3]
        assert {e["card_pseudonym"] for e in events} == {card_pseudonym(SECRET, "04a1b2c3"),
                                                          card_pseudonym(SECRET, "04a1b2c5")}
        metrics = running.gateway.metrics
        assert metrics.get("messages_rejected", messages.BAD_JSON) == 1
        assert metrics.get("messages_rejected", messages.MISSING_FIELD) == 1
        assert metrics.get("messages_rejected", messages.DEVICE_MISMATCH) == 1
        assert metrics.get("messages_duplicate") == 1
        port = wait_for(lambda: running.gateway.status_port, 10, "the status page")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            exposition = resp.read().decode()
        assert 'classops_gateway_messages_rejected_total{reason="bad_json"} 1' in exposition
        assert "classops_gateway_commit_latency_seconds{quantile=\"0.99\"}" in exposition
        status, snapshot = http_json("GET", f"http://127.0.0.1:{port}/api/status")
        assert status == 200 and snapshot["school"] == SCHOOL
        with sqlite3.connect(f"file:{running.gateway.settings.db_path}?mode=ro", uri=True) as db:
            quarantined = {r for (r,) in db.execute("SELECT reason FROM quarantine")}
        assert quarantined == {messages.BAD_JSON, messages.MISSING_FIELD, messages.DEVICE_MISMATCH}
    finally:
        observer.close()
        running.stop()


def test_records_wait_for_the_cloud_and_catch_up(world) -> None:
    broker, cloud, config, token = world
    cloud.stop()
    running = RunningGateway(config)
    observer = Observer(broker.port)
    try:
        wait_for(running.gateway.broker.connected.is_set, 10, "gateway connected")
        topic = topics.up(SCHOOL, DEV, topics.ATTENDANCE)
        for seq in range(1, 21):
            observer.publish(topic, tap(seq, f"{seq:08x}"))
        # Committed and acknowledged to the device while the cloud is away.
        wait_for(lambda: len(observer.acked()) == 20, 10, "acks while the cloud is down")
        wait_for(lambda: running.gateway.metrics.get("sync_failures", "bulk") >= 1, 10, "a failed sync")
        assert backlog(running.gateway) == 20
        cloud.start()
        wait_for(lambda: backlog(running.gateway) == 0, 30, "the backlog to drain")
        _, body = http_json("GET", cloud.url + "/api/v1/attendance-events", token=token)
        assert sorted(e["seq"] for e in body["items"]) == list(range(1, 21))
    finally:
        observer.close()
        running.stop()


def test_poison_messages_are_quarantined_and_never_stop_the_school(world) -> None:
    """A retained birth nested 300 deep and a tap with a seq of 2**63 beside good taps: the gateway keeps
    running, acks and stores the good ones, quarantines and counts the bad ones, and after a restart the
    tap is not redelivered (the retained birth is, by the broker's design, and is quarantined again)."""
    broker, cloud, config, token = world
    other = "esp32-246f28000003"
    attendance_topic = topics.up(SCHOOL, DEV, topics.ATTENDANCE)
    birth = messages.encode(messages.message(messages.BIRTH, other, BOOT, 0, 1795454769, {
        "role": "attendance", "fw": "1", "app": "1", "reset": "power_on", "health_s": 60}))
    deep_birth = birth.replace(b'"role"', b'"x":' + b"[" * 300 + b"]" * 300 + b',"role"')
    huge_seq = tap(2, "04a1b2c4").replace(b'"seq":2', b'"seq":%d' % 2**63)
    observer = Observer(broker.port)
    observer.client.publish(topics.up(SCHOOL, other, topics.STATUS), deep_birth, qos=1,
                            retain=True).wait_for_publish(5)
    running = RunningGateway(config)
    try:
        wait_for(running.gateway.broker.connected.is_set, 10, "gateway connected")
        observer.publish(attendance_topic, tap(1, "04a1b2c3"))
        observer.publish(attendance_topic, huge_seq)
        observer.publish(attendance_topic, tap(3, "04a1b2c5"))
        wait_for(lambda: observer.acked() >= {(BOOT, 1), (BOOT, 3)}, 15, "end-to-end acks of the good taps")
        metrics = running.gateway.metrics
        wait_for(lambda: metrics.get("messages_rejected", messages.OUT_OF_RANGE) == 1, 10, "the seq counted")
        assert metrics.get("messages_rejected", messages.TOO_DEEP) == 1
        assert running._thread.is_alive()
        port = wait_for(lambda: running.gateway.status_port, 10, "the status page")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            exposition = resp.read().decode()
        assert 'classops_gateway_messages_rejected_total{reason="too_deep"} 1' in exposition
        assert 'classops_gateway_messages_rejected_total{reason="out_of_range"} 1' in exposition
    finally:
        running.stop()

    running = RunningGateway(config)
    try:
        wait_for(running.gateway.broker.connected.is_set, 10, "gateway connected again")
        observer.publish(attendance_topic, tap(4, "04a1b2c6"))
        wait_for(lambda: (BOOT, 4) in observer.acked(), 15, "the next tap acked after the restart")
        metrics = running.gateway.metrics
        wait_for(lambda: metrics.get("messages_rejected", messages.TOO_DEEP) == 1, 10, "the retained birth again")
        assert metrics.get("messages_rejected", messages.OUT_OF_RANGE) == 0
        assert running._thread.is_alive()

        def in_cloud() -> list[int]:
            _, body = http_json("GET", cloud.url + "/api/v1/attendance-events", token=token)
            return sorted(e["seq"] for e in body["items"])

        wait_for(lambda: in_cloud() == [1, 3, 4], 15, "the good taps in the cloud")
        with sqlite3.connect(f"file:{running.gateway.settings.db_path}?mode=ro", uri=True) as db:
            reasons = sorted(r for (r,) in db.execute("SELECT reason FROM quarantine"))
            payloads = [p for (p,) in db.execute("SELECT payload FROM quarantine WHERE reason='out_of_range'")]
        assert reasons == [messages.OUT_OF_RANGE, messages.TOO_DEEP, messages.TOO_DEEP]
        assert payloads == [huge_seq]
    finally:
        observer.close()
        running.stop()


def test_one_huge_integer_does_not_stall_the_school(world) -> None:
    """A tap with seq 2**63 and a birth with health_s 2**63 among good taps: the good taps are acked and
    the two counted as out of range, instead of a commit retried for ever with nothing acked."""
    broker, cloud, config, token = world
    attendance_topic = topics.up(SCHOOL, DEV, topics.ATTENDANCE)
    birth = messages.encode(messages.message(messages.BIRTH, DEV, BOOT, 0, 1795454769, {
        "role": "attendance", "fw": "1", "app": "1", "reset": "power_on", "health_s": 60}))
    running = RunningGateway(config)
    observer = Observer(broker.port)
    try:
        wait_for(running.gateway.broker.connected.is_set, 10, "gateway connected")
        observer.publish(topics.up(SCHOOL, DEV, topics.STATUS),
                         birth.replace(b'"health_s":60', b'"health_s":%d' % 2**63))
        observer.publish(attendance_topic, tap(1, "04a1b2c3").replace(b'"seq":1', b'"seq":%d' % 2**63))
        for seq in range(2, 12):
            observer.publish(attendance_topic, tap(seq, f"04a1b2{seq:02x}"))
        wait_for(lambda: observer.acked() >= {(BOOT, seq) for seq in range(2, 12)}, 15, "the good taps acked")
        metrics = running.gateway.metrics
        wait_for(lambda: metrics.get("messages_rejected", messages.OUT_OF_RANGE) == 2, 10, "both counted")
        assert metrics.get("store_errors") == 0
        assert running._thread.is_alive()
    finally:
        observer.close()
        running.stop()
