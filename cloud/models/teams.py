"""Contractor teams (their members and what they cover) and the service calendars SLA clocks run on."""

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints
from pydantic import Field as PydanticField
from sqlalchemy import JSON
from sqlmodel import Field, SQLModel

from cloud.bounds import Day
from cloud.models.base import Code, Name, UTCDateTime, utcnow
from cloud.models.registry import DeviceRole

# ---- contractor teams ----------------------------------------------------------------------------


class CoverageRole(StrEnum):
    """What a team can be asked to cover: the three device roles, and the schools' gateways."""

    SENSOR = DeviceRole.SENSOR.value
    ATTENDANCE = DeviceRole.ATTENDANCE.value
    BLACKBOARD = DeviceRole.BLACKBOARD.value
    GATEWAY = "gateway"


COVERAGE_ROLES = tuple(role.value for role in CoverageRole)


class ContractorTeam(SQLModel, table=True):
    """A contractor's team of technicians, with the districts and device roles it maintains."""

    __tablename__ = "contractor_team"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class TeamMember(SQLModel, table=True):
    """A technician or contractor manager of a team; a person works for one team at a time."""

    __tablename__ = "team_member"

    user_id: int = Field(foreign_key="user_account.id", primary_key=True, ondelete="CASCADE")
    team_id: int = Field(foreign_key="contractor_team.id", index=True, ondelete="CASCADE")


class TeamCoverage(SQLModel, table=True):
    """One (district, device role) a team maintains."""

    __tablename__ = "team_coverage"

    team_id: int = Field(foreign_key="contractor_team.id", primary_key=True, ondelete="CASCADE")
    district_code: str = Field(foreign_key="district.code", primary_key=True, max_length=32)
    device_role: str = Field(primary_key=True, max_length=16)


class TeamIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    districts: Annotated[list[Code], PydanticField(max_length=500)] = []
    device_roles: Annotated[list[CoverageRole], PydanticField(max_length=4)] = list(CoverageRole)


class TeamUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    districts: Annotated[list[Code], PydanticField(max_length=500)] | None = None
    device_roles: Annotated[list[CoverageRole], PydanticField(max_length=4)] | None = None


class TeamMemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class TeamMemberPublic(BaseModel):
    user_id: int
    username: str
    role: str
    is_active: bool


class TeamPublic(BaseModel):
    id: int
    name: str
    created_at: datetime
    districts: list[str]
    device_roles: list[str]
    members: list[TeamMemberPublic]


# ---- service calendars ---------------------------------------------------------------------------

ClockTime = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class ServiceCalendar(SQLModel, table=True):
    """When SLA clocks run: service hours on school days, minus holidays, plus make-up school days.

    `scope` is a district code, or "*" for the calendar of every district without one of its own.
    """

    __tablename__ = "service_calendar"

    scope: str = Field(primary_key=True, max_length=32)
    day_start: str = Field(default="08:00", max_length=5)
    day_end: str = Field(default="18:00", max_length=5)
    # ISO weekdays, Monday = 1.
    weekdays: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5], sa_type=JSON)
    holidays: list[str] = Field(default_factory=list, sa_type=JSON)
    school_days: list[str] = Field(default_factory=list, sa_type=JSON)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ServiceCalendarIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    day_start: ClockTime = "08:00"
    day_end: ClockTime = "18:00"
    weekdays: Annotated[list[Annotated[int, PydanticField(ge=1, le=7)]], PydanticField(max_length=7)] = [1, 2, 3, 4, 5]
    holidays: Annotated[list[Day], PydanticField(max_length=1000)] = []
    school_days: Annotated[list[Day], PydanticField(max_length=1000, description="make-up school days")] = []


class ServiceCalendarPublic(BaseModel):
    scope: str
    day_start: str
    day_end: str
    weekdays: list[int]
    holidays: list[date]
    school_days: list[date]
    inherited: bool = PydanticField(default=False, description="true when the district has no calendar of its own")
