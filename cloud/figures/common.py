"""What the figures' counts share: a school's tally, and the SQL conditions and groupings per school."""

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy.sql import ColumnElement
from sqlmodel import Session

from cloud.figures.summaries import one_of


@dataclass
class Tally:
    """Numerators and denominators of one school's figures; a scope's are the sums of its schools'."""

    devices: int = 0
    device_service_hours: int = 0
    online_device_hours: int = 0
    faulty_devices: int = 0
    failures: int = 0
    operating_hours: float = 0.0
    resolved: int = 0
    repair_hours: float = 0.0
    sla_met: int = 0
    classrooms: int = 0
    covered_classrooms: int = 0
    blackboard_days: int = 0
    used_blackboard_days: int = 0
    blackboard_hours: float = 0.0

    @classmethod
    def total(cls, tallies: Sequence["Tally"]) -> "Tally":
        """The sums of these schools' counts, each added up in the schools' order."""
        total = cls()
        for name in _TALLY_FIELDS:
            value = getattr(total, name)
            for tally in tallies:
                value += getattr(tally, name)
            setattr(total, name, value)
        return total


_TALLY_FIELDS = tuple(spec.name for spec in fields(Tally))


def in_schools(column: Any, codes: Sequence[str], every: bool) -> list[ColumnElement[bool]]:
    """`column IN codes`; no condition at all when the codes are every school there is (`every`)."""
    return [] if every else [column.in_(list(codes))]


def device_filter(
    session: Session, codes: Sequence[str], roles: frozenset[str] | None, device: Any, every: bool = False
) -> list[ColumnElement[bool]]:
    """Devices of these schools (`every`: of all schools), of these roles (None: every role)."""
    conditions = [] if every else [one_of(session, device.c.school_code, codes)]
    if roles is not None:
        conditions.append(device.c.role.in_(sorted(roles)))
    return conditions


def per_school(session: Session, statement: Any) -> dict[str, tuple[Any, ...]]:
    return {row[0]: tuple(row[1:]) for row in session.execute(statement).all()}


def merge(*parts: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for part in parts:
        for code, value in part.items():
            if code not in merged:
                merged[code] = value
            elif isinstance(value, tuple):
                merged[code] = tuple(a + b for a, b in zip(merged[code], value, strict=True))
            else:
                merged[code] = merged[code] + value
    return merged
