"""Tables of the cloud database and the public shapes the API reads and writes."""

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints
from pydantic import Field as PydanticField
from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from cloud.bounds import Day, Moment

# Deterministic constraint names, so later migrations (and SQLite batch mode) can address them.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Role(StrEnum):
    """What a person is to ClassOps; what each role may do is cloud.policy's. (A gateway is no role: it
    signs in with its own token as a machine identity.)"""

    COUNTY_ADMIN = "county_admin"
    SCHOOL_ADMIN = "school_admin"
    TECHNICIAN = "technician"
    CONTRACTOR_MANAGER = "contractor_manager"
    AUDITOR = "auditor"


# The role names as plain strings, for the users table's column and for command-line choices.
ROLES = tuple(role.value for role in Role)

# "anonymous": someone who has not signed in, e.g. a failed sign-in.
ACTOR_KINDS = ("user", "gateway", "cli", "system", "anonymous")
PRESENCE_STATES = ("online", "offline", "unknown")
Presence = Literal["online", "offline", "unknown"]

# Row ids that outgrow 32 bits at province scale; SQLite only autoincrements an INTEGER primary key.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# The largest id of an INTEGER key on PostgreSQL, and the largest BIGINT: bounds for ids and counters
# that callers send, so that a huge number is refused up front instead of overflowing the database.
MAX_ROW_ID = 2**31 - 1
MAX_BIGINT = 2**63 - 1
RowRef = Annotated[int, PydanticField(ge=1, le=MAX_ROW_ID)]


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timestamp stored in UTC and always read back timezone-aware, SQLite included."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; ClassOps stores aware UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# ---- cities and districts -----------------------------------------------------------------------

Code = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
# Names and asset data end up in exported spreadsheets and printed labels, which cannot hold control characters.
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=PRINTABLE)]


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
    role: Literal["sensor", "attendance", "blackboard"] | None = None


class DeviceUpdate(DeviceAssetIn):
    """Fields to change; a field sent as null is cleared, a field left out is kept."""

    school_code: Code | None = None
    classroom_id: RowRef | None = None
    role: Literal["sensor", "attendance", "blackboard"] | None = None


class DevicePublic(DeviceBase):
    """A device; `presence` is "unknown" while its school's gateway is not syncing."""

    presence: Presence
    reported_presence: Presence = "unknown"
    gateway_last_sync_at: datetime | None = None


# ---- attendance ----------------------------------------------------------------------------------


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


# ---- sync ledger ---------------------------------------------------------------------------------


class IngestedRecord(SQLModel, table=True):
    """A gateway record the cloud has applied; the key that makes replayed batches harmless."""

    __tablename__ = "ingested_record"

    gateway_id: str = Field(primary_key=True, max_length=64)
    gateway_seq: int = Field(primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False})
    kind: str = Field(max_length=16)
    device_id: str | None = Field(default=None, max_length=18)
    # Kept for records written before alarms and acks had tables of their own (schema 0001).
    body: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class SyncRejection(BaseModel):
    """A record refused for its content; the gateway does not send it again."""

    gseq: int
    reason: str
    detail: str


class SyncResult(BaseModel):
    """The fate of every record of a batch: confirmed (applied now or before) or rejected."""

    gateway_id: str
    confirmed: list[int]
    rejected: list[SyncRejection]


# ---- device events and samples -------------------------------------------------------------------


class DeviceRecordBase(SQLModel):
    """The key and origin every stored device message carries."""

    device_id: str = Field(max_length=18)
    boot_id: str = Field(max_length=8)
    seq: int = Field(sa_type=BigInteger)
    ts: datetime = Field(sa_type=UTCDateTime)
    school_code: str = Field(max_length=32)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AlarmBase(DeviceRecordBase):
    code: str = Field(max_length=64)
    state: str = Field(max_length=8)
    detail: str | None = Field(default=None, max_length=500)
    historical: bool = False
    # "device" for alarms a device raised, "gateway" for those of its gateway's edge rules.
    source: str = Field(default="device", max_length=8)


class Alarm(AlarmBase, table=True):
    """An alarm raised or cleared by a device or by its gateway's rules."""

    __tablename__ = "alarm"
    __table_args__ = (
        UniqueConstraint("device_id", "boot_id", "seq"),
        Index("ix_alarm_school_code_ts", "school_code", "ts"),
        Index("ix_alarm_device_id_ts", "device_id", "ts"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    gateway_id: str = Field(max_length=64)


class AlarmPublic(AlarmBase):
    id: int


class CommandAck(DeviceRecordBase, table=True):
    """A device's answer to a command, found by the command's correlation id."""

    __tablename__ = "command_ack"
    __table_args__ = (UniqueConstraint("device_id", "boot_id", "seq"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    cid: str = Field(index=True, max_length=64)
    result: str = Field(max_length=16)
    detail: str | None = Field(default=None, max_length=500)
    historical: bool = False
    gateway_id: str = Field(max_length=64)


class HealthSampleBase(DeviceRecordBase):
    uptime_s: int | None = Field(default=None, sa_type=BigInteger)
    heap_free: int | None = None
    heap_max_block: int | None = None
    rssi: int | None = None
    buffered: int | None = None
    errors: dict[str, Any] | None = Field(default=None, sa_type=JSON)


class HealthSample(HealthSampleBase, table=True):
    """One health report of a device, kept for the retention period and rolled up by the hour."""

    __tablename__ = "health_sample"
    __table_args__ = (
        UniqueConstraint("device_id", "boot_id", "seq"),
        Index("ix_health_sample_device_id_ts", "device_id", "ts"),
        Index("ix_health_sample_received_at", "received_at"),
        Index("ix_health_sample_hour", "hour"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    # The start of the UTC hour of `ts`, stored so that roll-ups group the same way on every database.
    hour: datetime = Field(sa_type=UTCDateTime)


class HealthSamplePublic(HealthSampleBase):
    pass


class TelemetrySample(DeviceRecordBase, table=True):
    """One set of sensor readings of a device, kept for the retention period."""

    __tablename__ = "telemetry_sample"
    __table_args__ = (
        UniqueConstraint("device_id", "boot_id", "seq"),
        Index("ix_telemetry_sample_device_id_ts", "device_id", "ts"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    readings: dict[str, Any] = Field(sa_type=JSON)
    faults: dict[str, Any] | None = Field(default=None, sa_type=JSON)


class TelemetrySamplePublic(DeviceRecordBase):
    readings: dict[str, Any]
    faults: dict[str, Any] | None


class HealthHourlyBase(SQLModel):
    device_id: str = Field(foreign_key="device.id", primary_key=True, max_length=18)
    hour: datetime = Field(primary_key=True, sa_type=UTCDateTime)
    school_code: str = Field(foreign_key="school.code", max_length=32)
    samples: int
    boots: int
    heap_free_min: int | None = None
    heap_free_avg: float | None = None
    heap_max_block_min: int | None = None
    rssi_min: int | None = None
    rssi_avg: float | None = None
    uptime_max: int | None = Field(default=None, sa_type=BigInteger)


class HealthHourly(HealthHourlyBase, table=True):
    """A device's health over one UTC hour, kept much longer than the samples it sums up."""

    __tablename__ = "health_hourly"
    __table_args__ = (Index("ix_health_hourly_hour", "hour"),)


class HealthHourlyPublic(HealthHourlyBase):
    pass


class MaintenanceMark(SQLModel, table=True):
    """How far a periodic job got, so that the next run starts where this one ended."""

    __tablename__ = "maintenance_mark"

    name: str = Field(primary_key=True, max_length=64)
    hour_mark: datetime | None = Field(default=None, sa_type=UTCDateTime)
    received_mark: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ran_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


# The 24 UTC hours of a day, as the columns of a daily online summary.
DAY_HOURS = tuple(f"h{hour:02d}" for hour in range(24))


class OnlineDay(SQLModel, table=True):
    """Per school, device role and UTC day: how many devices had a health report in each UTC hour.

    Built from the hourly roll-ups for closed days, so that the online rate adds up days instead of
    device-hours. `role` is "" for devices without one (a key cannot hold null)."""

    __tablename__ = "online_day"
    __table_args__ = (Index("ix_online_day_day", "day"),)

    school_code: str = Field(primary_key=True, max_length=32)
    role: str = Field(primary_key=True, max_length=32)
    day: date = Field(primary_key=True)
    h00: int = 0
    h01: int = 0
    h02: int = 0
    h03: int = 0
    h04: int = 0
    h05: int = 0
    h06: int = 0
    h07: int = 0
    h08: int = 0
    h09: int = 0
    h10: int = 0
    h11: int = 0
    h12: int = 0
    h13: int = 0
    h14: int = 0
    h15: int = 0
    h16: int = 0
    h17: int = 0
    h18: int = 0
    h19: int = 0
    h20: int = 0
    h21: int = 0
    h22: int = 0
    h23: int = 0


class UsageDay(SQLModel, table=True):
    """Per school and local day (in the school's time zone): the blackboards' hours on, and how many of
    them were used, built from the usage counters for closed days."""

    __tablename__ = "usage_day"
    __table_args__ = (Index("ix_usage_day_day", "day"),)

    school_code: str = Field(primary_key=True, max_length=32)
    day: date = Field(primary_key=True)
    hours: float = 0.0
    used: int = 0


class SummaryDevice(SQLModel, table=True):
    """The school, role and time zone each device had when the daily summaries were built: a device
    that moved, changed role or was added since makes its schools read the raw history until rebuilt."""

    __tablename__ = "summary_device"

    device_id: str = Field(primary_key=True, max_length=18)
    school_code: str = Field(max_length=32)
    role: str = Field(max_length=32)
    timezone: str = Field(max_length=64)


class MaintenanceReport(BaseModel):
    """What one maintenance run did."""

    rolled_up_hours: int
    pruned_health_samples: int
    pruned_telemetry_samples: int
    pruned_hourly: int
    summarised_days: int = 0


# ---- users and sessions --------------------------------------------------------------------------


class UserBase(SQLModel):
    username: str = Field(unique=True, max_length=64)
    role: str = Field(max_length=32)
    school_code: str | None = Field(default=None, foreign_key="school.code", max_length=32)
    # County roles with a district see that district's schools; without one, every school.
    district_code: str | None = Field(default=None, foreign_key="district.code", max_length=32)
    is_active: bool = True


class User(UserBase, table=True):
    """A person who signs in to the console or the API."""

    __tablename__ = "user_account"

    id: int | None = Field(default=None, primary_key=True)
    password_hash: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class UserPublic(UserBase):
    id: int
    role: Role


class AuthToken(SQLModel, table=True):
    """A login session: an opaque bearer token, stored only as its sha256."""

    __tablename__ = "auth_token"

    token_hash: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="user_account.id", index=True, ondelete="CASCADE")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)


class SignInThrottle(SQLModel, table=True):
    """Failed sign-ins counted per account and address ("pair"), per account, and per address, in the
    database so that every API worker and instance sees the same count."""

    __tablename__ = "sign_in_throttle"

    scope: str = Field(primary_key=True, max_length=8)
    # The name as typed (the account need not exist); "" in the per-address rows.
    username: str = Field(primary_key=True, max_length=64)
    # "" in the per-account rows.
    address: str = Field(primary_key=True, max_length=64)
    failures: int = 0
    last_failure_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Per-pair rows: when this account last signed in from this address.
    last_success_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SignInUnlocked(BaseModel):
    """What lifting an account's sign-in locks did."""

    username: str
    lifted: int = PydanticField(description="locked or counting records reset (the account's, and per address)")


class LoginRequest(BaseModel):
    """Credentials of a person signing in."""

    model_config = ConfigDict(extra="forbid")

    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class TokenPublic(BaseModel):
    """A bearer token handed out at login."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime


# ---- audit log -----------------------------------------------------------------------------------


class AuditEntryBase(SQLModel):
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    actor_kind: str = Field(max_length=16)
    actor: str = Field(max_length=64)
    action: str = Field(max_length=32)
    entity: str = Field(max_length=32)
    entity_id: str | None = Field(default=None, max_length=64)
    school_code: str | None = Field(default=None, max_length=32)
    district_code: str | None = Field(default=None, max_length=32)
    client_ip: str | None = Field(default=None, max_length=64)
    summary: dict[str, Any] | None = Field(default=None, sa_type=JSON)


class AuditEntry(AuditEntryBase, table=True):
    """One write: who, what, when and from where. Rows are never updated or deleted (triggers refuse)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_district_code_at", "district_code", "at"),
        Index("ix_audit_log_entity_entity_id", "entity", "entity_id"),
    )

    # No foreign keys: an entry outlives the user, gateway or school it names.
    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)


class AuditEntryPublic(AuditEntryBase):
    id: int


class AuditPage(BaseModel):
    """A page of audit entries, newest first, and the number matching the query."""

    items: list[AuditEntryPublic]
    total: int


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


# ---- gateway sync batches ------------------------------------------------------------------------


class SyncRecordIn(BaseModel):
    """One record of a sync batch. Only `gseq` is checked here: the rest is checked record by record,
    so that one bad record is rejected on its own and never fails the good ones beside it."""

    model_config = ConfigDict(extra="allow")

    gseq: Annotated[int, PydanticField(gt=0, le=MAX_BIGINT, strict=True, description="gateway sequence number")]
    kind: Any = PydanticField(
        default=None,
        description="birth, will, health, telemetry, attendance, alarm, ack, presence, gateway_alarm or command_status",
    )
    device: Any = PydanticField(
        default=None, description="device id, esp32-<12 hex>; may be null for gateway_alarm and command_status"
    )
    boot: Any = PydanticField(default=None, description="boot id, 8 hex digits; null for presence")
    seq: Any = PydanticField(default=None, description="the device's sequence number within the boot")
    ts: Any = PydanticField(default=None, description="Unix epoch seconds, UTC")
    body: Any = PydanticField(default=None, description="the record's own fields")


class SyncBatch(BaseModel):
    """Records a gateway pushes, in its own sequence order."""

    records: list[SyncRecordIn]
    sent_at: float | None = None


# ---- contractor teams ----------------------------------------------------------------------------

DEVICE_ROLES = ("sensor", "attendance", "blackboard")
# What a team can be asked to cover: the three device roles, and the schools' gateways.
COVERAGE_ROLES = (*DEVICE_ROLES, "gateway")
CoverageRole = Literal["sensor", "attendance", "blackboard", "gateway"]


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
    device_roles: Annotated[list[CoverageRole], PydanticField(max_length=4)] = [
        "sensor",
        "attendance",
        "blackboard",
        "gateway",
    ]


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


# ---- work orders ---------------------------------------------------------------------------------

WORK_ORDER_STATUSES = ("new", "assigned", "accepted", "in_progress", "pending", "resolved", "closed", "cancelled")
ACTIVE_STATUSES = ("new", "assigned", "accepted", "in_progress", "pending")
WorkOrderStatus = Literal["new", "assigned", "accepted", "in_progress", "pending", "resolved", "closed", "cancelled"]
Level = Literal["high", "medium", "low"]
WORK_ORDER_ACTIONS = ("assign", "accept", "start", "pending", "resume", "resolve", "close", "reopen", "cancel")
WorkOrderAction = Literal["assign", "accept", "start", "pending", "resume", "resolve", "close", "reopen", "cancel"]


class WorkOrderBase(SQLModel):
    kind: str = Field(max_length=8, description="device or gateway")
    device_id: str | None = Field(default=None, foreign_key="device.id", index=True, max_length=18)
    gateway_id: str | None = Field(default=None, foreign_key="gateway.id", max_length=64)
    school_code: str = Field(foreign_key="school.code", max_length=32)
    fault_code: str = Field(max_length=64)
    source: str = Field(max_length=8, description="alarm, gateway or manual")
    title: str = Field(max_length=200)
    description: str | None = Field(default=None, max_length=4000)
    status: str = Field(default="new", max_length=16)
    impact: str = Field(max_length=8)
    urgency: str = Field(max_length=8)
    priority: int
    team_id: int | None = Field(default=None, foreign_key="contractor_team.id", index=True)
    assignee_id: int | None = Field(default=None, foreign_key="user_account.id")
    reporter_id: int | None = Field(default=None, foreign_key="user_account.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # The SLA clocks start here: at creation, and again when the order is reopened.
    sla_started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    own_due_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolve_due_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    own_warn_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolve_warn_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    own_warned: bool = False
    resolve_warned: bool = False
    own_met: bool | None = None
    resolve_met: bool | None = None
    pending_reason: str | None = Field(default=None, max_length=500)
    pending_since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Service seconds spent pending since the clocks started; the resolve deadline moves by this much.
    pending_service_s: float = 0.0
    assigned_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    accepted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolution: str | None = Field(default=None, max_length=4000)
    reopen_count: int = 0
    # What the alarm behind the order last said, and since when it has been clear.
    alarm_active: bool = False
    alarm_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    clear_since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    verified_by_device_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    flap_count: int = 0
    flapping: bool = False


class WorkOrder(WorkOrderBase, table=True):
    """A maintenance job on a device or a school's gateway, from an alarm or a person's report."""

    __tablename__ = "work_order"
    __table_args__ = (
        Index("ix_work_order_school_code_status", "school_code", "status"),
        Index("ix_work_order_created_at", "created_at"),
        Index("ix_work_order_resolved_at", "resolved_at"),
        # Lists newest first: the open orders, and a technician's own.
        Index("ix_work_order_status_id", "status", "id"),
        Index("ix_work_order_assignee_id_id", "assignee_id", "id"),
        # One open order per (device or gateway, fault): set while the order is open, null after.
        Index("ix_work_order_open_key", "open_key", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    open_key: str | None = Field(default=None, max_length=140)
    # Recent alarm raises (epoch seconds), for telling flapping from a fault that simply returns.
    raise_times: list[float] = Field(default_factory=list, sa_type=JSON)


class WorkOrderPublic(WorkOrderBase):
    id: int
    assignee: str | None = None
    team: str | None = None


class WorkOrderPage(BaseModel):
    items: list[WorkOrderPublic]
    total: int


class WorkOrderEvent(SQLModel, table=True):
    """The journal of an order: status changes, comments, parts used, time spent, alarms, photos."""

    __tablename__ = "work_order_event"
    __table_args__ = (Index("ix_work_order_event_order_id_at", "order_id", "at"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    order_id: int = Field(foreign_key="work_order.id", ondelete="CASCADE")
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    actor: str = Field(max_length=64)
    kind: str = Field(max_length=16)
    from_status: str | None = Field(default=None, max_length=16)
    to_status: str | None = Field(default=None, max_length=16)
    text: str | None = Field(default=None, max_length=4000)
    part: str | None = Field(default=None, max_length=200)
    quantity: int | None = None
    minutes: int | None = None
    attachment_id: int | None = None


class WorkOrderEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str
    kind: str
    from_status: str | None
    to_status: str | None
    text: str | None
    part: str | None
    quantity: int | None
    minutes: int | None
    attachment_id: int | None


class WorkOrderAttachment(SQLModel, table=True):
    """A photo attached to an order; the file lives under the media directory."""

    __tablename__ = "work_order_attachment"

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="work_order.id", index=True, ondelete="CASCADE")
    filename: str = Field(max_length=200)
    content_type: str = Field(max_length=64)
    size: int
    sha256: str = Field(max_length=64)
    path: str = Field(max_length=300)
    uploaded_by: str = Field(max_length=64)
    uploaded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class WorkOrderAttachmentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    order_id: int
    filename: str
    content_type: str
    size: int
    uploaded_by: str
    uploaded_at: datetime


class WorkOrderDetail(WorkOrderPublic):
    events: list[WorkOrderEventPublic]
    attachments: list[WorkOrderAttachmentPublic]
    time_spent_min: int
    parts: dict[str, int]


LongText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class WorkOrderActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: WorkOrderAction
    assignee: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = PydanticField(
        default=None, description="username of the technician, for assign"
    )
    reason: Reason | None = PydanticField(default=None, description="why the order waits, for pending")
    notes: LongText | None = PydanticField(default=None, description="what was done, for resolve; why, for others")


class WorkOrderUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    impact: Level | None = None
    urgency: Level | None = None


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: LongText


class PartIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    part: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    quantity: Annotated[int, PydanticField(ge=1, le=10_000)] = 1


class TimeSpentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    minutes: Annotated[int, PydanticField(ge=1, le=24 * 60)]
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None


class Notification(SQLModel, table=True):
    """A message in a user's in-app inbox, e.g. an SLA deadline drawing near."""

    __tablename__ = "notification"
    __table_args__ = (
        UniqueConstraint("user_id", "dedupe_key"),
        Index("ix_notification_user_id_created_at", "user_id", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    user_id: int = Field(foreign_key="user_account.id", ondelete="CASCADE")
    order_id: int | None = Field(default=None, foreign_key="work_order.id", ondelete="CASCADE")
    kind: str = Field(max_length=32)
    text: str = Field(max_length=500)
    dedupe_key: str = Field(max_length=100)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    read_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class NotificationPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    order_id: int | None
    kind: str
    text: str
    created_at: datetime
    read_at: datetime | None


class WebhookDelivery(SQLModel, table=True):
    """An escalation to POST to the configured webhook; kept until delivered or out of attempts."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (Index("ix_webhook_delivery_next_at", "next_at"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    url: str = Field(max_length=500)
    payload: dict[str, Any] = Field(sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    attempts: int = 0
    # Null once delivered or given up.
    next_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, max_length=500)


# ---- commands and device configuration -----------------------------------------------------------

COMMAND_STATES = ("queued", "sent", "delivered", "succeeded", "failed", "expired")
FINAL_COMMAND_STATES = ("succeeded", "failed", "expired")


class CommandBatch(SQLModel, table=True):
    """One command as a person sent it, to one device or fanned out to many."""

    __tablename__ = "command_batch"
    __table_args__ = (Index("ix_command_batch_created_at", "created_at"),)

    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=32)
    args: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    target: dict[str, Any] = Field(sa_type=JSON)
    created_by: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    send_at: datetime = Field(sa_type=UTCDateTime)
    exp_at: datetime = Field(sa_type=UTCDateTime)
    devices: int


class Command(SQLModel, table=True):
    """A command to one device, followed from queued to a final state by its correlation id."""

    __tablename__ = "command"
    __table_args__ = (
        Index("ix_command_school_code_state", "school_code", "state"),
        Index("ix_command_batch_id", "batch_id"),
        Index("ix_command_state_exp_at", "state", "exp_at"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    cid: str = Field(unique=True, max_length=32)
    batch_id: str = Field(foreign_key="command_batch.id", max_length=32)
    device_id: str = Field(foreign_key="device.id", max_length=18)
    school_code: str = Field(foreign_key="school.code", max_length=32)
    name: str = Field(max_length=32)
    args: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    state: str = Field(default="queued", max_length=16)
    send_at: datetime = Field(sa_type=UTCDateTime)
    exp_at: datetime = Field(sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    result: str | None = Field(default=None, max_length=16)
    detail: str | None = Field(default=None, max_length=500)


class CommandPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    cid: str
    device_id: str
    school_code: str
    state: str
    sent_at: datetime | None
    delivered_at: datetime | None
    finished_at: datetime | None
    result: str | None
    detail: str | None


class CommandTarget(BaseModel):
    """Exactly one of device, classroom, school, district or county (all schools the sender reaches)."""

    model_config = ConfigDict(extra="forbid")

    device: Annotated[str, StringConstraints(max_length=18)] | None = None
    classroom: RowRef | None = None
    school: Code | None = None
    district: Code | None = None
    county: Literal[True] | None = None
    role: Literal["sensor", "attendance", "blackboard"] | None = PydanticField(
        default=None, description="only devices of this role, e.g. every blackboard"
    )


class CommandIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: CommandTarget
    name: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    args: Annotated[dict[str, Any], PydanticField(max_length=32)] = {}
    ttl_s: Annotated[int, PydanticField(ge=10, le=7 * 86400, description="seconds until it expires")] = 600
    send_at: Moment | None = PydanticField(default=None, description="hold the command until then (UTC if no zone)")


class CommandBatchPublic(BaseModel):
    id: str
    name: str
    args: dict[str, Any]
    target: dict[str, Any]
    created_by: str
    created_at: datetime
    send_at: datetime
    exp_at: datetime
    devices: int
    states: dict[str, int]
    commands: list[CommandPublic] | None = None


class DeviceConfig(SQLModel, table=True):
    """A device's desired configuration; `change_seq` counts changes per school, for gateways' cursors."""

    __tablename__ = "device_config"
    __table_args__ = (Index("ix_device_config_school_code_change_seq", "school_code", "change_seq"),)

    device_id: str = Field(foreign_key="device.id", primary_key=True, max_length=18)
    school_code: str = Field(foreign_key="school.code", max_length=32)
    version: int
    values: dict[str, Any] = Field(sa_type=JSON)
    change_seq: int = Field(sa_type=BigInteger)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_by: str = Field(max_length=64)


class DeviceConfigIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    values: Annotated[dict[str, Any], PydanticField(max_length=64)]


class DeviceConfigPublic(BaseModel):
    device_id: str
    desired_version: int | None
    desired: dict[str, Any] | None
    reported_version: int | None
    in_sync: bool
    updated_at: datetime | None
    updated_by: str | None


class DownlinkCommand(BaseModel):
    cid: str
    device: str
    name: str
    args: dict[str, Any]
    exp: float


class DownlinkConfig(BaseModel):
    device: str
    version: int
    values: dict[str, Any]


class Downlink(BaseModel):
    """What a gateway relays to its devices: new commands, and configs changed after its cursor."""

    commands: list[DownlinkCommand]
    configs: list[DownlinkConfig]
    config_cursor: int
