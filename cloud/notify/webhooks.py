"""Webhooks: deliveries queued in the database and POSTed by the operations loop, retried with backoff."""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlmodel import Session, col, select

from cloud.core.db import begin_write
from cloud.models import WebhookDelivery, utcnow

logger = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 5.0
WEBHOOK_BATCH = 100
# A claimed delivery is left alone by other workers this long, the time one POST may take and then some.
WEBHOOK_LEASE = timedelta(seconds=60)
MAX_BACKOFF = timedelta(hours=1)


@dataclass(frozen=True)
class WebhookPolicy:
    """Where escalations are POSTed, and how often a failed POST is tried again."""

    url: str | None = None
    max_attempts: int = 8
    retry_base: timedelta = timedelta(seconds=30)


def queue_webhook(session: Session, *, url: str, payload: dict[str, Any], now: datetime) -> None:
    """Queue a payload to be POSTed to `url` by the next delivery round (in the caller's transaction)."""
    session.add(WebhookDelivery(url=url, payload=payload, created_at=now, next_at=now))


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
