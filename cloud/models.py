"""Tables of the cloud database and the public shapes the API reads and writes."""

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints
from pydantic import Field as PydanticField
from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

# Deterministic constraint names, so later migrations (and SQLite batch mode) can address them.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ROLES = ("county_admin", "school_admin", "technician", "contractor_manager", "auditor")
ACTOR_KINDS = ("user", "gateway", "cli", "system")
PRESENCE_STATES = ("online", "offline", "unknown")
Role = Literal["county_admin", "school_admin", "technician", "contractor_manager", "auditor"]
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
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


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

AssetText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]


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
    first_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class DeviceAssetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: AssetText | None = None
    vendor: AssetText | None = None
    serial: AssetText | None = None
    asset_tag: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] | None = None
    purchase_date: date | None = None
    warranty_end: date | None = None
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


class AttendanceEventBase(SQLModel):
    device_id: str = Field(foreign_key="device.id", max_length=18)
    boot_id: str = Field(max_length=8)
    seq: int = Field(sa_type=BigInteger)
    ts: datetime = Field(sa_type=UTCDateTime)
    card_pseudonym: str = Field(max_length=128)
    historical: bool = False
    school_code: str = Field(foreign_key="school.code", max_length=32)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AttendanceEvent(AttendanceEventBase, table=True):
    """One card tap; the card is known only by the pseudonym the school's gateway made of it."""

    __tablename__ = "attendance_event"
    __table_args__ = (
        UniqueConstraint("device_id", "boot_id", "seq"),
        Index("ix_attendance_event_school_code_ts", "school_code", "ts"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    gateway_id: str = Field(foreign_key="gateway.id", max_length=64)


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

    gateway_id: str = Field(foreign_key="gateway.id", primary_key=True, max_length=64)
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

    device_id: str = Field(foreign_key="device.id", max_length=18)
    boot_id: str = Field(max_length=8)
    seq: int = Field(sa_type=BigInteger)
    ts: datetime = Field(sa_type=UTCDateTime)
    school_code: str = Field(foreign_key="school.code", max_length=32)
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
    gateway_id: str = Field(foreign_key="gateway.id", max_length=64)


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
    gateway_id: str = Field(foreign_key="gateway.id", max_length=64)


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


class MaintenanceReport(BaseModel):
    """What one maintenance run did."""

    rolled_up_hours: int
    pruned_health_samples: int
    pruned_telemetry_samples: int
    pruned_hourly: int


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
        description="birth, will, health, telemetry, attendance, alarm, ack, presence or gateway_alarm",
    )
    device: Any = PydanticField(default=None, description="device id, esp32-<12 hex>")
    boot: Any = PydanticField(default=None, description="boot id, 8 hex digits; null for presence")
    seq: Any = PydanticField(default=None, description="the device's sequence number within the boot")
    ts: Any = PydanticField(default=None, description="Unix epoch seconds, UTC")
    body: Any = PydanticField(default=None, description="the record's own fields")


class SyncBatch(BaseModel):
    """Records a gateway pushes, in its own sequence order."""

    records: list[SyncRecordIn]
    sent_at: float | None = None
