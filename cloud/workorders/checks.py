"""The periodic checks on orders: gateways silent past the stale limit (and heard again), and cleared
alarms that stayed clear long enough to count as verified by the device."""

from datetime import datetime

from sqlmodel import Session, col, select

from cloud.models import ACTIVE_STATUSES, Gateway, WorkOrder
from cloud.workorders.alarm_policy import GATEWAY_OFFLINE, apply_signal
from cloud.workorders.batch import write_event
from cloud.workorders.signals import FaultPolicy, FaultSignal
from cloud.workorders.sla import end_pending


def check_gateways(session: Session, *, now: datetime, policy: FaultPolicy) -> dict[str, int]:
    """Raise gateway_offline for gateways silent past the stale limit; clear it for those heard again."""
    counts = {"offline": 0, "back": 0}
    cutoff = now - policy.gateway_stale
    stale = session.exec(
        select(Gateway).where(col(Gateway.last_sync_at).is_not(None), col(Gateway.last_sync_at) < cutoff)
    ).all()
    for gateway in stale:
        assert gateway.last_sync_at is not None
        signal = FaultSignal(
            kind="gateway",
            school_code=gateway.school_code,
            gateway_id=gateway.id,
            code=GATEWAY_OFFLINE,
            raised=True,
            ts=gateway.last_sync_at + policy.gateway_stale,
            detail=f"no sync since {gateway.last_sync_at.isoformat()}",
        )
        if apply_signal(session, signal, now=now, policy=policy) in ("opened", "reopened", "raised_again", "flapping"):
            counts["offline"] += 1
        session.flush()
    raised = session.exec(
        select(WorkOrder, Gateway)
        .join(Gateway, col(Gateway.id) == col(WorkOrder.gateway_id))
        .where(
            WorkOrder.fault_code == GATEWAY_OFFLINE,
            col(WorkOrder.alarm_active).is_(True),
            col(Gateway.last_sync_at) >= cutoff,
        )
    ).all()
    for order, gateway in raised:
        assert gateway.last_sync_at is not None
        signal = FaultSignal(
            kind="gateway",
            school_code=gateway.school_code,
            gateway_id=gateway.id,
            code=GATEWAY_OFFLINE,
            raised=False,
            ts=max(gateway.last_sync_at, order.alarm_at or gateway.last_sync_at),
            detail="syncing again",
        )
        if apply_signal(session, signal, now=now, policy=policy) == "cleared":
            counts["back"] += 1
    return counts


def verify_cleared(session: Session, *, now: datetime, policy: FaultPolicy) -> int:
    """Orders whose alarm cleared and stayed clear for the hold: verified by the device, resolved if still open."""
    orders = session.exec(
        select(WorkOrder).where(
            col(WorkOrder.alarm_active).is_(False),
            col(WorkOrder.clear_since).is_not(None),
            col(WorkOrder.clear_since) <= now - policy.verify_hold,
            col(WorkOrder.verified_by_device_at).is_(None),
            col(WorkOrder.status).in_((*ACTIVE_STATUSES, "resolved")),
        )
    ).all()
    for order in orders:
        held = policy.verify_hold.total_seconds()
        order.verified_by_device_at = now
        order.flapping = False
        order.raise_times = []
        text = f"verified by the device: the alarm has stayed clear for {held:.0f} s"
        if order.status in ACTIVE_STATUSES:
            previous = order.status
            end_pending(session, order, now)
            order.status = "resolved"
            order.resolved_at = now
            order.resolution = text
            order.resolve_met = order.resolve_due_at is None or now <= order.resolve_due_at
            order.open_key = None
            write_event(
                session,
                order,
                actor="system",
                kind="status",
                at=now,
                from_status=previous,
                to_status="resolved",
                text=text,
            )
        else:
            write_event(session, order, actor="system", kind="verified", at=now, text=text)
        order.updated_at = now
        session.add(order)
    return len(orders)
