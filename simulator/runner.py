"""`classops sim run`: plan, bring the county up, carry out the plan, let it settle, verify, tear down."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from simulator.cloudapi import CloudApiError
from simulator.county import County, fresh_workdir
from simulator.ledger import LedgerWriter, make_plan, read_ledger
from simulator.scenario import DISPLAY_RETRY_S, Scenario
from simulator.verify import Report, Verifier

log = logging.getLogger(__name__)

SETTLE_POLL_S = 5.0
# Beyond the hold and a few operations rounds, what a drained backlog may take.
SETTLE_EXTRA_S = 60.0
# Past the shortest settling time, the same differences this many polls in a row are taken as final.
STABLE_POLLS = 4


@dataclass
class RunResult:
    """What a run did and what verification found."""

    report: Report | None
    ledger: Path
    devices: int
    schools: int
    seconds: float


def settle_times_s(scenario: Scenario) -> tuple[float, float]:
    """(shortest, longest) time after the run that the stack gets to deliver and verify everything: a
    blackboard's retry after its display is healed, a clear's hold, operations rounds, a gateway's
    heartbeat and back-off after an outage."""
    t = scenario.timing
    shortest = DISPLAY_RETRY_S + t.verify_hold_s + 3 * t.operations_s + 3 * t.heartbeat_s + t.offline_grace_s
    return shortest, shortest + SETTLE_EXTRA_S


def settle(county: County, ledger_path: Path, scenario: Scenario, out: TextIO) -> Report | None:
    """Poll the comparison until it is clean, or its differences stop changing once the shortest
    settling time is over, or the longest is; the last report."""
    try:
        county.wait_admins()
    except Exception as exc:
        print(f"cannot verify: {exc}", file=out, flush=True)
        return None
    county.ledger.flush()
    record = read_ledger(ledger_path)
    verifier = Verifier(record, county.cloud.url)
    shortest, longest = settle_times_s(scenario)
    started = time.monotonic()
    report = None
    history: list[list[tuple[str, str, str]]] = []
    try:
        while True:
            try:
                report = verifier.run()
            except CloudApiError as exc:
                log.info("the cloud is not readable yet: %s", exc)
            if report is not None and report.ok:
                return report
            waited = time.monotonic() - started
            history.append([(r.check, r.subject, r.found) for r in report.differences()] if report else [])
            stable = len(history) > STABLE_POLLS and all(h == history[-1] for h in history[-STABLE_POLLS:])
            if waited >= longest or (waited >= shortest and stable) or county.stop_event.is_set():
                return report
            left = len(report.differences()) if report is not None else "?"
            print(f"settling: {left} differences left after {waited:.0f} s (giving it {shortest:.0f}-"
                  f"{longest:.0f} s)", file=out, flush=True)
            county.stop_event.wait(SETTLE_POLL_S)
    finally:
        verifier.close()


def run_scenario(scenario: Scenario, workdir: Path, *, seed: int | None = None, out: TextIO | None = None,
                 progress: bool = True, keep: bool = False, cloud_port: int | None = None) -> RunResult:
    """Run a scenario end to end and verify it; Ctrl-C ends the run early and still tears down."""
    out = out or sys.stdout
    fresh_workdir(workdir)
    plan = make_plan(scenario, seed)
    ledger_path = workdir / "ledger.jsonl"
    writer = LedgerWriter(ledger_path)
    writer.write_plan(plan)
    devices = sum(len(d) for d in plan.schools.values())
    print(f"scenario {scenario.name}: {len(plan.schools)} schools, {devices} devices, {len(plan.taps)} taps and "
          f"{len(plan.faults)} faults planned over {scenario.minutes:g} minutes (seed {plan.seed})",
          file=out, flush=True)
    county = County(scenario, plan, workdir, writer, cloud_port=cloud_port, out=out)
    stop = county.stop_event
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    started = time.monotonic()
    report = None
    try:
        county.start()
        print(f"cloud: {county.cloud.url}   ledger: {ledger_path}", file=out, flush=True)
        county.run(progress=progress)
        if not stop.is_set():
            report = settle(county, ledger_path, scenario, out)
            writer.write({"type": "end", "wall": time.time(), "verified": bool(report and report.ok)})
            writer.flush()
            if report is not None:
                report.print(out)
            if keep and not stop.is_set():
                print(f"The county keeps running; `classops sim verify {workdir}` checks it again. "
                      "Ctrl-C stops it.", file=out, flush=True)
                stop.wait()
    finally:
        print("Stopping the county ...", file=out, flush=True)
        county.stop()
        writer.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return RunResult(report=report, ledger=ledger_path, devices=devices, schools=len(plan.schools),
                     seconds=time.monotonic() - started)
