"""The registry: cities, districts, schools, buildings, classrooms, gateways and devices, and the
reports of bulk imports into it."""

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints
from pydantic import Field as PydanticField
from sqlalchemy import JSON, BigInteger, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from cloud.bounds import Day
from cloud.models.base import PRINTABLE, Code, Name, RowRef, UTCDateTime, utcnow


class Presence(StrEnum):
    """Whether a device is connected, as its gateway last said; "unknown" while the gateway is not syncing."""

    ONLINE = "online"
    OFFLINE = "offline"
    UNKNOWN = "unknown"


PRESENCE_STATES = tuple(state.value for state in Presence)


class DeviceRole(StrEnum):
    """What a classroom device does (protocol.messages.ROLES, as an enum for the API's shapes)."""

    SENSOR = "sensor"
    ATTENDANCE = "attendance"
    BLACKBOARD = "blackboard"


DEVICE_ROLES = tuple(role.value for role in DeviceRole)


class City(SQLModel, table=True):
    """A city: the top of the hierarchy."""

    __tablename__ = "city"

    code: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=200)


class CityCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Code
    name: Name


class CityUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None


class CityPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str


class District(SQLModel, table=True):
    """A county or district of a city: the tenant of a county education bureau."""

    __tablename__ = "district"

    code: str = Field(primary_key=True, max_length=32)
    city_code: str = Field(foreign_key="city.code", index=True, max_length=32)
    name: str = Field(max_length=200)


class DistrictCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Code
    city_code: Code
    name: Name


class DistrictUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None


class DistrictPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    city_code: str
    name: str


# ---- schools -------------------------------------------------------------------------------------


class SchoolBase(SQLModel):
    code: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    timezone: str = Field(default="Asia/Shanghai", max_length=64)
    # Nullable: schools registered before districts existed are bound to one later.
    district_code: str | None = Field(default=None, foreign_key="district.code", index=True, max_length=32)


class School(SchoolBase, table=True):
    __tablename__ = "school"

    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class SchoolCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Code
    name: Name
    timezone: str = "Asia/Shanghai"
    district_code: Code | None = None


class SchoolUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    timezone: str | None = None
    district_code: Code | None = None


class SchoolPublic(SchoolBase):
    created_at: datetime


# ---- buildings and classrooms --------------------------------------------------------------------


class Building(SQLModel, table=True):
    """A building of a school."""

    __tablename__ = "building"
    __table_args__ = (UniqueConstraint("school_code", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    school_code: str = Field(foreign_key="school.code", index=True, max_length=32)
    name: str = Field(max_length=200)


class BuildingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    school_code: Code
    name: Name


class BuildingUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None


class BuildingPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    school_code: str
    name: str


Grade = Annotated[int, PydanticField(ge=1, le=12, description="school year, 1 to 12")]
ClassLabel = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class Classroom(SQLModel, table=True):
    """A classroom in a building; its devices are bound to it."""

    __tablename__ = "classroom"
    __table_args__ = (UniqueConstraint("building_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    school_code: str = Field(foreign_key="school.code", index=True, max_length=32)
    building_id: int = Field(foreign_key="building.id", index=True)
    name: str = Field(max_length=200)
    grade: int | None = None
    class_label: str | None = Field(default=None, max_length=64)


class ClassroomCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    building_id: RowRef
    name: Name
    grade: Grade | None = None
    class_label: ClassLabel | None = None


class ClassroomUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    grade: Grade | None = None
    class_label: ClassLabel | None = None


class ClassroomPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    school_code: str
    building_id: int
    name: str
    grade: int | None
    class_label: str | None


# ---- gateways ------------------------------------------------------------------------------------


class Gateway(SQLModel, table=True):
    """A school's gateway: the machine identity that syncs that school's device records."""

    __tablename__ = "gateway"

    id: str = Field(primary_key=True, max_length=64)
    school_code: str = Field(foreign_key="school.code", index=True, max_length=32)
    name: str = Field(max_length=200)
    token_hash: str = Field(unique=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_sync_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_gateway_seq: int = Field(default=0, sa_type=BigInteger)


class GatewayCredentials(BaseModel):
    """A gateway's id and its token, shown once when the gateway is created."""

    gateway_id: str
    token: str


class GatewayCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    school_code: Code
    name: Name | None = None


class GatewayPublic(BaseModel):
    """A gateway as people see it; `stale` once it has not synced for the configured time."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    school_code: str
    name: str
    created_at: datetime
    last_sync_at: datetime | None
    last_gateway_seq: int
    stale: bool = False


# ---- devices -------------------------------------------------------------------------------------

AssetText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128, pattern=PRINTABLE)]


class DeviceAsset(SQLModel):
    """What the asset register knows of a device, as opposed to what the device reports."""

    model: str | None = Field(default=None, max_length=128)
    vendor: str | None = Field(default=None, max_length=128)
    serial: str | None = Field(default=None, max_length=128)
    asset_tag: str | None = Field(default=None, max_length=64)
    purchase_date: date | None = None
    warranty_end: date | None = None


class DeviceBase(DeviceAsset):
    id: str = Field(primary_key=True, max_length=18)
    school_code: str = Field(foreign_key="school.code", index=True, max_length=32)
    classroom_id: int | None = Field(default=None, foreign_key="classroom.id", index=True)
    role: str | None = Field(default=None, max_length=32)
    fw: str | None = Field(default=None, max_length=64)
    app: str | None = Field(default=None, max_length=64)
    presence: str = Field(default="unknown", max_length=16)
    presence_since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_seen_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_health: dict[str, Any] | None = Field(default=None, sa_type=JSON)


class Device(DeviceBase, table=True):
    """A classroom device: registered from the asset register or the first time its gateway syncs it."""

    __tablename__ = "device"
    # A unique index rather than a constraint: SQLite can add one to an existing table in place.
    __table_args__ = (Index("ix_device_asset_tag", "asset_tag", unique=True),)

    boot_id: str | None = Field(default=None, max_length=8)
    # The configuration version the device said it runs, in its last birth.
    config_version: int | None = Field(default=None, sa_type=BigInteger)
    first_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class DeviceAssetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: AssetText | None = None
    vendor: AssetText | None = None
    serial: AssetText | None = None
    asset_tag: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=PRINTABLE)] | None
    ) = None
    purchase_date: Day | None = None
    warranty_end: Day | None = None
    fw: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] | None = None


class DeviceCreate(DeviceAssetIn):
    id: str = PydanticField(description="esp32-<12 lowercase hex of the MAC>")
    school_code: Code
    classroom_id: RowRef | None = None
    role: DeviceRole | None = None


class DeviceUpdate(DeviceAssetIn):
    """Fields to change; a field sent as null is cleared, a field left out is kept."""

    school_code: Code | None = None
    classroom_id: RowRef | None = None
    role: DeviceRole | None = None


class DevicePublic(DeviceBase):
    """A device; `presence` is "unknown" while its school's gateway is not syncing."""

    # Views are built from the row and then adjusted (presence masked while the gateway is silent): the
    # adjustments are checked, and turned into the enum, like the row's values.
    model_config = ConfigDict(validate_assignment=True)  # type: ignore[assignment]

    presence: Presence
    reported_presence: Presence = Presence.UNKNOWN
    gateway_last_sync_at: datetime | None = None


# ---- bulk import ---------------------------------------------------------------------------------


class ImportProblem(BaseModel):
    """Why one row (or one cell) of an import file was not taken."""

    row: int = PydanticField(description="row number in the file, the header being row 1")
    column: str | None
    message: str


class ImportReport(BaseModel):
    """What an import did (or, in a dry run, would do), and every row it refused."""

    dry_run: bool
    rows: int
    created: int
    updated: int
    errors: list[ImportProblem]
