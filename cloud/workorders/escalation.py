"""Escalation before SLA deadlines: an open order past 80% of a running deadline notifies its assignee and
team managers (or the district's county admins) in the app, and is POSTed to the webhook if one is set."""

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import or_
from sqlmodel import Session, col, select

from cloud import notify
from cloud.models import ACTIVE_STATUSES, Role, School, TeamMember, User, WorkOrder
from cloud.notify.webhooks import WebhookPolicy

logger = logging.getLogger(__name__)

CLOCK_NAMES = {"own": "time to own (accept)", "resolve": "time to resolve"}


def _recipients(session: Session, order: WorkOrder) -> list[int]:
    """The assignee and the team's managers; the district's county admins if the order has neither."""
    ids: set[int] = set()
    if order.assignee_id is not None:
        ids.add(order.assignee_id)
    if order.team_id is not None:
        ids.update(
            user_id
            for user_id in session.exec(
                select(User.id)
                .join(TeamMember, col(TeamMember.user_id) == col(User.id))
                .where(TeamMember.team_id == order.team_id, User.role == Role.CONTRACTOR_MANAGER)
            ).all()
            if user_id is not None
        )
    if not ids:
        school = session.get(School, order.school_code)
        district = school.district_code if school is not None else None
        ids.update(
            user_id
            for user_id in session.exec(
                select(User.id).where(
                    User.role == Role.COUNTY_ADMIN,
                    or_(col(User.district_code).is_(None), col(User.district_code) == district),
                )
            ).all()
            if user_id is not None
        )
    return sorted(ids)


def _payload(session: Session, order: WorkOrder, clock: str, due: datetime | None, now: datetime) -> dict[str, Any]:
    assignee = session.get(User, order.assignee_id) if order.assignee_id is not None else None
    return {
        "event": "sla_warning",
        "clock": clock,
        "at": now.isoformat(),
        "due_at": due.isoformat() if due is not None else None,
        "order": {
            "id": order.id,
            "kind": order.kind,
            "school_code": order.school_code,
            "device_id": order.device_id,
            "gateway_id": order.gateway_id,
            "fault_code": order.fault_code,
            "priority": order.priority,
            "status": order.status,
            "assignee": assignee.username if assignee is not None else None,
            "team_id": order.team_id,
        },
    }


def _escalate(
    session: Session, order: WorkOrder, clock: str, due: datetime | None, now: datetime, webhook: WebhookPolicy
) -> None:
    assert order.id is not None
    text = f"Work order {order.id} ({order.fault_code}, P{order.priority}) nears its {CLOCK_NAMES[clock]} deadline" + (
        f" at {due.isoformat()}" if due is not None else ""
    )
    key = f"{order.id}:{clock}:{int(order.sla_started_at.timestamp())}"
    notify.notify_users(
        session,
        user_ids=_recipients(session, order),
        order_id=order.id,
        kind="sla_warning",
        text=text,
        dedupe_key=key,
        now=now,
    )
    if webhook.url:
        notify.queue_webhook(session, url=webhook.url, payload=_payload(session, order, clock, due, now), now=now)
    logger.info("escalated work order %s (%s clock)", order.id, clock, extra={"order_id": order.id})


def escalate_due(session: Session, *, now: datetime, webhook: WebhookPolicy) -> int:
    """Escalate every open order past 80% of a running deadline, once per clock and SLA start."""
    escalated = 0
    owning = session.exec(
        select(WorkOrder).where(
            col(WorkOrder.status).in_(("new", "assigned")),
            col(WorkOrder.own_warned).is_(False),
            col(WorkOrder.own_warn_at) <= now,
        )
    ).all()
    for order in owning:
        order.own_warned = True
        session.add(order)
        _escalate(session, order, "own", order.own_due_at, now, webhook)
        escalated += 1
    resolving = session.exec(
        select(WorkOrder).where(
            col(WorkOrder.status).in_([s for s in ACTIVE_STATUSES if s != "pending"]),
            col(WorkOrder.resolve_warned).is_(False),
            col(WorkOrder.resolve_warn_at) <= now,
        )
    ).all()
    for order in resolving:
        order.resolve_warned = True
        session.add(order)
        _escalate(session, order, "resolve", order.resolve_due_at, now, webhook)
        escalated += 1
    return escalated
