"""Work orders: the order, its journal and photos, and what people send to act on them."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Index
from sqlmodel import Field, SQLModel

from cloud.models.base import BigId, UTCDateTime, utcnow


class WorkOrderStatus(StrEnum):
    """Where an order stands; cloud.workorders.lifecycle's state machine moves it."""

    NEW = "new"
    ASSIGNED = "assigned"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    PENDING = "pending"
    RESOLVED = "resolved"
    CLOSED = "closed"
    CANCELLED = "cancelled"


WORK_ORDER_STATUSES = tuple(status.value for status in WorkOrderStatus)
# The statuses of an order still to be worked.
ACTIVE_STATUSES = tuple(
    status.value
    for status in (
        WorkOrderStatus.NEW,
        WorkOrderStatus.ASSIGNED,
        WorkOrderStatus.ACCEPTED,
        WorkOrderStatus.IN_PROGRESS,
        WorkOrderStatus.PENDING,
    )
)


class WorkOrderAction(StrEnum):
    """What a person may do to an order; who may do which is cloud.policy's."""

    ASSIGN = "assign"
    ACCEPT = "accept"
    START = "start"
    PENDING = "pending"
    RESUME = "resume"
    RESOLVE = "resolve"
    CLOSE = "close"
    REOPEN = "reopen"
    CANCEL = "cancel"


WORK_ORDER_ACTIONS = tuple(action.value for action in WorkOrderAction)
Level = Literal["high", "medium", "low"]


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
