"""Bulk import of devices into the asset registry: good rows taken, every bad row reported."""

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from cloud.core.db import begin_write
from cloud.crud import audit
from cloud.crud.access import require_school_write
from cloud.crud.common import Actor, apply_changes, chunks, jsonable
from cloud.errors import AccessDenied, InvalidInput
from cloud.models import Building, Classroom, Device, ImportProblem, ImportReport, School
from cloud.tabular import Table, UnreadableTable
from protocol import messages, topics

DEVICE_COLUMNS = (
    "device_id",
    "school",
    "building",
    "classroom",
    "model",
    "vendor",
    "serial",
    "asset_tag",
    "purchase_date",
    "warranty_end",
    "firmware",
    "role",
)
COLUMN_ALIASES = {"id": "device_id", "device": "device_id", "school_code": "school", "fw": "firmware"}
REQUIRED_COLUMNS = ("device_id", "school")
TEXT_LIMITS = {"model": 128, "vendor": 128, "serial": 128, "asset_tag": 64, "firmware": 64}
DATE_PATTERN = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})$")


class RowProblem(InvalidInput):
    """A row that the database refuses: its school, classroom or rights."""

    def __init__(self, column: str | None, message: str) -> None:
        super().__init__(message)
        self.column = column


@dataclass
class DeviceRow:
    """One row's values, checked for form; what the database says is checked when it is applied."""

    number: int
    device_id: str
    school: str
    building: str | None
    classroom: str | None
    fields: dict[str, Any]


def _parse_date(text: str) -> date:
    match = DATE_PATTERN.match(text)
    if match is None:
        raise ValueError("must be a date as YYYY-MM-DD")
    year, month, day = (int(part) for part in match.groups())
    return date(year, month, day)


def _parse_row(number: int, cells: dict[str, str | None], problems: list[ImportProblem]) -> DeviceRow | None:
    before = len(problems)

    def problem(column: str | None, message: str) -> None:
        problems.append(ImportProblem(row=number, column=column, message=message))

    device_id = cells.get("device_id")
    school = cells.get("school")
    if device_id is None:
        problem("device_id", "is empty")
    elif not topics.is_device_id(device_id):
        problem("device_id", f"{device_id!r} is not esp32-<12 lowercase hex digits>")
    if school is None:
        problem("school", "is empty")
    building, classroom = cells.get("building"), cells.get("classroom")
    if (building is None) != (classroom is None):
        problem("classroom" if classroom is None else "building", "give both building and classroom, or neither")
    fields: dict[str, Any] = {}
    for column, limit in TEXT_LIMITS.items():
        value = cells.get(column)
        if value is None:
            continue
        if len(value) > limit:
            problem(column, f"is longer than {limit} characters")
        fields["fw" if column == "firmware" else column] = value
    for column in ("purchase_date", "warranty_end"):
        value = cells.get(column)
        if value is None:
            continue
        try:
            fields[column] = _parse_date(value)
        except ValueError as exc:
            problem(column, f"{value!r} {exc}")
    if "purchase_date" in fields and "warranty_end" in fields and fields["warranty_end"] < fields["purchase_date"]:
        problem("warranty_end", "is before purchase_date")
    role = cells.get("role")
    if role is not None:
        if role not in messages.ROLES:
            problem("role", f"must be one of {', '.join(messages.ROLES)}")
        fields["role"] = role
    if len(problems) > before or device_id is None or school is None:
        return None
    return DeviceRow(number, device_id, school, building, classroom, fields)


def _columns(table: Table, problems: list[ImportProblem]) -> None:
    """Map aliases to column names; refuse a file without the required columns."""
    renamed: list[str] = []
    for name in table.columns:
        canonical = COLUMN_ALIASES.get(name, name)
        if canonical not in DEVICE_COLUMNS:
            problems.append(
                ImportProblem(
                    row=1, column=name, message=f"unknown column, ignored; known: {', '.join(DEVICE_COLUMNS)}"
                )
            )
        renamed.append(canonical)
    missing = [name for name in REQUIRED_COLUMNS if name not in renamed]
    if missing:
        raise UnreadableTable(f"the file needs the columns {', '.join(missing)}")
    if renamed != table.columns:
        mapping = dict(zip(table.columns, renamed, strict=True))
        table.rows = [(n, {mapping[k]: v for k, v in cells.items()}) for n, cells in table.rows]
        table.columns = renamed


class _Rooms:
    """Classrooms looked up by (school, building name, classroom name), made on demand if allowed."""

    def __init__(self, session: Session, actor: Actor, *, create: bool) -> None:
        self._session = session
        self._actor = actor
        self._create = create
        self._known: dict[tuple[str, str, str], int] = {}
        self._buildings: dict[tuple[str, str], int] = {}
        self._loaded: set[str] = set()

    def _load(self, school: str) -> None:
        if school in self._loaded:
            return
        self._loaded.add(school)
        for building in self._session.exec(select(Building).where(Building.school_code == school)):
            assert building.id is not None
            self._buildings[(school, building.name)] = building.id
        rows = self._session.exec(
            select(Classroom.name, Building.name, Classroom.id)
            .join(Building, col(Building.id) == col(Classroom.building_id))
            .where(Classroom.school_code == school)
        )
        for room, building_name, room_id in rows:
            if room_id is not None:
                self._known[(school, building_name, room)] = room_id

    def forget(self) -> None:
        """Drop what is cached: a rolled-back row may have made rooms that no longer exist."""
        self._known.clear()
        self._buildings.clear()
        self._loaded.clear()

    def find(self, school: str, building: str, room: str) -> int:
        """The classroom's id; InvalidInput if it does not exist and may not be made."""
        self._load(school)
        key = (school, building, room)
        if key in self._known:
            return self._known[key]
        if not self._create:
            raise InvalidInput(
                f"school {school} has no classroom {room!r} in building {building!r}; "
                "register it first or import with create_rooms"
            )
        building_id = self._buildings.get((school, building))
        if building_id is None:
            made = Building(school_code=school, name=building)
            self._session.add(made)
            self._session.flush()
            assert made.id is not None
            building_id = self._buildings[(school, building)] = made.id
            audit.record(
                self._session,
                actor=self._actor,
                action="import",
                entity="building",
                entity_id=made.id,
                school_code=school,
                summary={"name": building},
            )
        classroom = Classroom(school_code=school, building_id=building_id, name=room)
        self._session.add(classroom)
        self._session.flush()
        assert classroom.id is not None
        self._known[key] = classroom.id
        audit.record(
            self._session,
            actor=self._actor,
            action="import",
            entity="classroom",
            entity_id=classroom.id,
            school_code=school,
            summary={"building_id": building_id, "name": room},
        )
        return classroom.id


def _taken_asset_tags(session: Session, tags: list[str]) -> dict[str, str]:
    taken: dict[str, str] = {}
    for chunk in chunks(tags):
        for tag, device_id in session.exec(select(Device.asset_tag, Device.id).where(col(Device.asset_tag).in_(chunk))):
            if tag is not None:
                taken[tag] = device_id
    return taken


def _writable(session: Session, actor: Actor, school: str) -> None:
    try:
        require_school_write(session, actor, school)
    except AccessDenied as exc:
        raise RowProblem("school", str(exc)) from exc


def _apply_row(session: Session, actor: Actor, row: DeviceRow, rooms: _Rooms) -> str:
    """Create or update the row's device; return "created", "updated" or "unchanged"."""
    if session.get(School, row.school) is None:
        raise RowProblem("school", f"school {row.school} does not exist")
    _writable(session, actor, row.school)
    fields = dict(row.fields)
    if row.building is not None and row.classroom is not None:
        try:
            fields["classroom_id"] = rooms.find(row.school, row.building, row.classroom)
        except InvalidInput as exc:
            raise RowProblem("classroom", str(exc)) from exc
    device = session.get(Device, row.device_id)
    if device is None:
        session.add(Device(id=row.device_id, school_code=row.school, presence="unknown", **fields))
        audit.record(
            session,
            actor=actor,
            action="import",
            entity="device",
            entity_id=row.device_id,
            school_code=row.school,
            summary={"created": jsonable(fields)},
        )
        return "created"
    if device.school_code != row.school:
        _writable(session, actor, device.school_code)
        fields["school_code"] = row.school
        fields.setdefault("classroom_id", None)
    previous_school = device.school_code
    diff = apply_changes(device, fields)
    if not diff:
        return "unchanged"
    audit.record(
        session,
        actor=actor,
        action="import",
        entity="device",
        entity_id=row.device_id,
        school_code=previous_school,
        summary=diff,
    )
    return "updated"


def import_devices(
    session: Session, *, actor: Actor, table: Table, dry_run: bool = False, create_rooms: bool = False
) -> ImportReport:
    """Register or update a device per row; a dry run checks everything and changes nothing."""
    begin_write(session)
    problems: list[ImportProblem] = []
    _columns(table, problems)
    parsed: list[DeviceRow] = []
    seen_ids: dict[str, int] = {}
    seen_tags: dict[str, int] = {}
    for number, cells in table.rows:
        row = _parse_row(number, cells, problems)
        if row is None:
            continue
        if row.device_id in seen_ids:
            problems.append(
                ImportProblem(
                    row=number,
                    column="device_id",
                    message=f"repeats the device of row {seen_ids[row.device_id]}",
                )
            )
            continue
        tag = row.fields.get("asset_tag")
        if tag is not None and tag in seen_tags:
            problems.append(
                ImportProblem(row=number, column="asset_tag", message=f"repeats the asset tag of row {seen_tags[tag]}")
            )
            continue
        seen_ids[row.device_id] = number
        if tag is not None:
            seen_tags[tag] = number
        parsed.append(row)

    taken = _taken_asset_tags(session, sorted(seen_tags))
    rooms = _Rooms(session, actor, create=create_rooms)
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    for row in parsed:
        tag = row.fields.get("asset_tag")
        if tag is not None and taken.get(tag, row.device_id) != row.device_id:
            problems.append(
                ImportProblem(row=row.number, column="asset_tag", message=f"{tag} is already on device {taken[tag]}")
            )
            continue
        savepoint = session.begin_nested()
        try:
            outcome = _apply_row(session, actor, row, rooms)
            session.flush()
        except RowProblem as exc:
            savepoint.rollback()
            rooms.forget()
            problems.append(ImportProblem(row=row.number, column=exc.column, message=str(exc)))
            continue
        except IntegrityError as exc:
            savepoint.rollback()
            rooms.forget()
            problems.append(
                ImportProblem(row=row.number, column=None, message=f"conflicts with a stored record: {exc.orig}")
            )
            continue
        savepoint.commit()
        counts[outcome] += 1
    if dry_run:
        session.rollback()
    else:
        session.commit()
    problems.sort(key=lambda problem: problem.row)
    return ImportReport(
        dry_run=dry_run,
        rows=len(table.rows),
        created=counts["created"],
        updated=counts["updated"],
        errors=problems,
    )
