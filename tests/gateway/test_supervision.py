"""The gateway process through failures of its store, against a real Mosquitto and a real cloud: its store
worker killed again and again under a stream of taps, and its data folder on a filesystem that fills up.
The process never exits; nothing is lost, doubled, or acknowledged before it is stored."""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from protocol import messages, topics
from simulator.stack import CloudServer, GatewayProcess, Mosquitto, classops_command, http_json, wait_for
from tests.gateway.small_fs import fill, remount, small_filesystem, thin_ext4

pytestmark = pytest.mark.slow

SCHOOL = "S300"
BOOT = "5afe5afe"
DEVICES = [topics.device_id_from_mac(bytes([0x24, 0x6F, 0x28, 0, 3, i])) for i in range(8)]
WORKER_KILLS = 20
TAP_ROUND_S = 0.08


class Devices:
    """A few devices' worth of taps from one paho client, QoS 1, collecting the gateway's eacks."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="devices-under-test")
        self.client.max_inflight_messages_set(100)
        self.eacked: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        for device in DEVICES:
            self.client.subscribe(topics.device_downlink_filter(SCHOOL, device), qos=1)
        self.client.loop_start()
        self.seq = dict.fromkeys(DEVICES, 0)
        self.sent: list[tuple[str, int]] = []

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/" + topics.EVENT_ACK):
            keys = messages.decode(msg.payload, topics.EVENT_ACK)["keys"]
            device = next(d for d in DEVICES if f"/{d}/" in msg.topic)
            with self._lock:
                self.eacked.update((device, seq) for _, seq in keys)

    def acked(self) -> set[tuple[str, int]]:
        with self._lock:
            return set(self.eacked)

    def publish(self, kind: str, device: str, fields: dict) -> tuple[str, int]:
        self.seq[device] += 1
        msg = messages.message(kind, device, BOOT, self.seq[device], 1795454769 + self.seq[device], fields)
        self.client.publish(topics.up(SCHOOL, device, messages.leaf_of(kind)), messages.encode(msg),
                            qos=1 if kind in messages.EVENT_KINDS else 0).wait_for_publish(10)
        return device, self.seq[device]

    def births(self) -> None:
        for device in DEVICES:
            self.publish(messages.BIRTH, device, {"role": "attendance", "fw": "1", "app": "1",
                                                  "reset": "power_on", "health_s": 600})

    def tap(self, device: str) -> tuple[str, int]:
        key = self.publish(messages.ATTENDANCE, device, {"card": f"{random.getrandbits(56):014x}"})
        self.sent.append(key)
        return key

    def health(self, device: str) -> None:
        self.publish(messages.HEALTH, device, {"uptime_s": 60, "heap_free": 60000, "heap_max_block": 30000,
                                               "errors": {}, "buffered": 0})

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def cloud_and_broker(tmp_path: Path) -> Iterator[tuple[Mosquitto, CloudServer, str, str]]:
    broker = Mosquitto(tmp_path / "broker")
    cloud = CloudServer(tmp_path / "cloud")
    try:
        broker.start()
        cloud.start()
        cloud.add_school(SCHOOL, "Supervision test school")
        cloud.add_user("admin300", "admin-pass-300", "school_admin", SCHOOL)
        token = cloud.add_gateway(SCHOOL)["token"]
        yield broker, cloud, token, cloud.login("admin300", "admin-pass-300")
    finally:
        cloud.stop()
        broker.stop()


def gateway_for(tmp_path: Path, broker: Mosquitto, cloud: CloudServer, token: str) -> GatewayProcess:
    return GatewayProcess(tmp_path / "gateway", school=SCHOOL, school_secret=secrets.token_hex(16),
                          broker_port=broker.port, cloud_url=cloud.url, cloud_token=token, heartbeat_s=1.0)


def status(gateway: GatewayProcess) -> dict | None:
    try:
        code, body = http_json("GET", gateway.status_url + "/api/status", timeout=5.0)
    except OSError:
        return None
    return body if code == 200 else None


def connected(gateway: GatewayProcess) -> bool:
    body = status(gateway) or gateway.check_alive()
    return bool(body and body["broker_connected"])


def metric(gateway: GatewayProcess, name: str) -> float:
    body = status(gateway)
    return float(body["metrics"].get(name, 0)) if body else 0.0


def stored_taps(db_path: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        return [(d, s) for d, s in db.execute("SELECT device, seq FROM record WHERE kind = 'attendance'")]


def cloud_taps(cloud: CloudServer, token: str) -> list[tuple[str, int]]:
    code, body = http_json("GET", cloud.url + "/api/v1/attendance-events?limit=10000", token=token)
    assert code == 200, body
    return [(e["device_id"], e["seq"]) for e in body["items"]]


def store_unwritable_orders(cloud: CloudServer, token: str) -> list[dict]:
    code, body = http_json("GET", cloud.url + f"/api/v1/work-orders?school={SCHOOL}", token=token)
    assert code == 200, body
    return [o for o in body["items"] if o["fault_code"] == "store_unwritable"]


def store_worker_pid(gateway_pid: int) -> int | None:
    """The gateway's live store worker process (a spawned multiprocessing child), if there is one."""
    for children in Path(f"/proc/{gateway_pid}/task").glob("*/children"):
        try:
            pids = children.read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            # A killed worker not yet reaped has an empty command line; the resource tracker is another child.
            if b"spawn_main" in cmdline:
                return int(pid)
    return None


def test_the_store_worker_killed_twenty_times_under_taps_loses_and_doubles_nothing(tmp_path, cloud_and_broker):
    broker, cloud, gateway_token, admin = cloud_and_broker
    gateway = gateway_for(tmp_path, broker, cloud, gateway_token)
    gateway.start()
    devices: Devices | None = None
    try:
        wait_for(lambda: connected(gateway), 30, "the gateway's broker session")
        assert gateway.proc is not None
        gateway_pid = gateway.proc.pid
        devices = Devices(broker.port)
        devices.births()
        streaming = threading.Event()
        streaming.set()

        def stream() -> None:
            # About a hundred taps a second from the school: a morning's rush, well within what the broker
            # keeps for the gateway's session while the store worker is away.
            assert devices is not None
            while streaming.is_set():
                for device in DEVICES:
                    devices.tap(device)
                time.sleep(TAP_ROUND_S)

        sender = threading.Thread(target=stream, name="taps")
        sender.start()
        rng = random.Random(12)
        killed: set[int] = set()
        try:
            for _ in range(WORKER_KILLS):
                pid = wait_for(lambda: ((p := store_worker_pid(gateway_pid)) not in killed and p)
                               or gateway.check_alive(),
                               60, f"a new store worker (after {len(killed)} kills)\n{gateway.log_tail()}")
                # The new worker has taken over: it commits the taps that waited for it.
                before = len(stored_taps(gateway.db_path))
                wait_for(lambda before=before: len(stored_taps(gateway.db_path)) > before, 60,
                         f"a commit by the new worker\n{gateway.log_tail()}")
                # Somewhere in the middle of a commit, an answer, or a sync's read.
                time.sleep(rng.uniform(0.05, 0.6))
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
                assert gateway.running, gateway.log_tail()
        finally:
            streaming.clear()
            sender.join()

        sent = sorted(devices.sent)
        try:
            wait_for(lambda: len(stored_taps(gateway.db_path)) >= len(sent), 120, "every tap in the store")
        except TimeoutError as exc:
            missing = sorted(set(sent) - set(stored_taps(gateway.db_path)))
            raise AssertionError(f"{exc}: {len(missing)} of {len(sent)} missing, e.g. {missing[:5]}, "
                                 f"{len(set(missing) & devices.acked())} of them acked\n{gateway.log_tail(80)}"
                                 ) from exc
        assert sorted(stored_taps(gateway.db_path)) == sent
        # Acknowledged to the devices too (eacks go at QoS 0: a lost one would only make a device send again).
        wait_for(lambda: devices is not None and devices.acked() >= set(sent), 30, "every tap acknowledged")
        wait_for(lambda: len(cloud_taps(cloud, admin)) >= len(sent), 120, f"{len(sent)} taps in the cloud")
        assert sorted(cloud_taps(cloud, admin)) == sent
        assert gateway.running and gateway.proc.pid == gateway_pid
        wait_for(lambda: metric(gateway, "store_worker_restarts") >= WORKER_KILLS, 10, "the restarts counted")
    finally:
        if devices is not None:
            devices.close()
        gateway.stop()


@contextlib.contextmanager
def failing_data_dir(failure: str, data: Path) -> Iterator[Path]:
    """The gateway's data folder on a filesystem that fails when the folder yielded is filled."""
    if failure == "disk_full":
        with small_filesystem(data, size="4m"):
            yield data
    else:
        room = data.parent / "room"
        with thin_ext4(data, room):
            yield room


@pytest.mark.parametrize("failure", ["disk_full", "io_error"])
def test_a_store_that_cannot_write_raises_the_alarm_acks_nothing_unstored_and_recovers(
        tmp_path, cloud_and_broker, failure):
    broker, cloud, gateway_token, admin = cloud_and_broker
    gateway = gateway_for(tmp_path, broker, cloud, gateway_token)
    with failing_data_dir(failure, gateway.db_path.parent) as data:
        gateway.start()
        devices: Devices | None = None
        try:
            wait_for(lambda: connected(gateway), 30, "the gateway's broker session")
            assert gateway.proc is not None
            gateway_pid = gateway.proc.pid
            devices = Devices(broker.port)
            devices.births()
            first = [devices.tap(d) for d in DEVICES]
            wait_for(lambda: devices is not None and devices.acked() >= set(first), 20, "the first taps' eacks")

            filler = fill(data)
            # Taps until the store has to grow and cannot (pages it already has may take a few).
            for _ in range(300):
                for device in DEVICES:
                    devices.tap(device)
                body = status(gateway)
                if body and not body["store"]["writable"]:
                    break
            wait_for(lambda: not (status(gateway) or {"store": {"writable": True}})["store"]["writable"], 30,
                     f"the store reported unwritable\n{gateway.log_tail()}")
            held = [devices.tap(d) for d in DEVICES]
            errors = metric(gateway, "store_errors")
            wait_for(lambda: metric(gateway, "store_errors") >= errors + 2, 60, "two more failed commits")

            # Nothing acknowledged that is not stored; the taps sent since are held by the devices.
            stored = set(stored_taps(gateway.db_path))
            acked = devices.acked()
            assert acked <= stored
            assert not acked & set(held)
            assert len(stored) < len(devices.sent)

            # The alarm reaches the cloud from memory while the store still cannot write.
            wait_for(lambda: any(o["alarm_active"] for o in store_unwritable_orders(cloud, admin)), 30,
                     "a store_unwritable work order")
            with urllib.request.urlopen(gateway.status_url + "/", timeout=5) as resp:
                assert "The store cannot write" in resp.read().decode()
            shown = subprocess.run([*classops_command(), "gateway", "status", "--config", str(gateway.config_path)],
                                   capture_output=True, text=True, timeout=30, check=False)
            assert "STORE CANNOT WRITE" in shown.stdout, shown.stdout + shown.stderr

            filler.unlink()
            sent = sorted(devices.sent)
            wait_for(lambda: devices is not None and devices.acked() >= set(sent), 60,
                     f"every tap acknowledged once space returned\n{gateway.log_tail()}")
            assert sorted(stored_taps(gateway.db_path)) == sent
            wait_for(lambda: (status(gateway) or {"store": {"writable": False}})["store"]["writable"], 30,
                     "the store writable again")
            wait_for(lambda: not any(o["alarm_active"] for o in store_unwritable_orders(cloud, admin)), 30,
                     "the store_unwritable alarm cleared in the cloud")
            assert len(store_unwritable_orders(cloud, admin)) == 1
            wait_for(lambda: len(cloud_taps(cloud, admin)) >= len(sent), 60, f"{len(sent)} taps in the cloud")
            assert sorted(cloud_taps(cloud, admin)) == sent
            assert gateway.running and gateway.proc.pid == gateway_pid
        finally:
            if devices is not None:
                devices.close()
            gateway.stop()


def test_a_read_only_data_folder_at_start_is_shown_and_the_gateway_waits_for_it(tmp_path, cloud_and_broker):
    broker, cloud, gateway_token, admin = cloud_and_broker
    gateway = gateway_for(tmp_path, broker, cloud, gateway_token)
    with small_filesystem(gateway.db_path.parent, size="8m") as data:
        remount(data, "ro")
        gateway.start()
        devices: Devices | None = None
        try:
            wait_for(lambda: connected(gateway), 30, f"the gateway's broker session\n{gateway.log_tail()}")
            assert gateway.proc is not None
            gateway_pid = gateway.proc.pid
            wait_for(lambda: any(o["alarm_active"] for o in store_unwritable_orders(cloud, admin)), 30,
                     f"a store_unwritable work order\n{gateway.log_tail()}")
            body = status(gateway)
            assert body is not None and not body["store"]["writable"]

            devices = Devices(broker.port)
            devices.births()
            taps = [devices.tap(d) for d in DEVICES]
            # Batches are committed in order: the first waits for the store and the rest behind it.
            errors = metric(gateway, "store_errors")
            wait_for(lambda: metric(gateway, "store_errors") >= errors + 2, 60, "two more failed commits")
            assert not devices.acked()

            remount(data, "rw")
            wait_for(lambda: devices is not None and devices.acked() >= set(taps), 60,
                     f"the taps acknowledged once the folder can be written\n{gateway.log_tail()}")
            assert sorted(stored_taps(gateway.db_path)) == sorted(taps)
            wait_for(lambda: not any(o["alarm_active"] for o in store_unwritable_orders(cloud, admin)), 30,
                     "the store_unwritable alarm cleared in the cloud")
            assert gateway.running and gateway.proc.pid == gateway_pid
        finally:
            if devices is not None:
                devices.close()
            gateway.stop()
