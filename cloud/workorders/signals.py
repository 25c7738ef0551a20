"""Alarms as work orders see them: a FaultSignal raised or cleared, the FaultPolicy that says how alarms
become orders, and the orders of an alarm. It reads no other part of the domain, so that the data layer
can name these while the rest of the package is still loading."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_
from sqlmodel import Session, col, select

from cloud.models import WorkOrder


@dataclass(frozen=True)
class FaultPolicy:
    """How alarms become orders: hold before a clear verifies, reopen window, flapping, staleness."""

    verify_hold: timedelta = timedelta(seconds=600)
    reopen_window: timedelta = timedelta(hours=24)
    flap_window: timedelta = timedelta(minutes=30)
    flap_threshold: int = 3
    gateway_stale: timedelta = timedelta(seconds=120)


DEFAULT_POLICY = FaultPolicy()


@dataclass(frozen=True)
class FaultSignal:
    """An alarm raised or cleared on a device or a gateway."""

    kind: str
    school_code: str
    code: str
    raised: bool
    ts: datetime
    device_id: str | None = None
    gateway_id: str | None = None
    detail: str | None = None


def alarm_key(signal: FaultSignal) -> tuple[str, str | None, str]:
    """(kind, device or gateway, fault code): the orders of one alarm."""
    return signal.kind, signal.device_id if signal.kind == "device" else signal.gateway_id, signal.code


def orders_of(session: Session, signals: Sequence[FaultSignal]) -> dict[tuple[str, str | None, str], list[WorkOrder]]:
    """The orders, cancelled ones aside, of each alarm key of `signals`, read in one statement."""
    found: dict[tuple[str, str | None, str], list[WorkOrder]] = {alarm_key(signal): [] for signal in signals}
    devices = sorted({subject for kind, subject, _ in found if kind == "device" and subject is not None})
    gateways = sorted({subject for kind, subject, _ in found if kind == "gateway" and subject is not None})
    codes = sorted({code for _, _, code in found})
    subjects = []
    if devices:
        subjects.append(and_(col(WorkOrder.kind) == "device", col(WorkOrder.device_id).in_(devices)))
    if gateways:
        subjects.append(and_(col(WorkOrder.kind) == "gateway", col(WorkOrder.gateway_id).in_(gateways)))
    if not subjects:
        return found
    orders = session.exec(
        select(WorkOrder).where(col(WorkOrder.fault_code).in_(codes), WorkOrder.status != "cancelled", or_(*subjects))
    ).all()
    for order in orders:
        subject = order.device_id if order.kind == "device" else order.gateway_id
        key = (order.kind, subject, order.fault_code)
        if key in found:
            found[key].append(order)
    return found


def latest_order_of(session: Session, signal: FaultSignal) -> WorkOrder | None:
    """The newest order, cancelled ones aside, of the signal's alarm."""
    statement = select(WorkOrder).where(
        WorkOrder.fault_code == signal.code, WorkOrder.kind == signal.kind, WorkOrder.status != "cancelled"
    )
    if signal.kind == "device":
        statement = statement.where(WorkOrder.device_id == signal.device_id)
    else:
        statement = statement.where(WorkOrder.gateway_id == signal.gateway_id)
    return session.exec(statement.order_by(col(WorkOrder.id).desc()).limit(1)).first()
