"""A device that floods its topics is held to its rate, gets one alarm, and the other devices do not wait
for it."""

from __future__ import annotations

import json
import multiprocessing
import socket
import sqlite3
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from gateway.broker import Incoming
from gateway.broker_config import device_password, write_broker_files
from gateway.flood import DEVICE_FLOOD, FloodChange, FloodGuard
from protocol import messages, topics
from simulator.stack import GatewayProcess, Mosquitto, free_port, wait_for

SCHOOL = "S009"
LOUD = "esp32-aaaaaaaaaaaa"
QUIET = "esp32-bbbbbbbbbbbb"


def read(at: float, *devices: str) -> list[Incoming]:
    """One read from the broker: a message of each device named, in order."""
    return [Incoming(topics.up(SCHOOL, d, topics.HEALTH), b"%d" % i, 1, i + 1, at) for i, d in enumerate(devices)]


def test_a_device_over_its_burst_loses_only_its_own_excess_in_order() -> None:
    guard = FloodGuard(rate_per_s=10, burst=5)
    batch = read(100.0, *[LOUD] * 4, QUIET, *[LOUD] * 4, QUIET)
    kept, flood = guard.admit(batch)
    assert kept == [m for m in batch if QUIET in m.topic or m.payload in (b"0", b"1", b"2", b"3", b"5")]
    assert [m.payload for m in flood] == [b"6", b"7", b"8"]
    # Half a second later, five more tokens: the rate, not the burst, is what a flooding device gets.
    kept, flood = guard.admit(read(100.5, *[LOUD] * 8))
    assert (len(kept), len(flood)) == (5, 3)


def test_a_quiet_read_is_passed_on_as_it_is() -> None:
    guard = FloodGuard(rate_per_s=10, burst=5)
    batch = read(1.0, LOUD, QUIET, LOUD)
    kept, flood = guard.admit(batch)
    assert kept is batch and flood == []


def test_a_long_flood_raises_one_alarm_cleared_once_the_bucket_is_full_again() -> None:
    guard = FloodGuard(rate_per_s=10, burst=5)  # the alarm after 0.5 s over the rate, cleared after 0.5 s calm
    guard.admit(read(0.0, *[LOUD] * 20))
    guard.admit(read(0.3, *[LOUD] * 20))
    assert guard.changes(0.3) == []  # a short excess (a backlog after an outage) is dropped, no alarm
    guard.admit(read(0.6, *[LOUD] * 20, QUIET))
    assert guard.changes(0.6) == [FloodChange(LOUD, True, 15 + 17 + 17)]
    guard.admit(read(0.9, *[LOUD] * 20))
    assert guard.changes(0.9) == []  # raised once
    assert guard.changes(1.2) == []  # 3 tokens back of 5
    assert guard.changes(1.5) == [FloodChange(LOUD, False, 15 + 17 + 17 + 17)]
    assert guard.changes(9.0) == []
    # Every bucket is full again and forgotten: memory holds only devices sending now.
    assert guard._buckets == {} and guard._episodes == {}


def test_a_raise_the_store_did_not_take_is_raised_again() -> None:
    guard = FloodGuard(rate_per_s=10, burst=5)
    guard.admit(read(0.0, *[LOUD] * 20))
    guard.admit(read(0.6, *[LOUD] * 20))
    assert [c.flooding for c in guard.changes(0.6)] == [True]
    guard.flooding([], now=0.7)  # the alarm task starts again: the store has no such alarm
    guard.admit(read(0.8, *[LOUD] * 20))
    assert [c.flooding for c in guard.changes(0.8)] == [True]


def test_an_alarm_from_before_a_restart_is_cleared_when_the_device_is_calm() -> None:
    guard = FloodGuard(rate_per_s=10, burst=5)
    guard.flooding([LOUD, QUIET], now=0.0)
    guard.admit(read(0.0, *[LOUD] * 20))
    assert guard.changes(0.1) == [FloodChange(QUIET, False, 0)]
    assert guard.changes(2.0) == [FloodChange(LOUD, False, 15)]


# ---- against a real broker and gateway -----------------------------------------------------------

DEVICE_SECRET = "device-secret-0123456789"
GATEWAY_PASSWORD = "gateway-pass-0123"
RATE, BURST = 100, 200  # the alarm after 2 s over the rate, cleared after 2 s calm
TAPS = 40
TAP_EVERY_S = 0.25
DEADLINE_S = 30.0


def _str(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def _packet(first: int, body: bytes) -> bytes:
    length, size = bytearray(), len(body)
    while True:
        size, byte = size >> 7, size & 127
        length.append(byte | 128 if size else byte)
        if not size:
            return bytes([first]) + bytes(length) + body


def flood(port: int, device: str, password: str, qos: int, go: Any, stop: Any, sent: Any) -> None:
    """A device with valid credentials sending taps, each one new, as fast as a socket takes them."""
    packets = bytearray()
    for seq in range(1, 20001):
        payload = messages.encode(messages.message(messages.ATTENDANCE, device, "f100d000", seq,
                                                   1795454769, {"card": f"{seq:08x}", "hist": False}))
        packet_id = (seq % 65535 + 1).to_bytes(2, "big") if qos else b""
        packets += _packet(0x30 | qos << 1, _str(topics.up(SCHOOL, device, topics.ATTENDANCE)) + packet_id + payload)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(_packet(0x10, _str("MQTT") + bytes([4, 0xC2]) + (60).to_bytes(2, "big") + _str(device)
                         + _str(device) + _str(password)))
    assert sock.recv(4)[3] == 0, "the flooder's login was refused"
    # The broker's PUBACKs are read and thrown away, so that its writes to this socket never block.
    threading.Thread(target=lambda: [None for _ in iter(lambda: sock.recv(1 << 16), b"")], daemon=True).start()
    go.wait()
    view, count = memoryview(packets), 0
    while not stop.is_set():
        for i in range(0, len(view), 1 << 16):
            sock.sendall(view[i:i + (1 << 16)])
        count += 20000
        sent.value = count
    sock.close()


class Device:
    """A well-behaved device: taps now and then and times each tap until the gateway's eack names it."""

    def __init__(self, port: int, device: str) -> None:
        self.device = device
        self.sent: dict[int, float] = {}
        self.acked: dict[int, float] = {}
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device)
        self.client.username_pw_set(device, device_password(DEVICE_SECRET, device))
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self.ready.set()
        self.client.on_connect = lambda c, u, f, reason, p: c.subscribe(
            topics.device_downlink_filter(SCHOOL, device), qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        if message.topic.endswith("/" + topics.EVENT_ACK):
            for _, seq in messages.decode(message.payload, topics.EVENT_ACK)["keys"]:
                self.acked.setdefault(seq, now)

    def tap(self, seq: int) -> None:
        payload = messages.encode(messages.message(messages.ATTENDANCE, self.device, "0000beef", seq,
                                                   1795454769, {"card": f"{seq:08x}", "hist": False}))
        self.sent[seq] = time.monotonic()
        self.client.publish(topics.up(SCHOOL, self.device, topics.ATTENDANCE), payload, qos=1)

    def latencies(self) -> list[float]:
        return [self.acked[seq] - at for seq, at in self.sent.items() if seq in self.acked]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def flood_alarms(db_path: Path) -> list[tuple[str, str]]:
    """The device_flood alarms the gateway recorded for the cloud, (device, raise|clear), in order."""
    if not db_path.exists():
        return []
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT device, body FROM record WHERE kind = 'gateway_alarm' ORDER BY gseq").fetchall()
    return [(device, json.loads(body)["state"]) for device, body in rows
            if json.loads(body)["code"] == DEVICE_FLOOD]


@pytest.mark.slow
@pytest.mark.parametrize("qos", [0, 1])
def test_a_flooding_device_is_dropped_alarmed_and_delays_no_one_else(tmp_path: Path, qos: int) -> None:
    files = write_broker_files(tmp_path / "broker-files", school=SCHOOL, device_secret=DEVICE_SECRET,
                               gateway_user=f"classops-gw-{SCHOOL}", gateway_password=GATEWAY_PASSWORD,
                               devices=[LOUD, QUIET], port=free_port(), host="127.0.0.1")
    broker = Mosquitto(tmp_path / "broker", config=files["conf"])
    gateway = GatewayProcess(tmp_path / "gateway", school=SCHOOL, school_secret="school-secret-0123456789",
                             broker_port=broker.port, cloud_url=f"http://127.0.0.1:{free_port()}",
                             cloud_token="unreachable", broker_password=GATEWAY_PASSWORD,
                             device_secret=DEVICE_SECRET)
    config = gateway.config_path.read_text()
    gateway.config_path.write_text(config.replace("[broker]\n", f"[broker]\ndevice_rate_per_s = {RATE}\n"
                                                                f"device_burst = {BURST}\n", 1))
    ctx = multiprocessing.get_context("spawn")
    go, stop, sent = ctx.Event(), ctx.Event(), ctx.Value("q", 0)
    flooder = ctx.Process(target=flood, args=(broker.port, LOUD, device_password(DEVICE_SECRET, LOUD), qos,
                                              go, stop, sent), daemon=True)
    quiet: Device | None = None
    try:
        broker.start()
        gateway.start()
        wait_for(lambda: gateway_metric(gateway, "broker_connected") == 1 or gateway.check_alive(), DEADLINE_S,
                 "the gateway on its broker")
        pid = gateway.proc.pid if gateway.proc else None
        quiet = Device(broker.port, QUIET)
        wait_for(quiet.ready.is_set, DEADLINE_S, "the quiet device's subscription")
        flooder.start()
        go.set()
        wait_for(lambda: sent.value > 0 or not flooder.is_alive(), DEADLINE_S, "the flood")
        began = time.monotonic()
        for seq in range(1, TAPS + 1):
            quiet.tap(seq)
            time.sleep(TAP_EVERY_S)  # a student's pace, not a wait for a result
        wait_for(lambda: len(quiet.acked) >= TAPS or not flooder.is_alive(), DEADLINE_S, "every quiet tap's eack")
        flooding_for = time.monotonic() - began
        latencies = quiet.latencies()
        print(f"\nflood_qos={qos} flood_msgs_sent={sent.value} flood_msgs_per_s={sent.value / flooding_for:.0f} "
              f"quiet_eack_latency_p50_s={sorted(latencies)[len(latencies) // 2]:.3f} "
              f"quiet_eack_latency_max_s={max(latencies):.3f}")
        assert sorted(quiet.acked) == list(range(1, TAPS + 1))
        assert max(latencies) < 1.0, sorted(latencies)
        wait_for(lambda: (LOUD, "raise") in flood_alarms(gateway.db_path), DEADLINE_S, "the flood alarm")
        dropped = gateway_metric(gateway, 'messages_rejected_total{reason="flood"}')
        print(f"flood_msgs_dropped={dropped:.0f}")
        assert dropped > 0
        assert gateway.running and gateway.proc is not None and gateway.proc.pid == pid
        # The flood stops and the gateway dies before the device has been calm long enough; the gateway
        # that starts again clears the alarm once the device is calm.
        stop.set()
        flooder.join(DEADLINE_S)
        gateway.kill()
        assert flood_alarms(gateway.db_path) == [(LOUD, "raise")]
        gateway.start()
        wait_for(lambda: flood_alarms(gateway.db_path) == [(LOUD, "raise"), (LOUD, "clear")], DEADLINE_S,
                 "the flood alarm to clear")
    finally:
        stop.set()
        go.set()
        if flooder.is_alive():
            flooder.kill()
        if quiet is not None:
            quiet.close()
        gateway.stop()
        broker.stop()


def gateway_metric(gateway: GatewayProcess, name: str) -> float:
    """One figure of the gateway's /metrics (0 when absent or while the page does not answer)."""
    try:
        with urllib.request.urlopen(gateway.status_url + "/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == f"classops_gateway_{name}":
            return float(value)
    return 0.0
