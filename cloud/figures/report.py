"""Operating figures per county, school or contractor: online rate, fault rate, MTTR, MTBF, SLA compliance,
smart-blackboard coverage and usage. docs/figures.md gives every formula."""

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy import text
from sqlmodel import Session

from cloud.errors import InvalidInput
from cloud.figures.common import Tally
from cloud.figures.scope import reach_of
from cloud.figures.tallies import school_tallies
from cloud.models import User

COVERAGE_TARGET = 1.0
MAX_DAYS = 366
DEFAULT_DAYS = 30
DEFAULT_TIMEZONE = "Asia/Shanghai"


class Figures(BaseModel):
    """The figures of a scope (null where the denominator is zero) and the counts they come from."""

    online_rate: float | None
    fault_rate: float | None
    mttr_h: float | None
    mtbf_h: float | None
    sla_compliance: float | None
    coverage: float | None
    coverage_target: float = COVERAGE_TARGET
    blackboard_usage_rate: float | None
    blackboard_hours_per_day: float | None
    devices: int
    failures: int
    resolved: int
    classrooms: int
    covered_classrooms: int


class SchoolFigures(Figures):
    school_code: str
    school_name: str


class FiguresReport(BaseModel):
    scope: str
    id: str | None
    date_from: date
    date_to: date
    timezone: str
    figures: Figures
    schools: list[SchoolFigures]


def _ratio(numerator: float, denominator: float, digits: int = 4) -> float | None:
    return round(numerator / denominator, digits) if denominator else None


def _figures(tally: Tally) -> dict[str, Any]:
    return {
        "online_rate": _ratio(tally.online_device_hours, tally.device_service_hours),
        "fault_rate": _ratio(tally.faulty_devices, tally.devices),
        "mttr_h": _ratio(tally.repair_hours, tally.resolved, 2),
        "mtbf_h": _ratio(tally.operating_hours, tally.failures, 2),
        "sla_compliance": _ratio(tally.sla_met, tally.resolved),
        "coverage": _ratio(tally.covered_classrooms, tally.classrooms),
        "blackboard_usage_rate": _ratio(tally.used_blackboard_days, tally.blackboard_days),
        "blackboard_hours_per_day": _ratio(tally.blackboard_hours, tally.blackboard_days, 2),
        "devices": tally.devices,
        "failures": tally.failures,
        "resolved": tally.resolved,
        "classrooms": tally.classrooms,
        "covered_classrooms": tally.covered_classrooms,
    }


def figures(
    session: Session,
    *,
    user: User,
    scope: str,
    scope_id: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    today: date | None = None,
    use_summaries: bool = True,
) -> FiguresReport:
    """The figures of a county (a district; all of the user's without id), a school or a contractor team,
    over the days from `date_from` to `date_to`, both included, and each school's. Closed days are read
    from the daily summaries; `use_summaries=False` counts everything from the raw history instead."""
    if session.get_bind().dialect.name == "postgresql":
        # The counts are index probes of a few ms each, but the estimates of some (unknown rows of the current
        # hour, a probe per blackboard) pass the JIT threshold, and compiling costs 100-250 ms per query.
        session.execute(text("SET LOCAL jit = off"))
    reach = reach_of(session, user, scope, scope_id)
    zone_name = reach.schools[0].timezone if reach.schools else DEFAULT_TIMEZONE
    zone = ZoneInfo(zone_name)
    today = today or datetime.now(zone).date()
    last = date_to or today
    first = date_from or last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise InvalidInput("from must not be after to")
    if (last - first).days >= MAX_DAYS:
        raise InvalidInput(f"a report spans at most {MAX_DAYS} days")
    start = datetime.combine(first, time(0), zone).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(0), zone).astimezone(UTC)
    tallies = school_tallies(session, reach, first, last, start, end, use_summaries)
    ordered = [tallies[school.code] for school in reach.schools]
    # Validated in one call: pydantic builds the schools' models from plain dicts faster than one call each.
    return FiguresReport.model_validate(
        {
            "scope": scope,
            "id": scope_id,
            "date_from": first,
            "date_to": last,
            "timezone": zone_name,
            "figures": _figures(Tally.total(ordered)),
            "schools": [
                {"school_code": school.code, "school_name": school.name, **_figures(tally)}
                for school, tally in zip(reach.schools, ordered, strict=True)
            ],
        }
    )


EXPORT_COLUMNS = (
    "school_code",
    "school_name",
    "online_rate",
    "fault_rate",
    "mttr_h",
    "mtbf_h",
    "sla_compliance",
    "coverage",
    "coverage_target",
    "blackboard_usage_rate",
    "blackboard_hours_per_day",
    "devices",
    "failures",
    "resolved",
    "classrooms",
    "covered_classrooms",
)


def export_rows(report: FiguresReport) -> list[list[object]]:
    """The report as a table: a header, a row per school, and the scope's total last."""
    rows: list[list[object]] = [["scope", "id", "from", "to", *EXPORT_COLUMNS]]
    head = [report.scope, report.id or "", report.date_from.isoformat(), report.date_to.isoformat()]
    for school in report.schools:
        values = school.model_dump()
        rows.append([*head, *(values[name] for name in EXPORT_COLUMNS)])
    total = report.figures.model_dump() | {"school_code": "TOTAL", "school_name": ""}
    rows.append([*head, *(total[name] for name in EXPORT_COLUMNS)])
    return rows
