"""Ground truth of a simulated run: every device, every card tap and every fault, in a JSON lines file.

The plan (the county's devices, each planned tap with its card and moment, each fault with its target,
moment and expected outcome) follows from the scenario and the seed alone, so the same scenario with
the same seed gives the same plan, line for line. What happened when the plan was carried out (the
device's answer to each tap, when each fault was really injected and lifted, where the stack ran) is
appended as the run goes. `classops sim verify` compares this file with what the cloud says.
"""

from __future__ import annotations

import json
import math
import random
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from protocol import topics
from simulator.scenario import (
    DEVICE_FAULT_ROLE,
    MARGIN_S,
    SCHOOL_FAULTS,
    Fault,
    Scenario,
    ScenarioError,
    broker_outage_limit_s,
    cloud_outage_limit_s,
    expects_gateway_order,
    seconds_of_day,
    threshold_problem,
)

LEDGER_VERSION = 1
# Runs end with this much time after the last fault is lifted, in real seconds, before its order's hold.
FAULT_TAIL_S = 5.0
RANDOM_TARGET_TRIES = 30


@dataclass(frozen=True)
class PlannedDevice:
    """One virtual device: its id, school, classroom (1-based) and role."""

    device_id: str
    school: str
    classroom: int
    role: str


@dataclass(frozen=True)
class PlannedTap:
    """A card held to a terminal `at_s` real seconds into the run."""

    n: int
    at_s: float
    school: str
    device: str
    card: str


@dataclass(frozen=True)
class ExpectedOrder:
    """A work order a fault must open: on a device or on the school's gateway, for a fault code family."""

    subject: str
    code: str


@dataclass(frozen=True)
class PlannedFault:
    """A fault to inject, its target, and the work orders it must open (none for some kinds)."""

    id: str
    kind: str
    at_s: float
    end_s: float
    school: str | None
    device: str | None
    params: dict[str, Any] = field(default_factory=dict)
    expect: tuple[ExpectedOrder, ...] = ()


@dataclass
class Plan:
    """Everything the scenario and the seed decide before anything runs."""

    scenario: str
    seed: int
    minutes: float
    speed: float
    schools: dict[str, list[PlannedDevice]]
    districts: dict[str, str]
    taps: list[PlannedTap]
    faults: list[PlannedFault]

    def devices(self) -> Iterator[PlannedDevice]:
        """Every device of the county."""
        for devices in self.schools.values():
            yield from devices

    def records(self) -> Iterator[dict[str, Any]]:
        """The plan as ledger records, in a fixed order."""
        yield {"type": "plan", "version": LEDGER_VERSION, "scenario": self.scenario, "seed": self.seed,
               "minutes": self.minutes, "speed": self.speed, "schools": len(self.schools),
               "devices": sum(len(d) for d in self.schools.values()), "taps": len(self.taps),
               "faults": len(self.faults)}
        for code, devices in self.schools.items():
            yield {"type": "school", "code": code, "district": self.districts[code],
                   "devices": [[d.device_id, d.classroom, d.role] for d in devices]}
        for fault in self.faults:
            record = asdict(fault)
            record["expect"] = [asdict(e) for e in fault.expect]
            yield {"type": "fault", **record}
        for tap in self.taps:
            yield {"type": "tap", **asdict(tap)}


def device_id_for(school_index: int, device_index: int) -> str:
    """A stable device id from the school's and the device's position in the scenario."""
    mac = bytes([0x24, 0x6F, school_index >> 8 & 0xFF, school_index & 0xFF, device_index >> 8 & 0xFF,
                 device_index & 0xFF])
    return topics.device_id_from_mac(mac)


def make_plan(scenario: Scenario, seed: int | None = None) -> Plan:
    """The run's plan from the scenario and a seed (the scenario's own when None)."""
    seed = scenario.seed if seed is None else seed
    rng = random.Random(seed)
    schools: dict[str, list[PlannedDevice]] = {}
    districts: dict[str, str] = {}
    for s_index, school in enumerate(scenario.schools()):
        devices: list[PlannedDevice] = []
        for room in range(1, school.classrooms + 1):
            for role in scenario.classroom.roles:
                devices.append(PlannedDevice(device_id_for(s_index, len(devices)), school.code, room, role))
        schools[school.code] = devices
        districts[school.code] = school.district
    faults = _plan_faults(scenario, rng, schools)
    taps = _plan_taps(scenario, random.Random(rng.getrandbits(64)), schools, faults)
    return Plan(scenario=scenario.name, seed=seed, minutes=scenario.minutes, speed=scenario.speed,
                schools=schools, districts=districts, taps=taps, faults=faults)


def _plan_taps(scenario: Scenario, rng: random.Random, schools: dict[str, list[PlannedDevice]],
               faults: list[PlannedFault]) -> list[PlannedTap]:
    start = seconds_of_day(scenario.start)
    run_s = scenario.minutes * 60
    school_end = start + run_s * scenario.speed
    arrive_a, arrive_b = (seconds_of_day(t) for t in scenario.timetable.arrivals)
    # Nobody taps on a terminal while it is dead: the students walk to the next one, which the plan
    # does not model; a tap never planned cannot be missed.
    dead: dict[str, list[tuple[float, float]]] = {}
    for fault in faults:
        if fault.kind == "device_dead" and fault.device:
            dead.setdefault(fault.device, []).append((fault.at_s - 1.0, fault.end_s + 15.0))
    pending: list[tuple[float, str, str]] = []
    per_hour = scenario.timetable.taps_per_terminal_hour
    for code, devices in schools.items():
        for device in devices:
            if device.role != "attendance":
                continue
            arrivals = round(scenario.classroom.students * scenario.timetable.attendance_rate)
            moments = [rng.triangular(arrive_a, arrive_b, arrive_a + (arrive_b - arrive_a) * 0.7)
                       for _ in range(arrivals)]
            if per_hour > 0:
                t = float(start)
                while True:
                    t += rng.expovariate(per_hour / 3600.0)
                    if t >= school_end:
                        break
                    moments.append(t)
            for moment in moments:
                if start <= moment < school_end:
                    at_s = round((moment - start) / scenario.speed, 3)
                    down = dead.get(device.device_id, ())
                    if at_s < run_s - FAULT_TAIL_S and not any(a <= at_s <= b for a, b in down):
                        pending.append((at_s, code, device.device_id))
    pending.sort()
    cards: set[str] = set()
    taps = []
    for n, (at_s, code, device_id) in enumerate(pending):
        card = f"{rng.getrandbits(32):08x}"
        while card in cards:
            card = f"{rng.getrandbits(32):08x}"
        cards.add(card)
        taps.append(PlannedTap(n=n, at_s=at_s, school=code, device=device_id, card=card))
    return taps


def _expect(scenario: Scenario, kind: str, duration_s: float) -> tuple[ExpectedOrder, ...]:
    if kind == "sensor_failure":
        return (ExpectedOrder("device", "sensor_fault"),)
    if kind in ("device_dead", "wifi_flapping"):
        return (ExpectedOrder("device", "device_offline"),)
    if kind == "display_no_power_on":
        return (ExpectedOrder("device", "display_power_fault"),)
    if expects_gateway_order(kind, duration_s, scenario.timing):
        return (ExpectedOrder("gateway", "gateway_offline"),)
    return ()


class _Occupancy:
    """Which windows are taken: by cloud outages, by each school's outages, by each school's and each
    device's device faults.

    Faults whose outcomes would mask each other are kept apart: while the cloud or a school's link is
    down, the cloud rightly says nothing about the devices behind it.
    """

    def __init__(self) -> None:
        self.county: list[tuple[float, float]] = []
        self.outages: dict[str, list[tuple[float, float]]] = {}
        self.device_faults: dict[str, list[tuple[float, float]]] = {}
        self.device: dict[str, list[tuple[float, float]]] = {}

    @staticmethod
    def _hits(windows: Iterable[tuple[float, float]], a: float, b: float) -> bool:
        return any(a < y and x < b for x, y in windows)

    def conflict(self, kind: str, a: float, b: float, school: str | None, device: str | None) -> str | None:
        """Why this fault cannot take the window [a, b), or None."""
        a, b = a - MARGIN_S, b + MARGIN_S
        if self._hits(self.county, a, b):
            return "overlaps a cloud outage"
        if kind == "cloud_outage":
            every = [*self.outages.values(), *self.device_faults.values()]
            return "overlaps another fault" if any(self._hits(w, a, b) for w in every) else None
        assert school is not None
        if self._hits(self.outages.get(school, ()), a, b):
            return f"overlaps an outage of school {school}"
        if kind in SCHOOL_FAULTS and self._hits(self.device_faults.get(school, ()), a, b):
            return f"overlaps a device fault of school {school}"
        if device is not None and self._hits(self.device.get(device, ()), a, b):
            return f"overlaps another fault of device {device}"
        return None

    def take(self, kind: str, a: float, b: float, school: str | None, device: str | None) -> None:
        """Mark the window taken."""
        if kind == "cloud_outage":
            self.county.append((a, b))
        elif kind in SCHOOL_FAULTS:
            assert school is not None
            self.outages.setdefault(school, []).append((a, b))
        else:
            assert school is not None and device is not None
            self.device_faults.setdefault(school, []).append((a, b))
            self.device.setdefault(device, []).append((a, b))


def _target(scenario: Scenario, rng: random.Random, schools: dict[str, list[PlannedDevice]], fault: Fault
            ) -> tuple[str | None, str | None]:
    if fault.kind == "cloud_outage":
        return None, None
    code = fault.school or rng.choice(list(schools))
    if fault.kind in SCHOOL_FAULTS:
        return code, None
    role = DEVICE_FAULT_ROLE[fault.kind] or fault.role
    rooms = sorted({d.classroom for d in schools[code]})
    room = fault.classroom or rng.choice(rooms)
    candidates = [d for d in schools[code] if d.classroom == room and (role is None or d.role == role)]
    if not candidates:
        raise ScenarioError(f"{fault.kind} in school {code} classroom {room}: no {role or 'device'} there")
    return code, rng.choice(candidates).device_id


def _params(scenario: Scenario, fault: Fault) -> dict[str, Any]:
    if fault.kind == "sensor_failure":
        return {"sensor": fault.sensor, "mode": fault.mode}
    if fault.kind == "wifi_flapping":
        down = fault.down_s or scenario.timing.offline_detect_s() + MARGIN_S * 1.5
        return {"down_s": down, "up_s": fault.up_s}
    return {}


def _plan_faults(scenario: Scenario, rng: random.Random, schools: dict[str, list[PlannedDevice]]
                 ) -> list[PlannedFault]:
    occ = _Occupancy()
    chosen: list[tuple[Fault, str | None, str | None]] = []
    for number, fault in enumerate(scenario.faults, 1):
        school, device = _target(scenario, rng, schools, fault)
        problem = occ.conflict(fault.kind, fault.at_s, fault.end_s, school, device)
        if problem:
            raise ScenarioError(f"faults[{number}] ({fault.kind} at {fault.at_s:g} s): {problem}")
        occ.take(fault.kind, fault.at_s, fault.end_s, school, device)
        chosen.append((fault, school, device))
    spec = scenario.random_faults
    if spec is not None:
        run_s = scenario.minutes * 60
        t = spec.first_s
        while True:
            kind = rng.choice(spec.kinds)
            for _ in range(RANDOM_TARGET_TRIES):
                duration = round(rng.uniform(*spec.duration_s), 1)
                # Outages that must stay short to open nothing are cut to their longest safe length.
                if kind == "broker_outage":
                    duration = min(duration, math.floor(broker_outage_limit_s(scenario.timing)))
                elif kind == "cloud_outage":
                    duration = min(duration, math.floor(cloud_outage_limit_s(scenario.timing)))
                fault = Fault(kind=kind, at_s=round(t, 1), duration_s=duration)  # type: ignore[arg-type]
                if threshold_problem(kind, duration, scenario.timing, fault) is None:
                    break
            if t + duration > run_s - FAULT_TAIL_S:
                break
            if threshold_problem(kind, duration, scenario.timing, fault) is None:
                for _ in range(RANDOM_TARGET_TRIES):
                    school, device = _target(scenario, rng, schools, fault)
                    if occ.conflict(kind, fault.at_s, fault.end_s, school, device) is None:
                        occ.take(kind, fault.at_s, fault.end_s, school, device)
                        chosen.append((fault, school, device))
                        break
            t += spec.every_s * rng.uniform(0.75, 1.25)
    chosen.sort(key=lambda item: (item[0].at_s, item[0].kind, item[1] or "", item[2] or ""))
    out = []
    for n, (fault, school, device) in enumerate(chosen, 1):
        out.append(PlannedFault(id=f"F{n:04d}", kind=fault.kind, at_s=fault.at_s, end_s=fault.end_s, school=school,
                                device=device, params=_params(scenario, fault),
                                expect=_expect(scenario, fault.kind, fault.duration_s)))
    return out


class LedgerWriter:
    """Appends the plan and then what happened to a JSON lines file; safe to call from many threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = open(path, "w", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        """Append one record."""
        line = json.dumps(record, separators=(",", ":"), sort_keys=True)
        with self._lock:
            self._file.write(line + "\n")

    def write_plan(self, plan: Plan) -> None:
        """Append the whole plan."""
        with self._lock:
            for record in plan.records():
                self._file.write(json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n")
            self._file.flush()

    def flush(self) -> None:
        """Push what is written to the file."""
        with self._lock:
            self._file.flush()

    def close(self) -> None:
        """Flush and close."""
        with self._lock:
            if not self._file.closed:
                self._file.flush()
                self._file.close()


def plan_lines(plan: Plan) -> list[str]:
    """The plan's ledger lines, as written: equal plans give equal lines."""
    return [json.dumps(r, separators=(",", ":"), sort_keys=True) for r in plan.records()]


@dataclass
class FaultOutcome:
    """A fault from the ledger with when it was really injected and lifted (wall clock), if it was."""

    fault: dict[str, Any]
    started: float | None = None
    ended: float | None = None


@dataclass
class LedgerRecord:
    """A ledger file read back."""

    plan: dict[str, Any]
    schools: dict[str, dict[str, Any]]
    faults: dict[str, FaultOutcome]
    taps: dict[int, dict[str, Any]]
    stack: dict[str, Any]
    end: dict[str, Any] | None

    def taps_taken(self) -> list[dict[str, Any]]:
        """The taps a device answered `ok`: each must reach the cloud exactly once."""
        return [t for t in self.taps.values() if t.get("result") == "ok"]


def read_ledger(path: Path) -> LedgerRecord:
    """Read a ledger file; ValueError when it is not one."""
    plan: dict[str, Any] | None = None
    schools: dict[str, dict[str, Any]] = {}
    faults: dict[str, FaultOutcome] = {}
    taps: dict[int, dict[str, Any]] = {}
    stack: dict[str, Any] = {}
    end = None
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as exc:
                if number > 1:
                    # A run killed mid-write leaves half a line at the end; what came before stands.
                    break
                raise ValueError(f"{path} is not a ClassOps ledger: {exc}") from exc
            kind = rec.get("type")
            if kind == "plan":
                plan = rec
            elif kind == "school":
                schools[rec["code"]] = rec
            elif kind == "fault":
                faults[rec["id"]] = FaultOutcome(rec)
            elif kind == "tap":
                taps[rec["n"]] = dict(rec)
            elif kind == "tap_result":
                if rec["n"] in taps:
                    taps[rec["n"]].update(result=rec["result"], wall=rec["wall"])
            elif kind == "fault_start":
                faults[rec["id"]].started = rec["wall"]
            elif kind == "fault_end":
                faults[rec["id"]].ended = rec["wall"]
            elif kind == "stack":
                stack = rec
            elif kind == "end":
                end = rec
    if plan is None:
        raise ValueError(f"{path} is not a ClassOps ledger: it has no plan record")
    return LedgerRecord(plan=plan, schools=schools, faults=faults, taps=taps, stack=stack, end=end)


def tap_rate(plan: Plan) -> float:
    """Planned taps per real second at the busiest minute, for sizing the tapping threads."""
    if not plan.taps:
        return 0.0
    per_minute: dict[int, int] = {}
    for tap in plan.taps:
        per_minute[math.floor(tap.at_s / 60)] = per_minute.get(math.floor(tap.at_s / 60), 0) + 1
    return max(per_minute.values()) / 60.0
