"""How alarms become orders: an alarm opens an order (with the impact and urgency its fault code is given),
raises or clears it again, reopens a recently resolved one or counts it as flapping; device-offline
alarms explained by the school's gateway outage are suppressed."""

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlmodel import Session, col, select

from cloud.models import ACTIVE_STATUSES, Gateway, WorkOrder
from cloud.workorders.batch import Journal, Reads
from cloud.workorders.lifecycle import new_order, reopen
from cloud.workorders.signals import DEFAULT_POLICY, FaultPolicy, FaultSignal, orders_of

# Impact and urgency of the faults that open orders by themselves; the part before ":" is looked up.
FAULT_LEVELS: dict[str, tuple[str, str]] = {
    "gateway_offline": ("high", "high"),
    # The gateway can store nothing: its school's taps and alarms wait on the devices until it can.
    "store_unwritable": ("high", "high"),
    "store_quota": ("medium", "high"),
    "display_power_fault": ("medium", "high"),
    "display_no_answer": ("medium", "high"),
    "display_power_mismatch": ("medium", "medium"),
    "reader_fault": ("medium", "high"),
    "device_offline": ("medium", "medium"),
    # A device flooding its topics (the gateway drops its excess): broken firmware or a stolen credential,
    # an equipment fault to look at; the gateway keeps the rest of the school working meanwhile.
    "device_flood": ("medium", "medium"),
    "safe_mode": ("medium", "medium"),
    "config_invalid": ("low", "medium"),
    "config_rejected": ("low", "medium"),
    "sensor_fault": ("low", "medium"),
}
DEFAULT_LEVELS = ("medium", "medium")
GATEWAY_OFFLINE = "gateway_offline"
# Alarms that say a device cannot be heard: during a gateway outage the gateway, not the device, is why.
OFFLINE_CODES = ("device_offline",)


REOPENABLE_STATUSES = ("resolved", "closed")


def fault_levels(code: str) -> tuple[str, str]:
    """Impact and urgency an alarm's fault code is given."""
    return FAULT_LEVELS.get(code.split(":", 1)[0], DEFAULT_LEVELS)


def _count_raise(order: WorkOrder, signal: FaultSignal, policy: FaultPolicy) -> None:
    """A repeat raise: count it, and call it flapping past the threshold within the window."""
    moment = signal.ts.timestamp()
    horizon = moment - policy.flap_window.total_seconds()
    order.raise_times = [t for t in order.raise_times if t >= horizon] + [moment]
    order.flap_count += 1
    if len(order.raise_times) > policy.flap_threshold:
        order.flapping = True


def apply_signal(
    session: Session,
    signal: FaultSignal,
    *,
    now: datetime,
    policy: FaultPolicy = DEFAULT_POLICY,
    reads: Reads | None = None,
    journal: Journal | None = None,
) -> str:
    """Open, update, reopen or mark cleared the order of one alarm; say which (for logs and tests)."""
    reads = reads or Reads(session)
    journal = journal or Journal(session)
    order = reads.latest_order(signal)
    actor = signal.gateway_id or signal.device_id or "system"
    detail = signal.detail or signal.code
    if order is not None and order.alarm_at is not None and signal.ts < order.alarm_at:
        # A replay older than what the order already knows changes nothing.
        return "stale"
    if not signal.raised:
        if order is None or order.status in ("closed",) or not order.alarm_active:
            return "ignored"
        order.alarm_active = False
        order.alarm_at = signal.ts
        order.clear_since = signal.ts
        if not order.flapping:
            journal(order, actor=actor, kind="alarm", at=now, text=f"cleared: {detail}")
        session.add(order)
        return "cleared"
    if order is not None and order.status in ACTIVE_STATUSES:
        was_active = order.alarm_active
        order.alarm_active = True
        order.alarm_at = signal.ts
        order.clear_since = None
        if was_active:
            return "still_raised"
        _count_raise(order, signal, policy)
        if not order.flapping:
            journal(order, actor=actor, kind="alarm", at=now, text=f"raised again: {detail}")
        session.add(order)
        return "flapping" if order.flapping else "raised_again"
    if (
        order is not None
        and order.status in REOPENABLE_STATUSES
        and order.resolved_at is not None
        and signal.ts - order.resolved_at <= policy.reopen_window
        and reads.open_order(order) is None
    ):
        previous = order.status
        reopen(session, order, now, reads, journal)
        order.alarm_active, order.alarm_at, order.clear_since = True, signal.ts, None
        _count_raise(order, signal, policy)
        order.updated_at = now
        journal(
            order,
            actor=actor,
            kind="status",
            at=now,
            from_status=previous,
            to_status=order.status,
            text=f"reopened: the fault returned within {policy.reopen_window}: {detail}",
        )
        session.add(order)
        return "reopened"
    impact, urgency = fault_levels(signal.code)
    subject = signal.device_id if signal.kind == "device" else f"gateway {signal.gateway_id}"
    created = new_order(
        session,
        kind=signal.kind,
        school_code=signal.school_code,
        device_id=signal.device_id,
        gateway_id=signal.gateway_id,
        fault_code=signal.code,
        source="alarm" if signal.kind == "device" else "gateway",
        title=f"{signal.code} on {subject}",
        description=signal.detail,
        impact=impact,
        urgency=urgency,
        now=now,
        actor=actor,
        reads=reads,
        journal=journal,
    )
    created.alarm_active, created.alarm_at = True, signal.ts
    created.raise_times = [signal.ts.timestamp()]
    reads.opened(created)
    return "opened"


def offline_during_outage(
    signal: FaultSignal,
    *,
    previous_sync: datetime | None,
    now: datetime,
    policy: FaultPolicy,
    gateway_down_since: datetime | None,
) -> bool:
    """True for a device-offline alarm that the school's gateway outage, not the device, explains."""
    if signal.kind != "device" or signal.code.split(":", 1)[0] not in OFFLINE_CODES:
        return False
    if gateway_down_since is not None and signal.ts >= gateway_down_since - policy.gateway_stale:
        return True
    return previous_sync is not None and now - previous_sync > policy.gateway_stale and signal.ts >= previous_sync


def gateway_down_since(session: Session, school_code: str) -> datetime | None:
    """When the school's open gateway_offline order's alarm was raised, if one is open and raised."""
    return session.exec(
        select(WorkOrder.alarm_at).where(
            WorkOrder.school_code == school_code,
            WorkOrder.fault_code == GATEWAY_OFFLINE,
            col(WorkOrder.status).in_(ACTIVE_STATUSES),
            col(WorkOrder.alarm_active).is_(True),
        )
    ).first()


def apply_sync_alarms(
    session: Session,
    *,
    gateway: Gateway,
    signals: Sequence[FaultSignal],
    previous_sync: datetime | None,
    now: datetime,
    policy: FaultPolicy = DEFAULT_POLICY,
    device_roles: Mapping[str, str | None] | None = None,
) -> dict[str, int]:
    """Turn the alarms of one sync batch into order changes; count the outcomes. `device_roles` are the
    roles of the batch's devices as they are now, if the caller has them.

    What the alarms need is read up front, a few statements for the whole batch (Reads), and the orders
    they open or change are flushed once at the end, with their journal entries."""
    outcomes: dict[str, int] = {}
    if not signals:
        return outcomes
    down_since = (
        gateway_down_since(session, gateway.school_code)
        if any(signal.raised and signal.code.split(":", 1)[0] in OFFLINE_CODES for signal in signals)
        else None
    )
    reads = Reads(session, orders_of(session, signals))
    if device_roles:
        reads.know_roles(device_roles)
    journal = Journal(session, deferred=True)
    with session.no_autoflush:
        for signal in signals:
            if signal.raised and offline_during_outage(
                signal, previous_sync=previous_sync, now=now, policy=policy, gateway_down_since=down_since
            ):
                outcome = "suppressed"
            else:
                outcome = apply_signal(session, signal, now=now, policy=policy, reads=reads, journal=journal)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    journal.write()
    session.flush()
    return outcomes
