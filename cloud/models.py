"""Tables of the cloud database and the public shapes the API reads and writes."""

from datetime import UTC, datetime
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
PRESENCE_STATES = ("online", "offline", "unknown")
Role = Literal["county_admin", "school_admin", "technician", "contractor_manager", "auditor"]
Presence = Literal["online", "offline", "unknown"]

# Row ids that outgrow 32 bits at province scale; SQLite only autoincrements an INTEGER primary key.
BigId = BigInteger().with_variant(Integer(), "sqlite")


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


# ---- schools -------------------------------------------------------------------------------------


class SchoolBase(SQLModel):
    code: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    timezone: str = Field(default="Asia/Shanghai", max_length=64)


class School(SchoolBase, table=True):
    __tablename__ = "school"

    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class SchoolPublic(SchoolBase):
    created_at: datetime


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


# ---- devices -------------------------------------------------------------------------------------


class DeviceBase(SQLModel):
    id: str = Field(primary_key=True, max_length=18)
    school_code: str = Field(foreign_key="school.code", index=True, max_length=32)
    role: str | None = Field(default=None, max_length=32)
    fw: str | None = Field(default=None, max_length=64)
    app: str | None = Field(default=None, max_length=64)
    presence: str = Field(default="unknown", max_length=16)
    presence_since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_seen_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_health: dict[str, Any] | None = Field(default=None, sa_type=JSON)


class Device(DeviceBase, table=True):
    """A classroom device, registered the first time its school's gateway syncs a record of it."""

    __tablename__ = "device"

    boot_id: str | None = Field(default=None, max_length=8)
    first_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class DevicePublic(DeviceBase):
    presence: Presence


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


# ---- sync ledger ---------------------------------------------------------------------------------


class IngestedRecord(SQLModel, table=True):
    """A gateway record the cloud has applied; the key that makes replayed batches harmless."""

    __tablename__ = "ingested_record"

    gateway_id: str = Field(foreign_key="gateway.id", primary_key=True, max_length=64)
    gateway_seq: int = Field(primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False})
    kind: str = Field(max_length=16)
    device_id: str | None = Field(default=None, max_length=18)
    # Alarms and command acks have no table of their own yet; their bodies are kept here meanwhile.
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


# ---- users and sessions --------------------------------------------------------------------------


class UserBase(SQLModel):
    username: str = Field(unique=True, max_length=64)
    role: str = Field(max_length=32)
    school_code: str | None = Field(default=None, foreign_key="school.code", max_length=32)
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


# ---- gateway sync batches ------------------------------------------------------------------------


class SyncRecordIn(BaseModel):
    """One record of a sync batch. Only `gseq` is checked here: the rest is checked record by record,
    so that one bad record is rejected on its own and never fails the good ones beside it."""

    model_config = ConfigDict(extra="allow")

    gseq: Annotated[int, PydanticField(gt=0, strict=True, description="gateway sequence number")]
    kind: Any = PydanticField(
        default=None, description="birth, will, health, telemetry, attendance, alarm, ack or presence"
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
