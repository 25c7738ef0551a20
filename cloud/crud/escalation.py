"""Escalation before SLA deadlines: in-app notifications and a webhook, delivered with retries."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import or_
from sqlmodel import Session, col, select

from cloud.core.db import begin_write
from cloud.crud import audit
from cloud.crud.common import Actor, dialect_insert
from cloud.errors import AccessDenied, NotFound
from cloud.models import (
    ACTIVE_STATUSES,
    Notification,
    Role,
    School,
    TeamMember,
    User,
    WebhookDelivery,
    WorkOrder,
    utcnow,
)

logger = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 5.0
WEBHOOK_BATCH = 100
# A claimed delivery is left alone by other workers this long, the time one POST may take and then some.
WEBHOOK_LEASE = timedelta(seconds=60)
MAX_BACKOFF = timedelta(hours=1)
CLOCK_NAMES = {"own": "time to own (accept)", "resolve": "time to resolve"}


@dataclass(frozen=True)
class WebhookPolicy:
    """Where escalations are POSTed, and how often a failed POST is tried again."""

    url: str | None = None
    max_attempts: int = 8
    retry_base: timedelta = timedelta(seconds=30)


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
    rows = [
        {
            "user_id": user_id,
            "order_id": order.id,
            "kind": "sla_warning",
            "text": text[:500],
            "dedupe_key": key,
            "created_at": now,
        }
        for user_id in _recipients(session, order)
    ]
    if rows:
        session.exec(
            dialect_insert(session, Notification)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["user_id", "dedupe_key"])
        )
    if webhook.url:
        session.add(
            WebhookDelivery(
                url=webhook.url, payload=_payload(session, order, clock, due, now), created_at=now, next_at=now
            )
        )
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


# ---- webhook delivery ----------------------------------------------------------------------------


def _claim(session: Session, now: datetime) -> list[tuple[int, str, dict[str, Any]]]:
    begin_write(session)
    rows = session.exec(
        select(WebhookDelivery)
        .where(col(WebhookDelivery.next_at).is_not(None), col(WebhookDelivery.next_at) <= now)
        .order_by(col(WebhookDelivery.id))
        .limit(WEBHOOK_BATCH)
        .with_for_update(skip_locked=True)
    ).all()
    claimed = []
    for row in rows:
        assert row.id is not None
        row.next_at = now + WEBHOOK_LEASE
        session.add(row)
        claimed.append((row.id, row.url, row.payload))
    session.commit()
    return claimed


def _post(client: httpx.Client, url: str, payload: dict[str, Any]) -> str | None:
    """POST one payload; None on a 2xx answer, else what went wrong."""
    try:
        response = client.post(url, json=payload)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code}: {response.text[:200]}"


def deliver_webhooks(session: Session, *, now: datetime | None = None, policy: WebhookPolicy) -> tuple[int, int]:
    """POST the escalations that are due; return (delivered, failed this round)."""
    now = now or utcnow()
    claimed = _claim(session, now)
    if not claimed:
        return 0, 0
    results: dict[int, str | None] = {}
    with httpx.Client(timeout=WEBHOOK_TIMEOUT_S) as client:
        for delivery_id, url, payload in claimed:
            results[delivery_id] = _post(client, url, payload)
    begin_write(session)
    delivered = failed = 0
    for delivery_id, error in results.items():
        row = session.get(WebhookDelivery, delivery_id)
        if row is None:
            continue
        row.attempts += 1
        if error is None:
            row.delivered_at, row.next_at, row.last_error = now, None, None
            delivered += 1
        else:
            failed += 1
            row.last_error = error
            if row.attempts >= policy.max_attempts:
                row.next_at = None
                logger.warning("webhook %s given up after %d attempts: %s", delivery_id, row.attempts, error)
            else:
                row.next_at = now + min(MAX_BACKOFF, policy.retry_base * (2 ** (row.attempts - 1)))
        session.add(row)
    session.commit()
    return delivered, failed


# ---- the inbox -----------------------------------------------------------------------------------


def list_notifications(
    session: Session, *, user: User, unread_only: bool = False, limit: int = 100, offset: int = 0
) -> Sequence[Notification]:
    """The user's own notifications, newest first."""
    if not user.is_active:
        raise AccessDenied("the account is disabled")
    statement = select(Notification).where(Notification.user_id == user.id)
    if unread_only:
        statement = statement.where(col(Notification.read_at).is_(None))
    return session.exec(
        statement.order_by(col(Notification.created_at).desc(), col(Notification.id).desc()).offset(offset).limit(limit)
    ).all()


def mark_read(session: Session, *, actor: Actor, notification_id: int, now: datetime | None = None) -> Notification:
    """Mark one of the user's notifications read."""
    begin_write(session)
    row = session.get(Notification, notification_id)
    if actor.user is None or row is None or row.user_id != actor.user.id:
        raise NotFound(f"notification {notification_id} not found")
    if row.read_at is None:
        row.read_at = now or utcnow()
        session.add(row)
        audit.record(session, actor=actor, action="read", entity="notification", entity_id=notification_id)
    session.commit()
    session.refresh(row)
    return row
