"""The gateway process killed with SIGKILL again and again during ingest and sync, the broker restarted,
and the cloud away for an hour's worth of traffic: afterwards the cloud has every event exactly once."""

from __future__ import annotations

import random
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from protocol import messages, topics
from simulator.stack import CloudServer, GatewayProcess, Mosquitto, http_json, wait_for

pytestmark = pytest.mark.slow

SCHOOL = "S100"
DEVICES = [topics.device_id_from_mac(bytes([0x24, 0x6F, 0x28, 0, 1, i])) for i in range(12)]
BOOT = "0badc0de"


class Devices:
    """Twelve devices' worth of traffic from one paho client, published QoS 1 like the firmware's events."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fake-devices")
        self.client.max_inflight_messages_set(200)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.seq = {d: 0 for d in DEVICES}
        self.taps = 0

    def send(self, kind: str, device: str, fields: dict) -> None:
        self.seq[device] += 1
        msg = messages.message(kind, device, BOOT, self.seq[device], 1795454769 + self.seq[device], fields)
        info = self.client.publish(topics.up(SCHOOL, device, messages.leaf_of(kind)), messages.encode(msg),
                                   qos=1 if kind in messages.EVENT_KINDS else 0)
        info.wait_for_publish(10)

    def births(self) -> None:
        for d in DEVICES:
            self.send(messages.BIRTH, d, {"role": "attendance", "fw": "1", "app": "1", "reset": "power_on",
                                          "health_s": 60})

    def minute(self, taps_per_device: int = 2) -> None:
        """One simulated minute: a health sample and a few taps per device."""
        for d in DEVICES:
            self.send(messages.HEALTH, d, {"uptime_s": 60, "heap_free": 60000, "heap_max_block": 30000,
                                           "errors": {}, "buffered": 0})
            for _ in range(taps_per_device):
                self.send(messages.ATTENDANCE, d, {"card": f"{random.getrandbits(32):08x}"})
                self.taps += 1

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Mosquitto, CloudServer, GatewayProcess, str]]:
    broker = Mosquitto(tmp_path / "broker", persistence=True)
    cloud = CloudServer(tmp_path / "cloud")
    gateway: GatewayProcess | None = None
    try:
        broker.start()
        cloud.start()
        cloud.add_school(SCHOOL, "Crash test school")
        cloud.add_user("admin", "admin-pass-123", "school_admin", SCHOOL)
        token = cloud.add_gateway(SCHOOL)["token"]
        gateway = GatewayProcess(tmp_path / "gateway", school=SCHOOL, school_secret=secrets.token_hex(16),
                                 broker_port=broker.port, cloud_url=cloud.url, cloud_token=token)
        yield broker, cloud, gateway, cloud.login("admin", "admin-pass-123")
    finally:
        if gateway is not None:
            gateway.stop()
        cloud.stop()
        broker.stop()


def connected(gateway: GatewayProcess) -> bool:
    """True once the gateway's broker session exists, so that the broker keeps messages for it."""
    try:
        status, body = http_json("GET", gateway.status_url + "/api/status", timeout=1.0)
    except OSError:
        return False
    return status == 200 and bool(body["broker_connected"])


def attendance_in_cloud(cloud: CloudServer, token: str) -> list[dict]:
    status, body = http_json("GET", cloud.url + "/api/v1/attendance-events?limit=10000", token=token)
    assert status == 200, body
    return list(body["items"])


def backlog(gateway: GatewayProcess) -> int:
    try:
        with sqlite3.connect(f"file:{gateway.db_path}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT COUNT(*) FROM record WHERE sync_state = 0").fetchone()[0])
    except sqlite3.OperationalError:
        return -1


def exactly_once(cloud: CloudServer, token: str, gateway: GatewayProcess, expected: int) -> None:
    try:
        wait_for(lambda: backlog(gateway) == 0 and len(attendance_in_cloud(cloud, token)) >= expected, 120,
                 f"{expected} taps in the cloud and an empty backlog", interval=0.5)
    except TimeoutError as exc:
        with sqlite3.connect(f"file:{gateway.db_path}?mode=ro", uri=True) as db:
            stored = db.execute("SELECT COUNT(*) FROM record WHERE kind = 'attendance'").fetchone()[0]
        raise AssertionError(f"{exc}: cloud has {len(attendance_in_cloud(cloud, token))}, gateway stored "
                             f"{stored}, backlog {backlog(gateway)}\n{gateway.log_tail()}") from exc
    events = attendance_in_cloud(cloud, token)
    keys = [(e["device_id"], e["boot_id"], e["seq"]) for e in events]
    assert len(keys) == len(set(keys)) == expected


def test_sigkill_during_ingest_and_sync_loses_and_doubles_nothing(world) -> None:
    broker, cloud, gateway, token = world
    gateway.start()
    wait_for(lambda: connected(gateway), 30, "the gateway's broker session")
    devices = Devices(broker.port)
    try:
        devices.births()
        rng = random.Random(5)
        for _ in range(4):
            sender = threading.Thread(target=lambda: [devices.minute() for _ in range(3)])
            sender.start()
            # Kill at a random moment while messages are arriving and batches are being synced.
            time.sleep(rng.uniform(0.2, 1.5))
            gateway.kill()
            sender.join()
            gateway.start()
        exactly_once(cloud, token, gateway, devices.taps)

        broker.restart()
        devices.close()
        devices = Devices(broker.port)
        devices.taps = len(attendance_in_cloud(cloud, token))
        devices.seq = {d: 10_000 for d in DEVICES}
        for _ in range(3):
            devices.minute()
        exactly_once(cloud, token, gateway, devices.taps)
    finally:
        devices.close()


def test_an_hour_without_the_cloud_is_caught_up_in_full(world) -> None:
    broker, cloud, gateway, token = world
    gateway.start()
    wait_for(lambda: connected(gateway), 30, "the gateway's broker session")
    cloud.stop()
    devices = Devices(broker.port)
    try:
        devices.births()
        for _ in range(60):
            devices.minute(taps_per_device=1)
        wait_for(lambda: backlog(gateway) >= 60 * len(DEVICES) * 2, 60, "an hour of traffic in the store")
        cloud.start()
        exactly_once(cloud, token, gateway, devices.taps)
    finally:
        devices.close()
