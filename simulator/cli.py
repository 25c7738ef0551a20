"""`classops sim ...` and `classops demo`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _quiet_clients() -> None:
    # Every API call and hardware-bus hiccup at INFO would bury the progress line.
    for name in ("httpx", "simulator.county", "simulator.hwbus"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _demo(args: argparse.Namespace) -> int:
    from simulator.demo import run_demo

    _quiet_clients()
    return run_demo(Path(args.workdir), cloud_port=args.port, duration_s=args.duration, seed=args.seed)


def _scenario(args: argparse.Namespace):
    from simulator.scenario import ScenarioError, load_scenario, scale_scenario

    try:
        scenario = load_scenario(args.scenario)
        if args.scale is not None:
            scenario = scale_scenario(scenario, args.scale)
        changes = {}
        if args.minutes is not None:
            changes["minutes"] = args.minutes
        if args.speed is not None:
            changes["speed"] = args.speed
        if changes:
            scenario = type(scenario).model_validate({**scenario.model_dump(), **changes})
    except (ScenarioError, ValueError) as exc:
        print(f"classops sim: {exc}", file=sys.stderr)
        return None
    return scenario


def _sim_run(args: argparse.Namespace) -> int:
    from simulator.runner import run_scenario

    _quiet_clients()
    scenario = _scenario(args)
    if scenario is None:
        return 2
    result = run_scenario(scenario, Path(args.workdir), seed=args.seed, progress=not args.quiet, keep=args.keep)
    if result.report is None:
        print("the run did not finish; nothing verified", file=sys.stderr)
        return 1
    return 0 if result.report.ok else 1


def _sim_plan(args: argparse.Namespace) -> int:
    from simulator.ledger import make_plan, plan_lines

    scenario = _scenario(args)
    if scenario is None:
        return 2
    plan = make_plan(scenario, args.seed)
    if args.out:
        Path(args.out).write_text("\n".join(plan_lines(plan)) + "\n")
    devices = sum(len(d) for d in plan.schools.values())
    print(f"scenario {scenario.name}: {len(plan.schools)} schools, {devices} devices, {len(plan.taps)} taps, "
          f"{len(plan.faults)} faults (seed {plan.seed})")
    for fault in plan.faults:
        expect = ", ".join(f"{e.subject} {e.code}" for e in fault.expect) or "no work order"
        print(f"  {fault.id} {fault.at_s:7.1f}-{fault.end_s:7.1f} s  {fault.kind:20} "
              f"{fault.device or fault.school or 'county':20} expect: {expect}")
    return 0


def _sim_verify(args: argparse.Namespace) -> int:
    from simulator.verify import find_ledger, verify_ledger

    _quiet_clients()
    path = find_ledger(args.ledger)
    try:
        report = verify_ledger(path, cloud_url=args.cloud, only_differences=args.differences)
    except (OSError, ValueError) as exc:
        print(f"classops sim verify: {exc}", file=sys.stderr)
        return 2
    return 0 if report.ok else 1


def _scenario_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", default="small",
                        help="a scenario file, or a built-in one: small, demo, chuzhou (default small)")
    parser.add_argument("--seed", type=int, default=None, help="overrides the scenario's seed")
    parser.add_argument("--minutes", type=float, default=None, help="overrides the run's length in real minutes")
    parser.add_argument("--speed", type=float, default=None, help="school seconds per real second")
    parser.add_argument("--scale", type=float, default=None, help="run this share of the scenario's schools")


def register(parts: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `sim` and `demo` parts to the root command."""
    demo = parts.add_parser("demo", help="run three simulated schools with faults, end to end, on this machine")
    demo.add_argument("--workdir", default="var/demo", help="where logs and databases go (wiped first)")
    demo.add_argument("--port", type=int, default=8000, help="cloud port, if free (default 8000)")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.add_argument("--seed", type=int, default=None, help="overrides the demo scenario's seed")
    demo.set_defaults(func=_demo)

    sim = parts.add_parser("sim", help="a simulated county running the real firmware")
    sub = sim.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run a scenario, then verify the cloud against its ledger")
    _scenario_args(run)
    run.add_argument("--workdir", default="var/sim", help="logs, databases and ledger.jsonl (wiped first)")
    run.add_argument("--quiet", action="store_true", help="no progress line")
    run.add_argument("--keep", action="store_true", help="keep the county running after verifying, until Ctrl-C")
    run.set_defaults(func=_sim_run)

    plan = sub.add_parser("plan", help="print a scenario's planned faults (and write its plan) without running")
    _scenario_args(plan)
    plan.add_argument("--out", help="write the plan's ledger lines to this file")
    plan.set_defaults(func=_sim_plan)

    verify = sub.add_parser("verify", help="compare a run's ledger with the cloud; exit 1 on any difference")
    verify.add_argument("ledger", nargs="?", default="var/sim", help="ledger.jsonl, or the run's work directory")
    verify.add_argument("--cloud", help="the cloud's URL (default: the run's, or its database served afresh)")
    verify.add_argument("--differences", action="store_true", help="print only the rows that differ")
    verify.set_defaults(func=_sim_verify)
