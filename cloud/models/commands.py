"""Commands to devices, their fan-out batches, devices' desired configuration, and what a gateway
relays down to its devices."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints
from pydantic import Field as PydanticField
from sqlalchemy import JSON, BigInteger, Index
from sqlmodel import Field, SQLModel

from cloud.bounds import Moment
from cloud.models.base import BigId, Code, RowRef, UTCDateTime, utcnow
from cloud.models.registry import DeviceRole

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
    role: DeviceRole | None = PydanticField(
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
