"""A school under a flood: one credentialed device sending as fast as a socket takes its messages while a
well-behaved device beside it taps at a student's pace and times each tap until the gateway's eack.

The broker runs on the files `classops gateway mosquitto-config` writes, so the flooder logs in with its
own valid credentials as a stolen or broken device would; the gateway is a real process. The flood tests
and bench/gateway_flood.py both bring the school up through these classes.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import socket
import sqlite3
import statistics
import threading
import time
import urllib.request
from collections.abc import Iterable
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path

import paho.mqtt.client as mqtt

from gateway.broker_config import device_password, write_broker_files
from gateway.flood import DEVICE_FLOOD
from protocol import messages, topics
from simulator.stack import GatewayProcess, Mosquitto, StackError, free_port, wait_for

DEVICE_SECRET = "device-secret-0123456789"
GATEWAY_PASSWORD = "gateway-pass-0123"
START_TIMEOUT_S = 30.0
# Distinct taps the flooder cycles through; after the first pass the gateway sees its own duplicates.
FLOOD_MESSAGES = 20000
# Bytes handed to the socket at once; the flooder counts its messages sent after each such write.
FLOOD_WRITE = 1 << 16
TIMESTAMP = 1795454769


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


def flood_writes(school: str, device: str, qos: int) -> list[tuple[bytes, int]]:
    """The flooder's attendance taps, each one new, as MQTT PUBLISH packets grouped into socket writes of
    about FLOOD_WRITE bytes: (bytes, packets in them)."""
    writes: list[tuple[bytes, int]] = []
    pending, count = bytearray(), 0
    topic = _str(topics.up(school, device, topics.ATTENDANCE))
    for seq in range(1, FLOOD_MESSAGES + 1):
        payload = messages.encode(messages.message(messages.ATTENDANCE, device, "f100d000", seq, TIMESTAMP,
                                                   {"card": f"{seq:08x}", "hist": False}))
        packet_id = (seq % 65535 + 1).to_bytes(2, "big") if qos else b""
        pending += _packet(0x30 | qos << 1, topic + packet_id + payload)
        count += 1
        if len(pending) >= FLOOD_WRITE:
            writes.append((bytes(pending), count))
            pending, count = bytearray(), 0
    if count:
        writes.append((bytes(pending), count))
    return writes


def _drain(sock: socket.socket) -> None:
    """Read and drop what the broker sends until the socket ends or the flooder closes it."""
    try:
        while sock.recv(1 << 16):
            pass
    except OSError:
        pass  # closed under the reader by the flooder when it stops


def flood(port: int, school: str, device: str, password: str, qos: int, stop: Event, sent: Synchronized) -> None:
    """A device with valid credentials sending taps as fast as a socket takes them until `stop` is set;
    `sent` counts the messages written so far."""
    writes = flood_writes(school, device, qos)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(_packet(0x10, _str("MQTT") + bytes([4, 0xC2]) + (60).to_bytes(2, "big") + _str(device)
                         + _str(device) + _str(password)))
    if sock.recv(4)[3] != 0:
        raise ConnectionRefusedError(f"the broker refused {device}'s login")
    # The broker's PUBACKs are read and thrown away, so that its writes to this socket never block.
    threading.Thread(target=_drain, args=(sock,), daemon=True).start()
    while not stop.is_set():
        for data, count in writes:
            sock.sendall(data)
            sent.value += count
            if stop.is_set():
                break
    sock.close()


class Flooder:
    """The flooding device in a process of its own, so that it floods as fast as a CPU lets it without
    slowing the code that watches it."""

    def __init__(self, port: int, school: str, device: str, password: str, qos: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self._sent = ctx.Value("q", 0)
        self._proc = ctx.Process(target=flood, args=(port, school, device, password, qos, self._stop, self._sent),
                                 name=f"flood-{device}", daemon=True)

    @property
    def sent(self) -> int:
        """Messages written to the broker so far."""
        return int(self._sent.value)

    @property
    def alive(self) -> bool:
        """True while the flooding process runs."""
        return self._proc.is_alive()

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start flooding and return once the first messages are out."""
        self._proc.start()
        wait_for(lambda: self.sent > 0 or not self.alive, timeout, "the flood to begin")
        if not self.alive:
            raise StackError(f"the flooder exited with {self._proc.exitcode} before sending")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop flooding; the process is killed if it does not end by itself within `timeout`."""
        self._stop.set()
        if self._proc.pid is None:
            return
        self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()


class QuietDevice:
    """A well-behaved device: taps now and then and times each tap until the gateway's eack names it."""

    def __init__(self, port: int, school: str, device: str, password: str) -> None:
        self.school = school
        self.device = device
        self.sent: dict[int, float] = {}
        self.acked: dict[int, float] = {}
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device)
        self.client.username_pw_set(device, password)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self.ready.set()
        self.client.on_connect = lambda c, u, f, reason, p: c.subscribe(
            topics.device_downlink_filter(school, device), qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        if message.topic.endswith("/" + topics.EVENT_ACK):
            for _, seq in messages.decode(message.payload, topics.EVENT_ACK)["keys"]:
                self.acked.setdefault(seq, now)

    def tap(self, seq: int) -> None:
        """Send one attendance tap at QoS 1 and note when it left."""
        payload = messages.encode(messages.message(messages.ATTENDANCE, self.device, "0000beef", seq, TIMESTAMP,
                                                   {"card": f"{seq:08x}", "hist": False}))
        self.sent[seq] = time.monotonic()
        self.client.publish(topics.up(self.school, self.device, topics.ATTENDANCE), payload, qos=1)

    def all_acked(self) -> bool:
        """True once every tap sent so far has been named by an eack."""
        return self.acked.keys() >= self.sent.keys()

    def latencies(self) -> list[float]:
        """Seconds from each acknowledged tap's sending to its eack, in the order sent."""
        return [self.acked[seq] - at for seq, at in self.sent.items() if seq in self.acked]

    def close(self) -> None:
        """Disconnect from the broker."""
        self.client.loop_stop()
        self.client.disconnect()


def latency_figures(latencies: list[float]) -> str:
    """`quiet_eack_latency_{p50,p99,max}_s=` of a run's latencies, as the flood test and bench print them."""
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (f"quiet_eack_latency_p50_s={statistics.median(ordered):.3f} quiet_eack_latency_p99_s={p99:.3f} "
            f"quiet_eack_latency_max_s={ordered[-1]:.3f}")


class FloodedSchool:
    """A real Mosquitto on the files `mosquitto-config` writes for `devices`, and a real gateway whose flood
    guard lets each device `rate_per_s` messages a second after a burst of `burst`. Its cloud is
    unreachable: its records wait in the store's backlog."""

    def __init__(self, root: Path, *, school: str, devices: Iterable[str], rate_per_s: float, burst: int) -> None:
        self.school = school
        files = write_broker_files(root / "broker-files", school=school, device_secret=DEVICE_SECRET,
                                   gateway_user=f"classops-gw-{school}", gateway_password=GATEWAY_PASSWORD,
                                   devices=devices, port=free_port(), host="127.0.0.1")
        self.broker = Mosquitto(root / "broker", config=files["conf"])
        self.gateway = GatewayProcess(root / "gateway", school=school, school_secret="school-secret-0123456789",
                                      broker_port=self.broker.port, cloud_url=f"http://127.0.0.1:{free_port()}",
                                      cloud_token="unreachable", broker_password=GATEWAY_PASSWORD,
                                      device_secret=DEVICE_SECRET)
        config = self.gateway.config_path.read_text()
        self.gateway.config_path.write_text(config.replace(
            "[broker]\n", f"[broker]\ndevice_rate_per_s = {rate_per_s}\ndevice_burst = {burst}\n", 1))

    def password(self, device: str) -> str:
        """The broker password of one of the school's devices."""
        return device_password(DEVICE_SECRET, device)

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start the broker and the gateway; return once the gateway is on its broker."""
        self.broker.start()
        self.start_gateway(timeout)

    def start_gateway(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start the gateway (again); return once it is on its broker."""
        self.gateway.start()
        wait_for(lambda: self.metric("broker_connected") == 1 or self.gateway.check_alive(), timeout,
                 "the gateway on its broker")

    def stop(self) -> None:
        """Stop the gateway and the broker."""
        self.gateway.stop()
        self.broker.stop()

    def metric(self, name: str) -> float:
        """One figure of the gateway's /metrics (0 when absent or while the page does not answer)."""
        try:
            with urllib.request.urlopen(self.gateway.status_url + "/metrics", timeout=2) as resp:
                text = resp.read().decode()
        except OSError:
            return 0.0
        for line in text.splitlines():
            key, _, value = line.rpartition(" ")
            if key == f"classops_gateway_{name}":
                return float(value)
        return 0.0

    def flood_alarms(self) -> list[tuple[str, str]]:
        """The device_flood alarms the gateway recorded for the cloud, (device, raise|clear), in order."""
        if not self.gateway.db_path.exists():
            return []
        with contextlib.closing(sqlite3.connect(f"file:{self.gateway.db_path}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT device, body FROM record WHERE kind = 'gateway_alarm' ORDER BY gseq").fetchall()
        bodies = [(device, json.loads(body)) for device, body in rows]
        return [(device, body["state"]) for device, body in bodies if body["code"] == DEVICE_FLOOD]
