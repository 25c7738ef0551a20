"""Scenario files: the built-in ones, clear refusals of bad ones, and plans that follow from the seed."""

from __future__ import annotations

from collections import Counter

import pytest

from simulator.ledger import make_plan, plan_lines
from simulator.scenario import ScenarioError, builtin_names, load_scenario, parse_scenario, scale_scenario

MINIMAL = """
name = "t"
minutes = 2
[timing]
health_s = 5
telemetry_s = 2
heartbeat_s = 2
offline_grace_s = 12
rules_every_s = 1
gateway_stale_s = 25
verify_hold_s = 6
operations_s = 2
[[districts]]
code = "LY"
name = "Langya"
schools = [{ kind = "urban", count = 2, classrooms = 2 }]
"""


def test_builtin_scenarios_load() -> None:
    assert {"chuzhou", "small", "demo"} <= set(builtin_names())
    for name in builtin_names():
        assert load_scenario(name).schools()


def test_chuzhou_has_the_plans_schools_per_county() -> None:
    scenario = load_scenario("chuzhou")
    kinds: Counter[str] = Counter()
    rural: dict[str, int] = {}
    points: dict[str, int] = {}
    for school in scenario.schools():
        kinds[school.kind] += 1
        if school.kind == "rural":
            rural[school.district] = rural.get(school.district, 0) + 1
        if school.kind == "teaching_point":
            points[school.district] = points.get(school.district, 0) + 1
    # Appendix 2 (rural schools) and appendix 1 (teaching points) of seeds/003.
    assert rural == {"LY": 1, "NQ": 8, "LA": 26, "QJ": 12, "DY": 42, "FY": 44, "TC": 4, "MG": 38}
    assert points == {"NQ": 2, "LA": 1, "QJ": 2, "DY": 11, "FY": 33, "TC": 3, "MG": 15}
    assert kinds["urban"] + kinds["rural"] == 494
    assert kinds["teaching_point"] == 67
    assert len(scale_scenario(scenario, 0.05).schools()) < 60


def test_small_scenario_has_every_fault_kind() -> None:
    kinds = {f.kind for f in make_plan(load_scenario("small")).faults}
    assert kinds == {"sensor_failure", "device_dead", "wifi_flapping", "display_no_power_on", "broker_outage",
                     "gateway_crash", "internet_outage", "cloud_outage"}


def test_unknown_key_is_refused_with_its_line() -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(MINIMAL + "\n[sensors]\nco2 = 3\n")
    assert "sensors.co2" in str(caught.value)
    assert "line" in str(caught.value)
    assert "check its spelling" in str(caught.value)


def test_fault_too_short_to_be_seen_names_the_fix() -> None:
    text = MINIMAL + '\n[[faults]]\nkind = "device_dead"\nat_s = 5\nduration_s = 10\n'
    with pytest.raises(ScenarioError, match=r"make it last at least 19 s"):
        parse_scenario(text)


def test_gateway_crash_near_the_stale_limit_is_refused() -> None:
    text = MINIMAL + '\n[[faults]]\nkind = "gateway_crash"\nat_s = 5\nduration_s = 25\n'
    with pytest.raises(ScenarioError, match="too close to gateway_stale_s"):
        parse_scenario(text)


def test_overlapping_outages_of_one_school_are_refused() -> None:
    text = MINIMAL + (
        '\n[[faults]]\nkind = "internet_outage"\nat_s = 5\nduration_s = 40\nschool = "LY-U001"\n'
        '\n[[faults]]\nkind = "gateway_crash"\nat_s = 20\nduration_s = 5\nschool = "LY-U001"\n'
    )
    with pytest.raises(ScenarioError, match="overlaps an outage of school LY-U001"):
        make_plan(parse_scenario(text))


def test_same_seed_same_ledger_plan() -> None:
    scenario = load_scenario("demo")
    first = plan_lines(make_plan(scenario, seed=11))
    second = plan_lines(make_plan(scenario, seed=11))
    assert first == second
    assert plan_lines(make_plan(scenario, seed=12)) != first


def test_plan_keeps_taps_off_dead_terminals_and_cards_unique() -> None:
    plan = make_plan(load_scenario("small"))
    dead = [(f.device, f.at_s, f.end_s) for f in plan.faults if f.kind == "device_dead"]
    for device, start, end in dead:
        assert not [t for t in plan.taps if t.device == device and start <= t.at_s <= end]
    cards = [t.card for t in plan.taps]
    assert len(cards) == len(set(cards))
    expected = {f.kind: [(e.subject, e.code) for e in f.expect] for f in plan.faults}
    assert expected["internet_outage"] == [("gateway", "gateway_offline")]
    assert expected["broker_outage"] == [] and expected["cloud_outage"] == [] and expected["gateway_crash"] == []
