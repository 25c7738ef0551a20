"""Gateway ingest: simulated devices -> real Mosquitto -> the real gateway process -> its SQLite store.

Prints `msgs_per_s=<n> commit_p99_ms=<n> broker_ceiling_msgs_per_s=<n> ratio=<n>`.

- The load is a morning-peak mix from many devices: attendance taps (QoS 1 events, which the gateway
  commits before it acknowledges them) and health and telemetry (QoS 0 samples), published as fast as
  the publishers can by pre-encoded MQTT packets over raw sockets.
- msgs_per_s is the gateway's committed messages over the time from the publishers' start to the
  gateway's last commit (its `store_last_commit_timestamp_seconds` gauge).
- commit_p99_ms is the 99th percentile of the time from a message's delivery to the gateway until the
  commit that holds it, as the gateway itself measures it.
- broker_ceiling_msgs_per_s is Mosquitto's own delivery rate, in the same run, of the same number of
  QoS 0 messages of the same sizes from `mosquitto_pub -l` to one `mosquitto_sub`.
- broker_mix_ceiling_msgs_per_s is its delivery rate of the gateway's own load (the same publishers and
  mix, 40% QoS 1) to one `mosquitto_sub` at QoS 1, which stores nothing and acknowledges on arrival.
- The gateway's cloud is unreachable during the run, so that only ingest is measured; its records stay
  in the store's backlog.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from protocol import messages, topics
from simulator.stack import GatewayProcess, Mosquitto, free_port, wait_for

SCHOOL = "BENCH1"
EVENT_SHARE = 0.4


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _str(s: str) -> bytes:
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def connect_packet(client_id: str) -> bytes:
    body = _str("MQTT") + bytes([4, 0x02]) + (60).to_bytes(2, "big") + _str(client_id)
    return b"\x10" + _varint(len(body)) + body


def publish_packet(topic: str, payload: bytes, qos: int, packet_id: int) -> bytes:
    body = _str(topic) + (packet_id.to_bytes(2, "big") if qos else b"") + payload
    return bytes([0x30 | (qos << 1)]) + _varint(len(body)) + body


def device_messages(index: int, count: int, rng: random.Random,
                    school: str = SCHOOL) -> list[tuple[str, bytes, int]]:
    """`count` messages of one simulated device, in the order it would send them."""
    mac = bytes([0x24, 0x6F, 0, index >> 16 & 255, index >> 8 & 255, index & 255])
    device = topics.device_id_from_mac(mac)
    boot = f"{rng.getrandbits(32):08x}"
    now = int(time.time())
    birth = messages.message(messages.BIRTH, device, boot, 0, now, {
        "role": "attendance", "fw": "1.0.0", "app": "1.0.0", "reset": "power_on", "health_s": 60})
    out = [(topics.up(school, device, topics.STATUS), messages.encode(birth), 1)]
    for seq in range(1, count):
        roll = rng.random()
        if roll < EVENT_SHARE:
            msg = messages.message(messages.ATTENDANCE, device, boot, seq, now,
                                   {"card": f"{rng.getrandbits(32):08x}", "hist": False})
            qos = 1
        elif roll < 0.85:
            msg = messages.message(messages.HEALTH, device, boot, seq, now, {
                "uptime_s": seq * 10, "heap_free": 61000, "heap_max_block": 30000, "rssi": -58,
                "errors": {"mqtt_reconnects": 0}, "buffered": 0})
            qos = 0
        else:
            msg = messages.message(messages.TELEMETRY, device, boot, seq, now, {
                "readings": {"temp_c": 21.5, "rh": 40.1, "co2_ppm": 650, "pm25": 12, "lux": 400}})
            qos = 0
        out.append((topics.up(school, device, messages.leaf_of(msg["kind"])), messages.encode(msg), qos))
    return out


def publisher(port: int, first_device: int, devices: int, per_device: int, seed: int,
              ready: multiprocessing.synchronize.Barrier, school: str = SCHOOL) -> None:  # type: ignore[name-defined]
    """One publishing process: interleaves its devices' messages and sends them as fast as it can."""
    rng = random.Random(seed)
    streams = [device_messages(first_device + i, per_device, rng, school) for i in range(devices)]
    packets = bytearray()
    packet_id = 0
    for step in range(per_device):
        for stream in streams:
            topic, payload, qos = stream[step]
            if qos:
                packet_id = packet_id % 65535 + 1
            packets += publish_packet(topic, payload, qos, packet_id if qos else 0)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(connect_packet(f"bench-pub-{first_device}"))
    sock.recv(4)
    answered = threading.Event()
    drain = threading.Thread(target=_drain, args=(sock, answered), daemon=True)
    drain.start()
    ready.wait()
    view = memoryview(packets)
    for i in range(0, len(view), 1 << 16):
        sock.sendall(view[i:i + (1 << 16)])
    # The broker handles a connection's packets in order: its answer to this ping means it has read
    # everything before it. Closing earlier could reset the connection with messages still unread.
    sock.sendall(b"\xc0\x00")
    if not answered.wait(300):
        print(f"publisher {first_device}: the broker did not answer the final ping", file=sys.stderr)
    sock.sendall(b"\xe0\x00")
    sock.close()


def _drain(sock: socket.socket, answered: threading.Event) -> None:
    """Read the broker's PUBACKs and, last, its PINGRESP."""
    buf = bytearray()
    try:
        while data := sock.recv(1 << 16):
            buf += data
            pos = 0
            while len(buf) - pos >= 2:
                length = buf[pos + 1]  # PUBACK and PINGRESP are short: one length byte
                if len(buf) - pos < 2 + length:
                    break
                if buf[pos] == 0xD0:
                    answered.set()
                pos += 2 + length
            del buf[:pos]
    except OSError:
        pass


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """A process and its children (the gateway and its store worker)."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return [pid, *children]


def gateway_metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=5) as resp:
        return dict(json.loads(resp.read())["metrics"])


def measure_ceiling(broker: Mosquitto, payloads: list[bytes], workdir: Path, publishers: int) -> float:
    """Mosquitto's own QoS 0 delivery rate from mosquitto_pub -l to one mosquitto_sub."""
    files = []
    for p in range(publishers):
        path = workdir / f"ceiling-{p}.txt"
        path.write_bytes(b"\n".join(payloads[p::publishers]) + b"\n")
        files.append(path)
    total = sum(len(payloads[p::publishers]) for p in range(publishers))
    sub = subprocess.Popen(["mosquitto_sub", "-p", str(broker.port), "-t", "ceiling/#", "-C", str(total),
                            "-q", "0"], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    started = time.monotonic()
    pubs = []
    for i, path in enumerate(files):
        with open(path, "rb") as lines:
            pubs.append(subprocess.Popen(
                ["mosquitto_pub", "-p", str(broker.port), "-t", f"ceiling/{i}", "-l", "-q", "0"],
                stdin=lines))
    for p in pubs:
        p.wait()
    try:
        sub.wait(timeout=60)
    except subprocess.TimeoutExpired:
        sub.kill()
        raise RuntimeError("mosquitto_sub did not receive every ceiling message") from None
    return total / (time.monotonic() - started)


def measure_mix_ceiling(broker: Mosquitto, devices: int, per_device: int, publishers: int) -> float:
    """Mosquitto's delivery rate of the gateway's own load (same publishers, same mix of QoS 1 and 0) to
    one `mosquitto_sub` subscribed at QoS 1, which acknowledges each message as it arrives."""
    school = "CEILING1"
    per_pub = devices // publishers
    total = per_pub * publishers * per_device
    sub = subprocess.Popen(["mosquitto_sub", "-p", str(broker.port), "-t", topics.school_uplink_filter(school),
                            "-C", str(total), "-q", "1"], stdout=subprocess.DEVNULL)
    ready = multiprocessing.Barrier(publishers + 1)
    procs = [
        multiprocessing.Process(
            target=publisher, args=(broker.port, p * per_pub, per_pub, per_device, p, ready, school))
        for p in range(publishers)
    ]
    for p in procs:
        p.start()
    time.sleep(0.5)  # the subscription is in place before the publishers start
    ready.wait()
    started = time.monotonic()
    try:
        sub.wait(timeout=120)
    except subprocess.TimeoutExpired:
        sub.kill()
        raise RuntimeError("mosquitto_sub did not receive every message of the mix") from None
    elapsed = time.monotonic() - started
    for p in procs:
        p.join()
    return total / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=400, help="simulated devices")
    parser.add_argument("--per-device", type=int, default=500, help="messages each device sends")
    parser.add_argument("--publishers", type=int, default=2, help="publishing processes")
    parser.add_argument("--verbose", action="store_true", help="also print the gateway's own metrics")
    parser.add_argument("--small", action="store_true", help="a quick run that only shows the bench works")
    args = parser.parse_args()
    if args.small:
        args.devices, args.per_device = 40, 50
    if not shutil.which("mosquitto_sub"):
        print("mosquitto_sub is missing: run `make setup`", file=sys.stderr)
        return 2
    total = args.devices * args.per_device
    with tempfile.TemporaryDirectory(prefix="classops-bench-") as tmp:
        root = Path(tmp)
        broker = Mosquitto(root / "broker")
        broker.start()
        gateway = GatewayProcess(root / "gateway", school=SCHOOL, school_secret="bench-secret-0123456789",
                                 broker_port=broker.port, cloud_url=f"http://127.0.0.1:{free_port()}",
                                 cloud_token="unused")
        try:
            gateway.start()
            wait_for(lambda: _connected(gateway.status_port) or gateway.check_alive(), 30, "the gateway")
            per_pub = args.devices // args.publishers
            ready = multiprocessing.Barrier(args.publishers + 1)
            procs = [
                multiprocessing.Process(
                    target=publisher, args=(broker.port, p * per_pub, per_pub, args.per_device, p, ready))
                for p in range(args.publishers)
            ]
            for p in procs:
                p.start()
            gateway_pids = process_tree(gateway.proc.pid)
            cpu_before = [cpu_seconds(pid) for pid in gateway_pids]
            broker_cpu_before = cpu_seconds(broker.proc.pid)
            ready.wait()
            sent_at = time.monotonic()
            sent_at_wall = time.time()
            expected = per_pub * args.publishers * args.per_device
            first_commit = None
            last_total, last_change = -1.0, time.monotonic()
            while True:
                m = gateway_metrics(gateway.status_port)
                done = m.get("messages_committed", 0) + m.get("messages_duplicate", 0)
                now = time.monotonic()
                if done and first_commit is None:
                    first_commit = now
                if done != last_total:
                    last_total, last_change = done, now
                if done >= expected or now - last_change > 5:
                    break
                # Polled gently: the status page runs in the gateway being measured.
                time.sleep(0.5)
            finished = last_change
            cpu_used = [cpu_seconds(pid) - before for pid, before in zip(gateway_pids, cpu_before, strict=True)]
            broker_cpu = cpu_seconds(broker.proc.pid) - broker_cpu_before
            for p in procs:
                p.join()
            m = gateway_metrics(gateway.status_port)
            committed = m.get("messages_committed", 0)
            p99 = m.get("commit_latency_seconds{quantile=0.99}", 0.0)
            # From when sending began to the gateway's last commit, as the gateway timed it; the polls
            # above only say when it is over.
            last_commit = m.get("store_last_commit_timestamp_seconds")
            elapsed = max(last_commit - sent_at_wall if last_commit else finished - sent_at, 1e-6)
            rate = committed / elapsed
            sample = device_messages(0, 1000, random.Random(1))
            ceiling = measure_ceiling(broker, [p for _, p, _ in sample] * max(1, total // 1000), root, 4)
            mix_ceiling = measure_mix_ceiling(broker, args.devices, args.per_device, args.publishers)
        finally:
            gateway.stop()
            broker.stop()
    if args.verbose:
        for key in sorted(m):
            print(f"  {key} = {m[key]}")
    print(f"messages_offered={expected} messages_committed={int(committed)} "
          f"messages_lost_samples={expected - int(committed)}")
    per_msg = [used / max(committed, 1) * 1e6 for used in cpu_used]
    print(f"gateway_cpu_us_per_msg={sum(per_msg):.1f} broker_link_cpu_us_per_msg={per_msg[0]:.1f} "
          f"store_cpu_us_per_msg={sum(per_msg[1:]):.1f} "
          f"broker_cpu_us_per_msg={broker_cpu / max(committed, 1) * 1e6:.1f}")
    print(f"broker_mix_ceiling_msgs_per_s={mix_ceiling:.0f} ratio_to_mix_ceiling={rate / mix_ceiling:.2f}")
    print(f"msgs_per_s={rate:.0f} commit_p99_ms={p99 * 1000:.1f} broker_ceiling_msgs_per_s={ceiling:.0f} "
          f"ratio={rate / ceiling:.2f}")
    return 0


def _connected(port: int) -> bool:
    try:
        return gateway_metrics(port).get("broker_connected", 0) == 1
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
