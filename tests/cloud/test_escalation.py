"""Escalation at 80% of an SLA deadline: notifications to the assignee and the team's manager, and a
webhook POSTed to a real local HTTP receiver, retried until it answers 2xx."""

import json
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select

from cloud import workorders
from cloud.crud import run_operations
from cloud.models import WebhookDelivery
from cloud.notify import WebhookPolicy
from tests.cloud.helpers import CLI, DEVICE_A, record

API = "/api/v1"
MONDAY = date(2026, 1, 5)
ZONE = ZoneInfo("Asia/Shanghai")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


class Receiver:
    """A webhook endpoint that fails the first `failures` POSTs and keeps what it was sent."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[dict] = []
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts += 1
                if receiver.attempts <= receiver.failures:
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/sla"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver(failures=1)
    thread = threading.Thread(target=hook.server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        hook.server.shutdown()
        hook.server.server_close()
        thread.join(timeout=5)


def local(hour: int, minute: int = 0, day: date = MONDAY) -> datetime:
    return datetime.combine(day, time(hour, minute), ZONE).astimezone(UTC)


def test_escalation_notifies_and_posts_with_retry(client, session, crew, sync, receiver):
    sync([record(1, "birth", DEVICE_A, role="blackboard", fw="1", app="1")])
    order = workorders.report_fault(session, actor=CLI, device_id=DEVICE_A, description="dark", now=local(9))
    policy = WebhookPolicy(url=receiver.url, max_attempts=3, retry_base=timedelta(0))
    # P3: 4 service hours to own; 80% of them have gone by at 12:12.
    early = run_operations(session, webhook=policy, now=local(12, 11))
    due = run_operations(session, webhook=policy, now=local(12, 13))
    retried = run_operations(session, webhook=policy, now=local(12, 14))
    again = run_operations(session, webhook=policy, now=local(12, 30))

    assert (early.escalated, due.escalated, again.escalated) == (0, 1, 0)
    assert (due.webhooks_delivered, due.webhooks_failed) == (0, 1)
    assert (retried.webhooks_delivered, receiver.attempts) == (1, 2)
    payload = receiver.received[0]
    assert payload["event"] == "sla_warning" and payload["clock"] == "own"
    assert payload["order"]["id"] == order.id and payload["order"]["assignee"] == "tech"
    assert payload["due_at"] == local(13).isoformat()
    for person in ("tech", "boss"):
        inbox = client.get(f"{API}/notifications", headers=crew.user(person)).json()
        assert [n["order_id"] for n in inbox] == [order.id], person
    assert client.get(f"{API}/notifications", headers=crew.user("tech2")).json() == []
    note = client.get(f"{API}/notifications", headers=crew.user("tech")).json()[0]
    read = client.post(f"{API}/notifications/{note['id']}/read", headers=crew.user("tech"))
    foreign = client.post(f"{API}/notifications/{note['id']}/read", headers=crew.user("boss"))
    assert read.status_code == 200 and read.json()["read_at"]
    assert foreign.status_code == 404
    assert client.get(f"{API}/notifications?unread=true", headers=crew.user("tech")).json() == []


def test_the_resolve_clock_escalates_and_pending_orders_do_not(client, session, crew, sync, receiver):
    sync([record(1, "birth", DEVICE_A, role="blackboard", fw="1", app="1")])
    order = workorders.report_fault(
        session, actor=CLI, device_id=DEVICE_A, description="dark", impact="high", urgency="high", now=local(9)
    )
    workorders.transition(session, actor=CLI, order_id=order.id, action="accept", now=local(9, 10))
    workorders.transition(session, actor=CLI, order_id=order.id, action="pending", reason="part", now=local(9, 20))
    policy = WebhookPolicy(url=receiver.url, retry_base=timedelta(0))
    paused = run_operations(session, webhook=policy, now=local(16))
    workorders.transition(session, actor=CLI, order_id=order.id, action="resume", now=local(16))
    # P1: 4 h to resolve, so the warning comes after 3 h 12 min of service time: 20 min before pending, 2 h
    # from 16:00 to the end of Monday's service hours, and 52 min on Tuesday.
    tuesday = MONDAY + timedelta(days=1)
    before = run_operations(session, webhook=policy, now=local(8, 51, tuesday))
    after = run_operations(session, webhook=policy, now=local(8, 53, tuesday))

    assert (paused.escalated, before.escalated, after.escalated) == (0, 0, 1)


def test_a_webhook_that_never_answers_is_given_up(client, session, crew, sync):
    sync([record(1, "birth", DEVICE_A, role="blackboard", fw="1", app="1")])
    workorders.report_fault(session, actor=CLI, device_id=DEVICE_A, description="dark", now=local(9))
    policy = WebhookPolicy(url="http://127.0.0.1:9/unreachable", max_attempts=2, retry_base=timedelta(0))
    for minute in (13, 14, 15, 16):
        run_operations(session, webhook=policy, now=local(12, minute))

    delivery = session.exec(select(WebhookDelivery)).one()

    assert delivery.attempts == 2 and delivery.next_at is None and delivery.delivered_at is None
    assert delivery.last_error
