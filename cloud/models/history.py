"""What gateways sync besides taps: the ledger of applied records, the batches themselves, and the
devices' alarms, command answers, health and telemetry over time, with their hourly roll-ups and the
marks of the maintenance runs that roll up and prune them."""

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField
from sqlalchemy import JSON, BigInteger, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from cloud.models.base import MAX_BIGINT, BigId, UTCDateTime, utcnow

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


class MaintenanceReport(BaseModel):
    """What one maintenance run did."""

    rolled_up_hours: int
    pruned_health_samples: int
    pruned_telemetry_samples: int
    pruned_hourly: int
    summarised_days: int = 0


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
