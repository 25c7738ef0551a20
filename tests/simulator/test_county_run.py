"""The small scenario, every fault kind once, on the real firmware, Mosquitto, gateways and cloud: the
cloud must agree with the ledger."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from simulator.ledger import make_plan, plan_lines, read_ledger
from simulator.runner import run_scenario
from simulator.scenario import load_scenario

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(420)]

# gateway/rules.py raises sensor_fault:<sensor> from telemetry but clears it only when a reading named
# like the sensor comes back (scd4x never reports a reading called "scd4x"), so that order is never
# verified. Reported to the gateway's owner; this test turns strict by itself once it is fixed.


def test_small_scenario_verifies_clean(tmp_path: Path) -> None:
    scenario = load_scenario("small")
    out = io.StringIO()
    result = run_scenario(scenario, tmp_path / "run", out=out, progress=False)
    text = out.getvalue()
    assert result.report is not None, text

    record = read_ledger(result.ledger)
    assert all(f.started is not None and f.ended is not None for f in record.faults.values()), text
    assert record.taps and all("result" in t for t in record.taps.values())
    # The ledger starts with the plan, line for line what the scenario and seed give.
    with open(result.ledger) as f:
        head = [next(f).rstrip("\n") for _ in range(len(plan_lines(make_plan(scenario))))]
    assert head == plan_lines(make_plan(scenario))

    assert result.report.ok, text
