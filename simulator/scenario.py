"""Scenarios: a county, its schools and classrooms, the school day, and the faults to inject, in TOML.

A scenario file is read with tomllib and validated here; a bad file is refused with the key, the line
and what to change. Two clocks are involved, on purpose:

- school time (`start`, `[timetable]`, `[taps]`, `[sensors]`) is what the students and classes follow,
  and runs `speed` times faster than real time, so that a morning's arrivals fit in a short run;
- faults are timed in real seconds from the start of the run (`at_s`, `duration_s`), because what makes
  them visible (health periods, grace periods, stale limits, hold times) runs on the real clocks of the
  firmware, the gateway and the cloud, which are never accelerated.

Every fault is checked against those real-time thresholds: one too short to be seen, or so close to a
threshold that whether it opens a work order would be a matter of luck, is refused.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from protocol import topics

Role = Literal["attendance", "sensor", "blackboard"]
FaultKind = Literal[
    "sensor_failure",
    "device_dead",
    "wifi_flapping",
    "display_no_power_on",
    "broker_outage",
    "gateway_crash",
    "internet_outage",
    "cloud_outage",
]
ROLES: tuple[Role, ...] = ("attendance", "sensor", "blackboard")
FAULT_KINDS = (
    "sensor_failure",
    "device_dead",
    "wifi_flapping",
    "display_no_power_on",
    "broker_outage",
    "gateway_crash",
    "internet_outage",
    "cloud_outage",
)
DEVICE_FAULT_KINDS: tuple[FaultKind, ...] = ("sensor_failure", "device_dead", "wifi_flapping", "display_no_power_on")
# Which device role each device fault needs.
DEVICE_FAULT_ROLE = {
    "sensor_failure": "sensor",
    "device_dead": None,
    "wifi_flapping": None,
    "display_no_power_on": "blackboard",
}
SCHOOL_FAULTS = ("broker_outage", "gateway_crash", "internet_outage")
# Seconds of slack on either side of a threshold: timer phases, process start-up, one sync round.
MARGIN_S = 6.0
# The gateway's longest back-off between failed syncs (simulator.stack.gateway_toml sets it).
GATEWAY_BACKOFF_MAX_S = 5.0
# Outage plus the devices' reconnect back-off, over the outage (firmware/app/device.py BACKOFF_*).
RECONNECT_FACTOR = 2.5
# The blackboard firmware retries a failed switch this often (firmware/app/roles/blackboard.py RETRY_MS).
DISPLAY_RETRY_S = 30.0

# Shipped as package data (pyproject.toml), beside this module.
SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"

SchoolTime = Annotated[str, Field(pattern=r"^\d{2}:\d{2}(:\d{2})?$", description="HH:MM in school time")]


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the key and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def seconds_of_day(text: str) -> int:
    """'HH:MM' or 'HH:MM:SS' as seconds after midnight."""
    parts = [int(p) for p in text.split(":")]
    hours, minutes, seconds = (parts + [0])[:3]
    if hours > 23 or minutes > 59 or seconds > 59:
        raise ValueError(f"{text!r} is not a time of day")
    return hours * 3600 + minutes * 60 + seconds


class Timing(_Strict):
    """Periods and limits of the firmware, gateway and cloud, in real seconds."""

    health_s: int = Field(default=60, ge=1)
    telemetry_s: float = Field(default=60.0, gt=0)
    heartbeat_s: float = Field(default=15.0, gt=0, description="gateway heartbeat to the cloud")
    offline_grace_s: float = Field(default=300.0, ge=0, description="gateway rule: offline this long")
    rules_every_s: float = Field(default=10.0, gt=0, description="gateway rule evaluation period")
    gateway_stale_s: float = Field(default=120.0, gt=0, description="cloud: a gateway silent this long is down")
    verify_hold_s: float = Field(default=600.0, ge=0, description="cloud: clear this long = verified")
    operations_s: float = Field(default=60.0, gt=0, description="cloud: period of its stale/verify checks")
    devices_per_vm: int = Field(default=50, ge=1, le=1000, description="devices one MicroPython VM hosts")
    displays: Literal["all", "faulted"] = Field(
        default="all", description="blackboards with a virtual display: all, or only those a fault needs"
    )

    def offline_detect_s(self) -> float:
        """Real seconds from a device going silent to its device_offline alarm."""
        return self.offline_grace_s + self.rules_every_s

    def gateway_detect_s(self) -> float:
        """Real seconds from a gateway's last sync to its gateway_offline order."""
        return self.gateway_stale_s + self.operations_s


class Classroom(_Strict):
    """What every classroom holds."""

    roles: list[Role] = Field(default=list(ROLES), min_length=1)
    students: int = Field(default=45, ge=0, le=200)


class Timetable(_Strict):
    """The school day, in school time."""

    arrivals: tuple[SchoolTime, SchoolTime] = ("07:30", "08:00")
    lessons: list[tuple[SchoolTime, SchoolTime]] = Field(
        default_factory=lambda: [("08:00", "08:45"), ("08:55", "09:40"), ("10:00", "10:45"), ("10:55", "11:40"),
                                 ("14:00", "14:45"), ("14:55", "15:40"), ("16:00", "16:45")]
    )
    attendance_rate: float = Field(default=0.97, ge=0, le=1, description="share of students who come")
    taps_per_terminal_hour: float = Field(default=2.0, ge=0, description="late arrivals, teachers, visitors")

    @field_validator("arrivals")
    @classmethod
    def _arrivals(cls, value: tuple[str, str]) -> tuple[str, str]:
        if seconds_of_day(value[1]) <= seconds_of_day(value[0]):
            raise ValueError("arrivals end must be after their start")
        return value

    def in_lesson(self, second_of_day: float) -> bool:
        """True while a lesson is on."""
        return any(seconds_of_day(a) <= second_of_day < seconds_of_day(b) for a, b in self.lessons)


class Sensors(_Strict):
    """What the environment sensors measure: [during a break, during a lesson] where two values."""

    temp_c: float = 22.0
    rh_pct: float = 50.0
    co2_ppm: tuple[float, float] = (550.0, 950.0)
    pm25_ugm3: float = 18.0
    lux: tuple[float, float] = (300.0, 450.0)
    noise_dba: tuple[float, float] = (42.0, 58.0)
    update_every_min: float = Field(default=10.0, gt=0, description="school minutes between value changes")


class SchoolGroup(_Strict):
    """`count` schools alike: their kind (a label), classrooms each, and the school codes' prefix."""

    kind: str = Field(min_length=1, max_length=32)
    count: int = Field(ge=0, le=5000)
    classrooms: int = Field(ge=1, le=200)
    prefix: str | None = Field(default=None, description="school codes are <prefix><nnn>")


class District(_Strict):
    """A county or district and its schools."""

    code: str = Field(pattern=r"^[A-Za-z0-9_-]{1,12}$")
    name: str = Field(min_length=1, max_length=100)
    schools: list[SchoolGroup] = Field(min_length=1)


class Fault(_Strict):
    """One fault: what, where and when (real seconds from the run's start)."""

    kind: FaultKind
    at_s: float = Field(ge=0)
    duration_s: float = Field(gt=0)
    school: str | None = Field(default=None, description="school code; a seeded choice if left out")
    classroom: int | None = Field(default=None, ge=1, description="1-based; a seeded choice if left out")
    role: Role | None = Field(
        default=None, description="device_dead and wifi_flapping: which device of the classroom"
    )
    sensor: Literal["sht4x", "scd4x", "pms5003", "bh1750", "mic"] = "scd4x"
    mode: Literal["no_answer", "crc", "stuck"] = "no_answer"
    down_s: float = Field(default=0.0, ge=0, description="wifi_flapping: each drop (0: offline_detect + margin)")
    up_s: float = Field(default=5.0, gt=0, description="wifi_flapping: between drops")

    @property
    def end_s(self) -> float:
        """When the fault is lifted."""
        return self.at_s + self.duration_s


class RandomFaults(_Strict):
    """Faults drawn from the seed: one every `every_s` real seconds, each lasting a time in `duration_s`."""

    every_s: float = Field(gt=0)
    first_s: float = Field(default=30.0, ge=0)
    duration_s: tuple[float, float] = (40.0, 90.0)
    kinds: list[FaultKind] = Field(default_factory=lambda: list(DEVICE_FAULT_KINDS))

    @field_validator("duration_s")
    @classmethod
    def _range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1]:
            raise ValueError("duration_s is [shortest, longest], both positive")
        return value


class Scenario(_Strict):
    """A whole scenario file."""

    name: str = Field(min_length=1, max_length=80)
    description: str = ""
    seed: int = 1
    minutes: float = Field(default=10.0, gt=0, description="real minutes the run lasts (faults included)")
    speed: float = Field(default=1.0, gt=0, le=3600, description="school seconds per real second")
    start: SchoolTime = "07:25"
    date: dt.date = dt.date(2026, 11, 23)
    timezone: str = "Asia/Shanghai"
    city: tuple[str, str] = ("CZ", "Chuzhou")
    timing: Timing = Timing()
    classroom: Classroom = Classroom()
    timetable: Timetable = Timetable()
    sensors: Sensors = Sensors()
    districts: list[District] = Field(min_length=1)
    faults: list[Fault] = Field(default_factory=list)
    random_faults: RandomFaults | None = None

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        codes = [d.code for d in self.districts]
        if len(set(codes)) != len(codes):
            raise ValueError("two districts share a code")
        schools = self.school_codes()
        if len(set(schools)) != len(schools):
            raise ValueError("two schools would get the same code: give their groups different prefixes")
        for code in schools:
            if not topics.is_school_code(code):
                raise ValueError(f"school code {code!r} is not 1-32 letters, digits, '_' or '-'")
        if not schools:
            raise ValueError("the scenario has no schools")
        known = set(schools)
        for number, fault in enumerate(self.faults, 1):
            if fault.school is not None and fault.school not in known:
                raise ValueError(f"faults[{number}]: no school {fault.school!r} in this scenario")
            if fault.end_s > self.minutes * 60:
                raise ValueError(f"faults[{number}] ({fault.kind}) ends after the run's {self.minutes} minutes")
            problem = threshold_problem(fault.kind, fault.duration_s, self.timing, fault)
            if problem:
                raise ValueError(f"faults[{number}] ({fault.kind}, {fault.duration_s:g} s): {problem}")
            role = DEVICE_FAULT_ROLE.get(fault.kind)
            wanted = role or fault.role
            if fault.kind in DEVICE_FAULT_ROLE and wanted is not None and wanted not in self.classroom.roles:
                raise ValueError(f"faults[{number}] ({fault.kind}) needs a {wanted} in the classrooms")
        if self.random_faults is not None:
            low, high = self.random_faults.duration_s
            for kind in self.random_faults.kinds:
                if kind in ("broker_outage", "cloud_outage"):
                    continue
                steps = [low + (high - low) * i / 20 for i in range(21)]
                if all(threshold_problem(kind, d, self.timing, None) for d in steps):
                    problem = threshold_problem(kind, high, self.timing, None)
                    raise ValueError(f"random_faults: no {kind} lasting {low:g}-{high:g} s can be judged: {problem}")
        return self

    def school_codes(self) -> list[str]:
        """Every school's code, in file order."""
        return [school.code for school in self.schools()]

    def schools(self) -> list[SchoolSpec]:
        """Every school, with its district and classroom count, in file order."""
        out = []
        for district in self.districts:
            for group in district.schools:
                prefix = group.prefix if group.prefix is not None else f"{district.code}-{group.kind[:1].upper()}"
                for n in range(1, group.count + 1):
                    out.append(SchoolSpec(code=f"{prefix}{n:03d}", district=district.code, kind=group.kind,
                                          classrooms=group.classrooms,
                                          name=f"{district.name} {group.kind} school {n}"))
        return out

    def device_count(self) -> int:
        """Devices in the whole county."""
        return sum(s.classrooms for s in self.schools()) * len(self.classroom.roles)


class SchoolSpec(BaseModel):
    """One school of a scenario."""

    code: str
    district: str
    kind: str
    classrooms: int
    name: str


def scale_scenario(scenario: Scenario, factor: float) -> Scenario:
    """The scenario with every school group's count times `factor` (at least one school per group that
    had any), for running a part of a large county on one machine."""
    if factor <= 0:
        raise ScenarioError("the scale must be positive")
    data = scenario.model_dump()
    for district in data["districts"]:
        for group in district["schools"]:
            if group["count"]:
                group["count"] = max(1, round(group["count"] * factor))
    known = set(Scenario.model_validate(data).school_codes())
    data["faults"] = [f for f in data["faults"] if f["school"] is None or f["school"] in known]
    return Scenario.model_validate(data)


def threshold_problem(kind: str, duration_s: float, timing: Timing, fault: Fault | None) -> str | None:
    """Why a fault of this kind and length cannot be judged reliably, or None."""
    if kind in ("device_dead",):
        detect = timing.offline_detect_s()
        if duration_s < detect + MARGIN_S:
            return (f"a dead device is seen after offline_grace_s + rules_every_s = {detect:g} s; "
                    f"make it last at least {detect + MARGIN_S:g} s")
    elif kind == "wifi_flapping":
        detect = timing.offline_detect_s()
        down = fault.down_s if fault is not None and fault.down_s else detect + MARGIN_S
        up = fault.up_s if fault is not None else 5.0
        if down < detect + MARGIN_S:
            return f"each drop must last at least {detect + MARGIN_S:g} s to be seen (down_s)"
        if duration_s < down:
            return f"lasts less than one drop ({down:g} s)"
        if up < 1:
            return "up_s must be at least 1 s"
    elif kind == "sensor_failure":
        need = 2 * timing.telemetry_s + MARGIN_S
        if duration_s < need:
            return f"a sensor is reported failed after two reads (2 x telemetry_s); make it last {need:g} s"
    elif kind == "display_no_power_on":
        if duration_s < MARGIN_S * 2:
            return f"make it last at least {MARGIN_S * 2:g} s: the power-on command needs time to arrive"
    elif kind == "broker_outage":
        limit = broker_outage_limit_s(timing)
        if duration_s > limit:
            return (f"longer than {limit:g} s the devices' reconnect back-off outlasts 3 missed health periods "
                    "+ grace, and the gateway takes each for offline; keep broker outages shorter")
    elif kind in ("gateway_crash", "internet_outage"):
        quiet = duration_s + timing.heartbeat_s + MARGIN_S
        if not (quiet < timing.gateway_stale_s or duration_s >= timing.gateway_detect_s() + MARGIN_S):
            return (f"too close to gateway_stale_s ({timing.gateway_stale_s:g} s): make it shorter than "
                    f"{timing.gateway_stale_s - timing.heartbeat_s - MARGIN_S:g} s or at least "
                    f"{timing.gateway_detect_s() + MARGIN_S:g} s")
    elif kind == "cloud_outage":
        quiet = duration_s + timing.heartbeat_s + GATEWAY_BACKOFF_MAX_S + MARGIN_S
        if quiet >= timing.gateway_stale_s:
            return (f"gateways back after a cloud outage sync within heartbeat_s + back-off; keep it under "
                    f"{timing.gateway_stale_s - timing.heartbeat_s - GATEWAY_BACKOFF_MAX_S - MARGIN_S:g} s "
                    "so that no gateway looks stale")
    return None


def broker_outage_limit_s(timing: Timing) -> float:
    """The longest broker crash after which every device is back before the gateway would miss it.

    The firmware's reconnect back-off doubles from 0.5 s with +-50 % jitter, so a device may come back up
    to about 1.5 times the outage after the broker does.
    """
    return max(0.0, (2 * timing.health_s + timing.offline_grace_s - MARGIN_S) / RECONNECT_FACTOR)


def cloud_outage_limit_s(timing: Timing) -> float:
    """The longest cloud outage after which every gateway has synced before it would look stale."""
    return max(0.0, timing.gateway_stale_s - timing.heartbeat_s - GATEWAY_BACKOFF_MAX_S - MARGIN_S - 1)


def expects_gateway_order(kind: str, duration_s: float, timing: Timing) -> bool:
    """True if a school-level fault of this length must open the gateway_offline order."""
    return kind in ("gateway_crash", "internet_outage") and duration_s >= timing.gateway_detect_s() + MARGIN_S


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """Line of the first key named in `loc` that occurs in the text, searching from the innermost."""
    for part in reversed(loc):
        if isinstance(part, str):
            for number, line in enumerate(text.splitlines(), 1):
                stripped = line.strip()
                if stripped.startswith(f"{part} ") or stripped.startswith(f"{part}=") or stripped in (
                    f"[{part}]", f"[[{part}]]"
                ):
                    return number
    return None


def _describe(exc: ValidationError, text: str) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        number = _line_of(text, tuple(err["loc"])) if err["loc"] else None
        at = f"line {number}: " if number else ""
        hint = " (remove it, or check its spelling)" if err["type"] == "extra_forbidden" else ""
        hint = " (add it)" if err["type"] == "missing" else hint
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {at}{where}: {message}{hint}")
    return "\n".join(lines)


def parse_scenario(text: str, source: str = "(text)") -> Scenario:
    """Validate a scenario's TOML text; ScenarioError names each problem, its line and the fix."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"scenario {source}: not valid TOML: {exc}") from exc
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(f"scenario {source} is invalid:\n{_describe(exc, text)}") from exc


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario file, or a built-in one by name (chuzhou, small, demo)."""
    candidate = Path(path)
    if not candidate.exists() and candidate.suffix == "" and builtin_path(str(path)) is not None:
        candidate = builtin_path(str(path))  # type: ignore[assignment]
    try:
        text = candidate.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        names = ", ".join(builtin_names())
        raise ScenarioError(f"scenario {path}: no such file (built-in scenarios: {names})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"scenario {path}: cannot be read: {exc}") from exc
    return parse_scenario(text, str(candidate))


def builtin_names() -> list[str]:
    """Names of the scenarios shipped with the simulator."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def builtin_path(name: str) -> Path | None:
    """The file of a built-in scenario, or None."""
    path = SCENARIO_DIR / f"{name}.toml"
    return path if path.is_file() else None
