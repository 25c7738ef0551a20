"""The county figures read from the daily summaries equal the figures counted from the raw history.

A small county (district d1: s1, s2; district d2: s3 in another time zone) gets three weeks of hourly
health roll-ups, health samples and blackboard usage counters, randomly thinned out. The summaries are
built by the maintenance run part-way through; then history keeps arriving: the current day, samples that
arrive late for a day already summarised, a device that moves school and one that changes role, pruning.
At every step the figures of the county, a district, a school and two contractor teams (one covering every
role, one only blackboards) are computed both ways and must be the same, and the county of every school
(counted without naming its schools) must give each school what its district's report gives. With s3 in
the time zone of s1 and s2, one calendar counts every school of the county at once.
"""

import random
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlmodel import Session, func, select

from cloud import crud, registry
from cloud.figures.report import figures
from cloud.figures.summaries import summary_state
from cloud.models import (
    Device,
    HealthHourly,
    HealthSample,
    MaintenanceReport,
    OnlineDay,
    TelemetrySample,
    UsageDay,
    User,
)
from cloud.workorders import teams
from tests.cloud.helpers import CLI

START = date(2026, 1, 5)  # a Monday
RETENTION = {"sample_retention": timedelta(days=31), "rollup_retention": timedelta(days=400)}
ROLES = ("attendance", "sensor", "blackboard")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


def moment(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime.combine(START + timedelta(days=day), datetime.min.time(), UTC) + timedelta(
        hours=hour, minutes=minute
    )


class History:
    """Writes device history straight into the tables, as sync and the roll-up would leave it."""

    def __init__(self, session: Session, devices: list[Device], seed: int = 7) -> None:
        self.session = session
        self.devices = devices
        self.rng = random.Random(seed)
        self.seq = 0
        self.counters = {device.id: self.rng.uniform(10, 500) for device in devices}

    def _seq(self) -> int:
        self.seq += 1
        return self.seq

    def hourly(self, first: int, last: int) -> None:
        """Roll-ups for the UTC hours of days first..last, each device missing some."""
        for device in self.devices:
            for day in range(first, last + 1):
                for hour in range(24):
                    if self.rng.random() < 0.7:
                        self.session.add(
                            HealthHourly(
                                device_id=device.id,
                                hour=moment(day, hour),
                                school_code=device.school_code,
                                samples=1,
                                boots=1,
                            )
                        )

    def samples(self, day: int, hours: range, received: datetime, devices: list[Device] | None = None) -> None:
        """Health samples not rolled up yet."""
        for device in devices or self.devices:
            for hour in hours:
                if self.rng.random() < 0.8:
                    ts = moment(day, hour, self.rng.randrange(60))
                    self.session.add(
                        HealthSample(
                            device_id=device.id,
                            boot_id="0badf00d",
                            seq=self._seq(),
                            ts=ts,
                            school_code=device.school_code,
                            received_at=received,
                            hour=moment(day, hour),
                        )
                    )

    def usage(self, first: int, last: int, received: datetime | None = None) -> None:
        """Blackboard usage counters a few times a day (and a reset now and then)."""
        for device in self.devices:
            if device.role != "blackboard":
                continue
            for day in range(first, last + 1):
                for hour in sorted(self.rng.sample(range(24), 3)):
                    self.counters[device.id] += self.rng.choice((0.0, 0.1, 0.25, 1.5, 3.0))
                    if self.rng.random() < 0.03:
                        self.counters[device.id] = 0.0
                    ts = moment(day, hour, 17)
                    self.session.add(
                        TelemetrySample(
                            device_id=device.id,
                            boot_id="0badf00d",
                            seq=self._seq(),
                            ts=ts,
                            school_code=device.school_code,
                            received_at=received or ts,
                            readings={"usage_h": round(self.counters[device.id], 2)},
                        )
                    )
        self.session.commit()


# School s3 in another time zone than s1 and s2, or in theirs.
@pytest.fixture(params=["Europe/London", "Asia/Shanghai"])
def county(world, crew, session, request):
    registry.create_district(session, actor=CLI, code="d2", city_code="c1", name="District 2")
    registry.create_school(session, actor=CLI, code="s3", name="School s3", district_code="d2", timezone=request.param)
    boards = teams.create_team(session, actor=CLI, name="Boards", districts=["d1", "d2"], device_roles=["blackboard"])
    devices = []
    for n, school in enumerate(("s1", "s1", "s2", "s3") * 3):
        device = Device(id=f"esp32-{n:012x}", school_code=school, role=ROLES[n % 3])
        session.add(device)
        devices.append(device)
    session.add(Device(id="esp32-ffffffffffff", school_code="s2", role=None))
    session.commit()
    return {"crew": crew.team_id, "boards": boards.id, "devices": devices}


def _maintain(session: Session, now: datetime) -> MaintenanceReport:
    report = crud.run_maintenance(session, actor=CLI, now=now, **RETENTION)
    assert report is not None
    return report


def _same_both_ways(session: Session, county: dict, today: int) -> int:
    """Every report computed from the summaries and from the raw history; returns how many were compared."""
    user = session.exec(select(User).where(User.username == "county")).one()
    ranges = [(0, today), (2, 9), (today - 1, today), (today, today)]
    scopes = [
        ("county", None),
        ("county", "d1"),
        ("school", "s1"),
        ("school", "s3"),
        ("contractor", str(county["crew"])),
        ("contractor", str(county["boards"])),
    ]
    compared = 0
    for first, last in ranges:
        for scope, scope_id in scopes:
            query = {
                "user": user,
                "scope": scope,
                "scope_id": scope_id,
                "date_from": START + timedelta(days=max(0, first)),
                "date_to": START + timedelta(days=last),
                "today": START + timedelta(days=today),
            }
            summarised = figures(session, **query).model_dump()
            raw = figures(session, **query, use_summaries=False).model_dump()
            assert summarised == raw, (scope, scope_id, first, last)
            compared += 1
        # The county of every school is counted without naming its schools; each school gets the figures a
        # report that names it (its district's, when read in the same time zone) gives.
        for use_summaries in (True, False):
            query = {
                "user": user,
                "date_from": START + timedelta(days=max(0, first)),
                "date_to": START + timedelta(days=last),
                "today": START + timedelta(days=today),
                "use_summaries": use_summaries,
            }
            whole = figures(session, scope="county", **query)
            for district_code in ("d1", "d2"):
                district = figures(session, scope="county", scope_id=district_code, **query)
                if district.timezone == whole.timezone:
                    named = {school.school_code for school in district.schools}
                    schools = [school for school in whole.schools if school.school_code in named]
                    assert schools == district.schools, (district_code, first, last, use_summaries)
                    compared += 1
    return compared


def test_summaries_give_the_raw_figures(session, county):
    devices: list[Device] = county["devices"]
    history = History(session, devices)
    history.hourly(0, 9)
    history.usage(0, 9)
    # Nothing summarised yet: every figure is counted from the raw history.
    assert summary_state(session).through is None
    _same_both_ways(session, county, today=10)

    report = _maintain(session, moment(10, 3))
    assert report.summarised_days > 0
    state = summary_state(session)
    assert state.through == moment(10) and not state.stale
    assert session.exec(select(func.count()).select_from(OnlineDay)).one() > 0
    assert session.exec(select(func.count()).select_from(UsageDay)).one() > 0
    _same_both_ways(session, county, today=10)

    # The current day arrives as samples and counters; one device's samples for day 3, already summarised,
    # arrive late and are not rolled up yet.
    history.samples(10, range(0, 5), received=moment(10, 5))
    history.samples(3, range(0, 24), received=moment(10, 5), devices=[devices[0], devices[2]])
    history.usage(10, 10)
    assert _same_both_ways(session, county, today=10)

    # The next run rolls the late samples up and summarises day 3 again.
    report = _maintain(session, moment(10, 6))
    assert report.rolled_up_hours > 0
    _same_both_ways(session, county, today=10)

    # A device moves school and another changes role: their schools read the raw history until rebuilt.
    moved = session.get(Device, devices[0].id)
    assert moved is not None
    moved.school_code = "s3"
    changed = session.get(Device, devices[1].id)
    assert changed is not None
    changed.role = "blackboard"
    session.add_all([moved, changed])
    session.commit()
    assert summary_state(session).stale == {"s1", "s3"}
    _same_both_ways(session, county, today=10)
    _maintain(session, moment(10, 7))
    assert not summary_state(session).stale
    _same_both_ways(session, county, today=10)

    # More days; a run on each later day summarises the days that ended, and late usage counters for the
    # last closed day are picked up by the next run.
    history.hourly(11, 13)
    history.usage(11, 13)
    for day in (12, 13, 14):
        _maintain(session, moment(day, 1))
    history.usage(13, 13, received=moment(14, 2))
    _maintain(session, moment(14, 3))
    assert summary_state(session).through == moment(14)
    _same_both_ways(session, county, today=14)

    # Pruning past the retention cuts into summarised days; the summaries follow.
    report = crud.run_maintenance(
        session,
        actor=CLI,
        now=moment(14, 4),
        sample_retention=timedelta(days=8, hours=5),
        rollup_retention=timedelta(days=9, hours=7),
    )
    assert report is not None and report.pruned_hourly > 0 and report.pruned_telemetry_samples > 0
    _same_both_ways(session, county, today=14)
