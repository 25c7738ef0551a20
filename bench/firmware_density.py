"""Firmware density: how many virtual devices one MicroPython VM runs at nominal rates.

Prints `devices_per_vm=<n> rss_bytes_per_device=<n> cpu_ms_per_device_s=<x>`.

- One VM runs N devices of the real firmware (60 % attendance terminals, 20 % sensor nodes, 20 %
  blackboard controllers without a display) against a real Mosquitto, each with its own MQTT
  connection, flash files and, for terminals, hardware-bus link.
- Nominal rates: health and telemetry every `--period` seconds (60 in the field; shorter here so that a
  run sees several periods), and a card tap on a random terminal every 50 ms.
- A size passes when every device published its birth, every device then kept its health period (at
  least `--periods` health messages each within periods + 2 periods), every tap was answered `ok` within
  2 s, and the VM never stalled: a ping command to a random device is answered within 2 s.
- N grows by `--step` from `--start` until a size fails or `--max` is reached; devices_per_vm is the
  largest size that passed, rss_bytes_per_device the VM's resident memory (VmRSS) divided by it, and
  cpu_ms_per_device_s the VM's CPU time (user + system) over the measured window, per device and second
  of that window, at this bench's rates (taps and pings included).

`--small` (CI): a single size of 200 devices, 5 s periods, 2 periods.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

from protocol import messages, topics
from simulator.firmware import FirmwareProcess, write_device_config
from simulator.hwbus import HardwareBus, HardwareBusError
from simulator.observer import Observer
from simulator.stack import Mosquitto

SCHOOL = "DENS1"
TAP_EVERY_S = 0.05
ANSWER_S = 2.0


def _roles(n: int) -> list[str]:
    return ["sensor" if i % 5 == 3 else "blackboard" if i % 5 == 4 else "attendance" for i in range(n)]


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_size(n: int, period: float, periods: int, work: Path) -> tuple[bool, int, float, str]:
    """Run N devices in one VM; (passed, VmRSS bytes, CPU ms per device-second, why it failed)."""
    broker = Mosquitto(work / "broker")
    broker.start()
    bus = HardwareBus()
    bus.start()
    obs = Observer(broker.port, SCHOOL)
    roles = _roles(n)
    ids = [topics.device_id_from_mac(bytes([0x02, 0, 0, 0, i >> 8, i & 0xFF])) for i in range(n)]
    paths = [write_device_config(work / dev / "config.json", device_id=dev, school=SCHOOL,
                                 broker_port=broker.port, role=role, hwbus="{}:{}".format(*bus.address),
                                 data_dir=str(work / dev / "flash"), health_s=max(1, int(period)),
                                 telemetry_s=period, keepalive_s=60, buffer_slots=64, resend_s=30)
             for dev, role in zip(ids, roles, strict=True)]
    proc = FirmwareProcess(paths, log_path=work / "firmware.log")
    failures: list[str] = []
    stop = threading.Event()
    try:
        proc.start()
        deadline = time.monotonic() + 30 + n * 0.2
        while len({r.device for r in obs.select(messages.BIRTH)}) < n:
            if time.monotonic() > deadline or not proc.is_running:
                got = len({r.device for r in obs.select(messages.BIRTH)})
                return False, _rss(proc.pid or 0) if proc.is_running else 0, 0.0, f"{got}/{n} births"
            time.sleep(0.1)
        terminals = [d for d, r in zip(ids, roles, strict=True) if r == "attendance"]
        for dev in terminals:
            bus.wait_connected(dev, 30)
        start = time.time()
        cpu_start, mono_start = _cpu_s(proc.pid or 0), time.monotonic()

        def tapper() -> None:
            rng = random.Random(1)
            i = 0
            while not stop.wait(TAP_EVERY_S):
                i += 1
                dev = rng.choice(terminals)
                try:
                    if bus.tap(dev, f"{0x07000000 + i:08x}", timeout=ANSWER_S) != "ok":
                        failures.append(f"tap on {dev} refused")
                except HardwareBusError as exc:
                    failures.append(str(exc))

        thread = threading.Thread(target=tapper, daemon=True)
        thread.start()
        rng = random.Random(2)
        end = start + period * (periods + 2)
        k = 0
        while time.time() < end and not failures:
            k += 1
            dev = rng.choice(ids)
            cid = f"p-{k}"
            obs.send(dev, topics.COMMAND, messages.command(cid, "ping", {}, time.time() + 60))
            try:
                obs.wait_for(messages.ACK, dev, cid=cid, timeout=ANSWER_S)
            except AssertionError:
                failures.append(f"ping to {dev} not answered within {ANSWER_S} s")
            time.sleep(0.5)
        stop.set()
        thread.join(timeout=10)
        rss = _rss(proc.pid or 0)
        cpu_ms = (_cpu_s(proc.pid or 0) - cpu_start) * 1000 / n / (time.monotonic() - mono_start)
        counts = {dev: 0 for dev in ids}
        for r in obs.select(messages.HEALTH):
            if r.at >= start and r.device in counts:
                counts[r.device] += 1
        slow = [d for d, c in counts.items() if c < periods]
        if slow:
            failures.append(f"{len(slow)} devices sent fewer than {periods} health messages")
        if failures:
            failures.append("VM log: " + " | ".join(proc.log_tail(8).splitlines()))
        return not failures, rss, cpu_ms, "; ".join(failures[:3] + failures[-1:])
    finally:
        stop.set()
        proc.kill()
        obs.stop()
        bus.stop()
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="CI size: one run of 200 devices")
    parser.add_argument("--start", type=int, default=200)
    parser.add_argument("--step", type=int, default=100)
    parser.add_argument("--max", type=int, default=600)
    parser.add_argument("--period", type=float, default=10.0)
    parser.add_argument("--periods", type=int, default=3)
    args = parser.parse_args()
    if args.small:
        args.start, args.max, args.period, args.periods = 200, 200, 5.0, 2
    best, best_rss, best_cpu = 0, 0, 0.0
    n = args.start
    while n <= args.max:
        with tempfile.TemporaryDirectory(prefix=f"fwdens-{n}-") as work:
            ok, rss, cpu_ms, why = run_size(n, args.period, args.periods, Path(work))
        print(f"# {n} devices: {'pass' if ok else 'fail: ' + why}; VmRSS {rss} bytes; "
              f"{cpu_ms:.4f} CPU ms per device-second", file=sys.stderr)
        if not ok:
            break
        best, best_rss, best_cpu = n, rss, cpu_ms
        n += args.step
    per_device = best_rss // best if best else 0
    print(f"devices_per_vm={best} rss_bytes_per_device={per_device} cpu_ms_per_device_s={best_cpu:.4f}", flush=True)


if __name__ == "__main__":
    main()
