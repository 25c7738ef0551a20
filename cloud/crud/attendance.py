"""Attendance: raw pseudonymous taps and rosters for the school's own admins, aggregates for the rest."""

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import distinct, func
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session, col, select

from cloud import policy
from cloud.core.db import begin_write
from cloud.crud import audit
from cloud.crud.access import personal_data_school, read_scope, require_personal_data_write
from cloud.crud.common import Actor, apply_changes, as_utc, delete_row
from cloud.errors import AccessDenied, AlreadyExists, InvalidInput, NotFound
from cloud.models import (
    AttendanceEvent,
    Building,
    Classroom,
    ClassroomAttendance,
    DailyAttendance,
    Device,
    ImportProblem,
    ImportReport,
    RosterEntry,
    School,
    User,
    utcnow,
)
from cloud.tabular import Table, UnreadableTable

ROSTER_COLUMNS = ("card_pseudonym", "person_name", "person_no", "class_label", "building", "classroom")
ROSTER_LIMITS = {"card_pseudonym": 128, "person_name": 200, "person_no": 64, "class_label": 64}


def list_attendance_events(
    session: Session,
    *,
    user: User,
    school_code: str | None = None,
    device_id: str | None = None,
    since: datetime | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> tuple[Sequence[AttendanceEvent], int]:
    """A page of the raw attendance events of the user's own school, oldest first, and the total."""
    school = personal_data_school(user, school_code)
    conditions: list[ColumnElement[bool]] = [col(AttendanceEvent.school_code) == school]
    if device_id is not None:
        conditions.append(col(AttendanceEvent.device_id) == device_id)
    if since is not None:
        conditions.append(col(AttendanceEvent.ts) >= as_utc(since))
    total = session.exec(select(func.count()).select_from(AttendanceEvent).where(*conditions)).one()
    items = session.exec(
        select(AttendanceEvent)
        .where(*conditions)
        .order_by(col(AttendanceEvent.ts), col(AttendanceEvent.id))
        .offset(offset)
        .limit(limit)
    ).all()
    return items, total


def daily_attendance(session: Session, *, user: User, school_code: str, day: date | None = None) -> DailyAttendance:
    """Per-classroom counts of one school day, in the school's time zone: no personal data."""
    if not policy.can_read_attendance(user):
        raise AccessDenied(f"the role {user.role} does not see attendance")
    scope = read_scope(session, user).narrowed(school_code)
    school = session.get(School, school_code)
    if school is None or not scope.allows_school(school_code):
        raise NotFound(f"school {school_code} not found")
    zone = ZoneInfo(school.timezone)
    if day is None:
        day = utcnow().astimezone(zone).date()
    start = datetime.combine(day, time(0), zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), zone).astimezone(UTC)
    counts = {
        classroom_id: (present, taps)
        for classroom_id, present, taps in session.exec(
            select(
                col(Device.classroom_id),
                func.count(distinct(col(AttendanceEvent.card_pseudonym))),
                func.count(),
            )
            .select_from(AttendanceEvent)
            .join(Device, col(Device.id) == col(AttendanceEvent.device_id))
            .where(
                col(AttendanceEvent.school_code) == school_code,
                col(AttendanceEvent.ts) >= start,
                col(AttendanceEvent.ts) < end,
            )
            .group_by(col(Device.classroom_id))
        ).all()
    }
    enrolled = dict(
        session.exec(
            select(col(RosterEntry.classroom_id), func.count())
            .where(col(RosterEntry.school_code) == school_code, col(RosterEntry.classroom_id).is_not(None))
            .group_by(col(RosterEntry.classroom_id))
        ).all()
    )
    rooms = session.exec(
        select(Classroom, Building.name)
        .join(Building, col(Building.id) == col(Classroom.building_id))
        .where(col(Classroom.school_code) == school_code)
        .order_by(col(Building.name), col(Classroom.name))
    ).all()
    result = []
    for room, building in rooms:
        present, taps = counts.get(room.id, (0, 0))
        size = enrolled.get(room.id, 0)
        result.append(
            ClassroomAttendance(
                classroom_id=room.id,
                classroom=room.name,
                building=building,
                grade=room.grade,
                class_label=room.class_label,
                present=present,
                taps=taps,
                enrolled=size,
                rate=round(present / size, 4) if size else None,
            )
        )
    if None in counts:
        present, taps = counts[None]
        result.append(
            ClassroomAttendance(
                classroom_id=None,
                classroom=None,
                building=None,
                grade=None,
                class_label=None,
                present=present,
                taps=taps,
                enrolled=0,
                rate=None,
            )
        )
    return DailyAttendance(school_code=school_code, date=day, timezone=school.timezone, classrooms=result)


# ---- rosters -------------------------------------------------------------------------------------


def list_roster(session: Session, *, user: User, school_code: str) -> Sequence[RosterEntry]:
    """The school's roster, for its own admins only."""
    school = personal_data_school(user, school_code)
    return session.exec(
        select(RosterEntry)
        .where(col(RosterEntry.school_code) == school)
        .order_by(col(RosterEntry.class_label), col(RosterEntry.person_name))
    ).all()


def _check_roster_classroom(session: Session, school_code: str, classroom_id: int | None) -> None:
    if classroom_id is None:
        return
    room = session.get(Classroom, classroom_id)
    if room is None or room.school_code != school_code:
        raise InvalidInput(f"classroom {classroom_id} is not a classroom of school {school_code}")


def _roster_audit(session: Session, actor: Actor, action: str, entry: RosterEntry, fields: Sequence[str]) -> None:
    # Names and card pseudonyms are personal data; the audit log, read by county staff, gets field names only.
    audit.record(
        session,
        actor=actor,
        action=action,
        entity="roster_entry",
        entity_id=entry.id,
        school_code=entry.school_code,
        summary={"fields": sorted(fields)},
    )


def create_roster_entry(session: Session, *, actor: Actor, school_code: str, fields: dict[str, Any]) -> RosterEntry:
    """Add a person's card to the school's roster."""
    begin_write(session)
    require_personal_data_write(actor, school_code)
    if session.get(School, school_code) is None:
        raise NotFound(f"school {school_code} not found")
    _check_roster_classroom(session, school_code, fields.get("classroom_id"))
    existing = session.exec(
        select(RosterEntry.id).where(
            RosterEntry.school_code == school_code, RosterEntry.card_pseudonym == fields["card_pseudonym"]
        )
    ).first()
    if existing is not None:
        raise AlreadyExists(f"that card is already on the roster as entry {existing}")
    entry = RosterEntry(school_code=school_code, **fields)
    session.add(entry)
    session.flush()
    _roster_audit(session, actor, "create", entry, [name for name, value in fields.items() if value is not None])
    session.commit()
    session.refresh(entry)
    return entry


def _own_entry(session: Session, actor: Actor, school_code: str, entry_id: int) -> RosterEntry:
    require_personal_data_write(actor, school_code)
    entry = session.get(RosterEntry, entry_id)
    if entry is None or entry.school_code != school_code:
        raise NotFound(f"roster entry {entry_id} not found")
    return entry


def update_roster_entry(
    session: Session, *, actor: Actor, school_code: str, entry_id: int, changes: dict[str, Any]
) -> RosterEntry:
    """Change a roster entry."""
    begin_write(session)
    entry = _own_entry(session, actor, school_code, entry_id)
    for name in ("card_pseudonym", "person_name"):
        if name in changes and changes[name] is None:
            raise InvalidInput(f"{name} cannot be removed, only changed")
    if "classroom_id" in changes:
        _check_roster_classroom(session, school_code, changes["classroom_id"])
    diff = apply_changes(entry, changes)
    if diff:
        entry.updated_at = utcnow()
        _roster_audit(session, actor, "update", entry, list(diff))
    session.commit()
    session.refresh(entry)
    return entry


def delete_roster_entry(session: Session, *, actor: Actor, school_code: str, entry_id: int) -> None:
    """Remove a person from the school's roster."""
    begin_write(session)
    entry = _own_entry(session, actor, school_code, entry_id)
    _roster_audit(session, actor, "delete", entry, [])
    delete_row(session, entry, f"roster entry {entry_id}")
    session.commit()


def import_roster(
    session: Session, *, actor: Actor, school_code: str, table: Table, dry_run: bool = False
) -> ImportReport:
    """Add or update roster entries by card pseudonym, one per row; bad rows are reported."""
    begin_write(session)
    require_personal_data_write(actor, school_code)
    if session.get(School, school_code) is None:
        raise NotFound(f"school {school_code} not found")
    missing = [name for name in ("card_pseudonym", "person_name") if name not in table.columns]
    if missing:
        raise UnreadableTable(f"the file needs the columns {', '.join(missing)}")
    problems = [
        ImportProblem(row=1, column=name, message=f"unknown column, ignored; known: {', '.join(ROSTER_COLUMNS)}")
        for name in table.columns
        if name not in ROSTER_COLUMNS
    ]
    rooms = {
        (building, room.name): room.id
        for room, building in session.exec(
            select(Classroom, Building.name)
            .join(Building, col(Building.id) == col(Classroom.building_id))
            .where(col(Classroom.school_code) == school_code)
        )
    }
    existing = {
        entry.card_pseudonym: entry
        for entry in session.exec(select(RosterEntry).where(col(RosterEntry.school_code) == school_code))
    }
    seen: dict[str, int] = {}
    created = updated = 0
    for number, cells in table.rows:
        row_problems: list[ImportProblem] = []
        for column, limit in ROSTER_LIMITS.items():
            value = cells.get(column)
            if value is not None and len(value) > limit:
                row_problems.append(
                    ImportProblem(row=number, column=column, message=f"is longer than {limit} characters")
                )
        for column in ("card_pseudonym", "person_name"):
            if cells.get(column) is None:
                row_problems.append(ImportProblem(row=number, column=column, message="is empty"))
        card = cells.get("card_pseudonym")
        if card is not None and card in seen:
            row_problems.append(ImportProblem(row=number, column="card_pseudonym", message=f"repeats row {seen[card]}"))
        classroom_id = None
        building, room = cells.get("building"), cells.get("classroom")
        if building is not None or room is not None:
            classroom_id = rooms.get((building or "", room or ""))
            if classroom_id is None:
                row_problems.append(
                    ImportProblem(
                        row=number,
                        column="classroom",
                        message=f"no classroom {room!r} in building {building!r}",
                    )
                )
        if row_problems or card is None:
            problems.extend(row_problems)
            continue
        seen[card] = number
        fields: dict[str, Any] = {
            "person_name": cells["person_name"],
            "person_no": cells.get("person_no"),
            "class_label": cells.get("class_label"),
            "classroom_id": classroom_id,
        }
        entry = existing.get(card)
        if entry is None:
            entry = RosterEntry(school_code=school_code, card_pseudonym=card, **fields)
            session.add(entry)
            session.flush()
            _roster_audit(session, actor, "import", entry, [k for k, v in fields.items() if v is not None])
            created += 1
        else:
            diff = apply_changes(entry, fields)
            if diff:
                entry.updated_at = utcnow()
                _roster_audit(session, actor, "import", entry, list(diff))
                updated += 1
    if dry_run:
        session.rollback()
    else:
        session.commit()
    problems.sort(key=lambda problem: problem.row)
    return ImportReport(dry_run=dry_run, rows=len(table.rows), created=created, updated=updated, errors=problems)
