"""The minute-by-minute checks of the cloud: stale gateways, device-verified clears, SLA escalations,
command expiry, and webhook delivery."""

import logging
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import Session, select

from cloud import workorders
from cloud.core.db import begin_write
from cloud.crud import commands
from cloud.models import utcnow
from cloud.notify.webhooks import WebhookPolicy, deliver_webhooks

logger = logging.getLogger(__name__)

# Any constant will do; it only has to be the same for every API worker.
OPERATIONS_LOCK_KEY = 0x436C4F7073  # "ClOps"


class OperationsReport(BaseModel):
    """What one run of the periodic checks did; None fields were skipped (another worker had the turn)."""

    gateways_offline: int | None = None
    gateways_back: int | None = None
    verified: int | None = None
    escalated: int | None = None
    expired_commands: int | None = None
    webhooks_delivered: int = 0
    webhooks_failed: int = 0


def run_operations(
    session: Session,
    *,
    policy: workorders.FaultPolicy = workorders.DEFAULT_POLICY,
    webhook: WebhookPolicy | None = None,
    now: datetime | None = None,
) -> OperationsReport:
    """One round of the periodic checks, in one transaction; then the webhook deliveries due."""
    now = now or utcnow()
    webhook = webhook or WebhookPolicy()
    report = OperationsReport()
    begin_write(session)
    locked = True
    if session.get_bind().dialect.name == "postgresql":
        locked = session.exec(select(func.pg_try_advisory_xact_lock(OPERATIONS_LOCK_KEY))).one()
    if locked:
        gateways = workorders.check_gateways(session, now=now, policy=policy)
        report.gateways_offline, report.gateways_back = gateways["offline"], gateways["back"]
        report.verified = workorders.verify_cleared(session, now=now, policy=policy)
        report.escalated = workorders.escalate_due(session, now=now, webhook=webhook)
        report.expired_commands = commands.expire_commands(session, now=now)
        session.commit()
    else:
        session.rollback()
    # Deliveries carry their own URL, so those queued before a change of setting still go out.
    report.webhooks_delivered, report.webhooks_failed = deliver_webhooks(session, now=now, policy=webhook)
    return report
