"""County scale: the largest simulated county this machine runs at nominal rates, verified.

Prints `devices=<n> schools=<n> minutes=<n> verify=<ok|failed>` for each size it runs.

- A county of `--schools` schools of `--classrooms` classrooms, each classroom an attendance terminal,
  an environment sensor node and a blackboard controller, all on the real firmware (packed
  `--per-vm` devices to a MicroPython VM), with one Mosquitto, one gateway and one internet link per
  school and one cloud, as `classops sim run` brings them up. The default, 28 large schools of 120
  classrooms (360 devices and about 4,300 students each), is a county of 10,080 devices: what costs
  per school (a broker, a gateway and its store worker) stays at a few dozen processes.
- Nominal rates: health and telemetry every 60 s, gateway heartbeat every 15 s, and the morning's
  arrivals in real time (school time runs at speed 1 from 07:40, the busiest part of the 07:30-08:00
  peak, 36 students a classroom); a device fault (sensor failure, dead device, Wi-Fi flapping, display
  that will not power on) or a school outage about every minute.
- A size is sustained when, after `--minutes` and a settling time, `classops sim verify` finds no
  difference: every tap exactly once, every fault's alarm and verified work order, nothing else.
- `--search` starts at `--schools` and adds `--step` schools until a size fails; the last line that
  says verify=ok is the figure. `--small` (CI): two schools of four classrooms on short periods, under
  two minutes.
"""

from __future__ import annotations

import argparse
import io
import logging
import resource
import sys
import tempfile
import threading
from pathlib import Path

from simulator.runner import run_scenario
from simulator.scenario import Scenario

# The simulator holds a thread per device link; their stacks need little.
THREAD_STACK = 512 * 1024


def county(schools: int, classrooms: int, minutes: float, per_vm: int, seed: int) -> Scenario:
    """A county at nominal rates."""
    return Scenario.model_validate({
        "name": f"scale-{schools}x{classrooms}",
        "seed": seed,
        "minutes": minutes,
        "speed": 1,
        "start": "07:40",
        "timing": {"health_s": 60, "telemetry_s": 60, "heartbeat_s": 15, "offline_grace_s": 60,
                   "rules_every_s": 10, "gateway_stale_s": 60, "verify_hold_s": 60, "operations_s": 10,
                   "devices_per_vm": per_vm, "displays": "faulted"},
        "classroom": {"students": 36},
        "timetable": {"taps_per_terminal_hour": 2},
        "random_faults": {"every_s": 60, "first_s": 30, "duration_s": [90, 150],
                          "kinds": ["sensor_failure", "device_dead", "wifi_flapping", "display_no_power_on",
                                    "gateway_crash", "internet_outage", "broker_outage"]},
        "districts": [{"code": "CZ", "name": "Bench county",
                       "schools": [{"kind": "urban", "count": schools, "classrooms": classrooms}]}],
    })


def small(seed: int) -> Scenario:
    """Two schools of four classrooms on short periods, with a device fault and a school outage."""
    return Scenario.model_validate({
        "name": "scale-small",
        "seed": seed,
        "minutes": 0.9,
        "speed": 30,
        "start": "07:29",
        "timing": {"health_s": 5, "telemetry_s": 2, "heartbeat_s": 2, "offline_grace_s": 12,
                   "rules_every_s": 1, "gateway_stale_s": 25, "verify_hold_s": 6, "operations_s": 2,
                   "devices_per_vm": 12},
        "classroom": {"students": 10},
        "timetable": {"taps_per_terminal_hour": 0},
        "faults": [{"kind": "device_dead", "at_s": 8, "duration_s": 22, "school": "CZ-U001", "classroom": 1,
                    "role": "attendance"},
                   {"kind": "internet_outage", "at_s": 8, "duration_s": 36, "school": "CZ-U002"}],
        "districts": [{"code": "CZ", "name": "Bench county",
                       "schools": [{"kind": "urban", "count": 2, "classrooms": 4}]}],
    })


def run_one(scenario: Scenario, workdir: Path, verbose: bool) -> bool:
    """Run and verify one county; print its line; True if verified."""
    captured = io.StringIO()
    out = sys.stdout if verbose else captured
    devices, schools = scenario.device_count(), len(scenario.schools())
    try:
        result = run_scenario(scenario, workdir, out=out, progress=verbose)
        ok = result.report is not None and result.report.ok
    except Exception as exc:
        print(f"the run failed: {exc!r}", file=out)
        ok = False
    if not ok and not verbose:
        print(captured.getvalue()[-4000:], file=sys.stderr)
    print(f"devices={devices} schools={schools} minutes={scenario.minutes:g} verify={'ok' if ok else 'failed'}",
          flush=True)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="CI size: 2 schools x 4 classrooms, short periods")
    parser.add_argument("--schools", type=int, default=28)
    parser.add_argument("--classrooms", type=int, default=120, help="per school; 3 devices each (default 120)")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--per-vm", type=int, default=100, help="devices per MicroPython VM")
    parser.add_argument("--search", action="store_true", help="grow by --step schools until a size fails")
    parser.add_argument("--step", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", default=None, help="default: a temporary directory")
    parser.add_argument("--verbose", action="store_true", help="progress and the verification table")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    threading.stack_size(THREAD_STACK)
    with tempfile.TemporaryDirectory(prefix="sim-scale-") as tmp:
        root = Path(args.workdir) if args.workdir else Path(tmp)
        if args.small:
            return 0 if run_one(small(args.seed), root / "small", args.verbose) else 1
        schools = args.schools
        best = 0
        while True:
            ok = run_one(county(schools, args.classrooms, args.minutes, args.per_vm, args.seed),
                         root / f"county-{schools}", args.verbose)
            if not ok:
                break
            best = schools
            if not args.search:
                break
            schools += args.step
        return 0 if best else 1


if __name__ == "__main__":
    sys.exit(main())
