"""`classops sim ...` and `classops demo`."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    from simulator.demo import run_demo

    return run_demo(Path(args.workdir), devices=args.devices, cloud_port=args.port,
                    tap_interval_s=args.tap_interval, duration_s=args.duration)


def _sim_run(args: argparse.Namespace) -> int:
    from simulator.school import VirtualSchool

    school = VirtualSchool(Path(args.workdir), school=args.school, broker_host=args.broker_host,
                           broker_port=args.broker_port, devices=args.devices, seed=args.seed)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    school.start()
    try:
        school.wait_ready(timeout=60)
        school.start_tapping(args.tap_interval)
        print(f"{args.devices} devices of school {args.school} running; Ctrl-C stops them.", flush=True)
        stop.wait(args.duration)
    finally:
        school.stop()
        print(f"taps taken by the devices: {school.ledger.count()}", flush=True)
    return 0


def register(parts: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `sim` and `demo` parts to the root command."""
    demo = parts.add_parser("demo", help="run a simulated school end to end on this machine")
    demo.add_argument("--workdir", default="var/demo", help="where logs and databases go (wiped first)")
    demo.add_argument("--devices", type=int, default=4, help="attendance terminals (default 4)")
    demo.add_argument("--port", type=int, default=8000, help="cloud port, if free (default 8000)")
    demo.add_argument("--tap-interval", type=float, default=2.0, help="mean seconds between card taps")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.set_defaults(func=_demo)

    sim = parts.add_parser("sim", help="virtual schools running the real firmware")
    sub = sim.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run one school's virtual devices against its broker")
    run.add_argument("--school", required=True, help="school code")
    run.add_argument("--broker-host", default="127.0.0.1")
    run.add_argument("--broker-port", type=int, default=1883)
    run.add_argument("--devices", type=int, default=4)
    run.add_argument("--tap-interval", type=float, default=2.0, help="mean seconds between card taps")
    run.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    run.add_argument("--seed", type=int, default=None, help="fixes device ids and taps")
    run.add_argument("--workdir", default="var/sim")
    run.set_defaults(func=_sim_run)
