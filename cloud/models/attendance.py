"""Attendance: card taps as the gateways sync them, the school's roster, and daily attendance."""

from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints
from pydantic import Field as PydanticField
from sqlalchemy import BigInteger, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from cloud.models.base import BigId, Name, RowRef, UTCDateTime, utcnow
from cloud.models.registry import ClassLabel

# The tables the gateway sync writes a row per record into (attendance_event, ingested_record and the
# device records below) have no foreign keys: the sync checks a batch's device, school and gateway once
# for the whole batch, where the database would check them for every row (schema 0004).


class AttendanceEventBase(SQLModel):
    device_id: str = Field(max_length=18)
    boot_id: str = Field(max_length=8)
    seq: int = Field(sa_type=BigInteger)
    ts: datetime = Field(sa_type=UTCDateTime)
    card_pseudonym: str = Field(max_length=128)
    historical: bool = False
    school_code: str = Field(max_length=32)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AttendanceEvent(AttendanceEventBase, table=True):
    """One card tap; the card is known only by the pseudonym the school's gateway made of it."""

    __tablename__ = "attendance_event"
    __table_args__ = (
        UniqueConstraint("device_id", "boot_id", "seq"),
        Index("ix_attendance_event_school_code_ts", "school_code", "ts"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    gateway_id: str = Field(max_length=64)


class AttendanceEventPublic(AttendanceEventBase):
    pass


class AttendancePage(BaseModel):
    """A page of attendance events and the number of events matching the query."""

    items: list[AttendanceEventPublic]
    total: int


class RosterEntry(SQLModel, table=True):
    """Who a card pseudonym belongs to: personal data that only the school's own admins may read."""

    __tablename__ = "roster_entry"
    __table_args__ = (UniqueConstraint("school_code", "card_pseudonym"),)

    id: int | None = Field(default=None, primary_key=True)
    school_code: str = Field(foreign_key="school.code", index=True, max_length=32)
    card_pseudonym: str = Field(max_length=128)
    person_name: str = Field(max_length=200)
    person_no: str | None = Field(default=None, max_length=64)
    class_label: str | None = Field(default=None, max_length=64)
    classroom_id: int | None = Field(default=None, foreign_key="classroom.id", index=True)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class RosterEntryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    card_pseudonym: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
    person_name: Name
    person_no: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] | None = None
    class_label: ClassLabel | None = None
    classroom_id: RowRef | None = None


class RosterEntryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    school_code: str
    card_pseudonym: str
    person_name: str
    person_no: str | None
    class_label: str | None
    classroom_id: int | None
    updated_at: datetime


class ClassroomAttendance(BaseModel):
    """One classroom's attendance on one day: distinct cards seen, taps, and the roster's size."""

    classroom_id: int | None = PydanticField(description="null for devices not bound to a classroom")
    classroom: str | None
    building: str | None
    grade: int | None
    class_label: str | None
    present: int
    taps: int
    enrolled: int
    rate: float | None = PydanticField(description="present / enrolled; null without a roster")


class DailyAttendance(BaseModel):
    """Per-classroom attendance of one school on one day of the school's calendar."""

    school_code: str
    date: date
    timezone: str
    classrooms: list[ClassroomAttendance]
