"""Work orders: every action against every status and role, SLA clocks with pending time and holidays,
auto-assignment, faults reported by staff, journal entries and photos. SQLite and PostgreSQL."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from cloud import calendars, crud, registry, workorders
from cloud.core import security
from cloud.core.config import Settings
from cloud.crud import Actor
from cloud.main import create_app
from cloud.models import User
from cloud.workorders import teams
from tests.cloud.helpers import CLI, DEVICE_A, DEVICE_B, PASSWORD, DatabasePool, record, seed_places

API = "/api/v1"
ZONE = ZoneInfo("Asia/Shanghai")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PEOPLE = ("county", "admin1", "tech", "tech2", "boss", "auditor")
STATUSES = ("new", "assigned", "accepted", "in_progress", "pending", "resolved", "closed", "cancelled")
# How an order (reported by admin1, auto-assigned to tech) is brought to each status.
PATHS: dict[str, tuple[str, ...]] = {
    "new": (),
    "assigned": (),
    "accepted": ("accept",),
    "in_progress": ("accept", "start"),
    "pending": ("accept", "pending"),
    "resolved": ("accept", "resolve"),
    "closed": ("accept", "resolve", "close"),
    "cancelled": ("cancel",),
}
BODIES = {
    "assign": {"assignee": "tech2"},
    "pending": {"reason": "waiting for a relay"},
    "resolve": {"notes": "replaced"},
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


def _user(session: Session, name: str) -> User:
    user = session.exec(select(User).where(User.username == name)).one()
    return user


def _seed_devices(sync) -> None:
    assert (
        sync(
            [
                record(1, "birth", DEVICE_A, role="blackboard", fw="1", app="1"),
                record(2, "birth", DEVICE_B, role="sensor", fw="1", app="1"),
            ]
        ).status_code
        == 200
    )


def make_order(session: Session, status: str, device: str = DEVICE_A, fault: str = "manual") -> int:
    admin = _user(session, "admin1")
    order = workorders.report_fault(
        session, actor=Actor.of_user(admin), device_id=device, description="screen dark", fault_code=fault
    )
    assert order.id is not None and order.status == "assigned"
    if order.assignee_id != _user(session, "tech").id:
        workorders.transition(session, actor=CLI, order_id=order.id, action="assign", assignee="tech")
    if status == "new":
        order.status, order.assignee_id = "new", None
        session.add(order)
        session.commit()
    for action in PATHS[status]:
        workorders.transition(session, actor=CLI, order_id=order.id, action=action, **BODIES.get(action, {}))
    session.refresh(order)
    assert order.status == status
    return order.id


def may(person: str, action: str, status: str) -> bool | None:
    """True if allowed, False if refused for the role, None if refused for the status."""
    role_ok = {
        "county": True,
        "admin1": action in ("close", "reopen", "cancel"),
        "tech": action in ("accept", "start", "pending", "resume", "resolve") and status != "new",
        "tech2": False,
        "boss": action == "assign",
        "auditor": False,
    }[person]
    if not role_ok:
        return False
    return status in workorders.TRANSITIONS[action][0] or None


@dataclass
class Machine:
    client: TestClient
    session: Session
    tokens: dict[str, str]

    def user(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def machine(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Machine]:
    """One app for the whole state machine: orders are made fresh for each case."""
    pool: DatabasePool | None = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('machine') / 'cloud.db'}"
    else:
        pool = request.getfixturevalue("postgres_pool")
        name = pool.take()
        url = pool.url(name)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(security, "BCRYPT_ROUNDS", 4)
        settings = Settings(database_url=url, maintenance_interval_s=0, operations_interval_s=0)
        with TestClient(create_app(settings)) as client, Session(client.app.state.engine) as session:
            seed_places(session)
            tokens = {}
            for code in ("s1", "s2"):
                registry.create_school(session, actor=CLI, code=code, name=code, district_code="d1")
            registry.create_device(
                session, actor=CLI, fields={"id": DEVICE_A, "school_code": "s1", "role": "blackboard"}
            )
            people = {
                "county": ("county_admin", None),
                "admin1": ("school_admin", "s1"),
                "admin2": ("school_admin", "s2"),
                "tech": ("technician", None),
                "tech2": ("technician", None),
                "boss": ("contractor_manager", None),
                "auditor": ("auditor", None),
            }
            for username, (role, school) in people.items():
                user = crud.create_user(
                    session, actor=CLI, username=username, password=PASSWORD, role=role, school_code=school
                )
                tokens[username], _ = crud.create_auth_token(session, user=user, ttl=timedelta(hours=2))
            team = teams.create_team(session, actor=CLI, name="Fixers", districts=["d1"], device_roles=["blackboard"])
            assert team.id is not None
            for username in ("tech", "tech2", "boss"):
                teams.add_team_member(session, actor=CLI, team_id=team.id, username=username)
            yield Machine(client=client, session=session, tokens=tokens)
    if pool is not None:
        pool.give_back(name)


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("action", tuple(workorders.TRANSITIONS))
def test_state_machine(machine: Machine, action, status):
    session = machine.session
    shared = make_order(session, status, fault=f"{action}-{status}")
    for person in PEOPLE:
        expected = may(person, action, status)
        order_id = make_order(session, status, fault=f"{action}-{status}-{person}") if expected else shared
        response = machine.client.post(
            f"{API}/work-orders/{order_id}/actions",
            json={"action": action, **BODIES.get(action, {})},
            headers=machine.user(person),
        )
        if expected:
            assert response.status_code == 200, f"{person} {action} {status}: {response.text}"
            target = workorders.TRANSITIONS[action][1]
            assert response.json()["status"] == target, response.json()
        elif expected is None:
            assert response.status_code == 422, f"{person} {action} {status}: {response.text}"
            assert status in response.json()["detail"][0]["msg"]
        else:
            assert response.status_code in (403, 404), f"{person} {action} {status}: {response.text}"
            assert response.json()["detail"]


def test_school_admin_cancels_only_own_reports_and_technician_only_own_orders(client, session, crew, sync):
    _seed_devices(sync)
    order_id = make_order(session, "assigned")
    admin2_view = client.get(f"{API}/work-orders/{order_id}", headers=crew.user("admin2"))
    workorders.transition(session, actor=CLI, order_id=order_id, action="assign", assignee="tech2")

    tech_view = client.get(f"{API}/work-orders/{order_id}", headers=crew.user("tech"))
    tech2_view = client.get(f"{API}/work-orders/{order_id}", headers=crew.user("tech2"))
    tech2_devices = client.get(f"{API}/devices", headers=crew.user("tech2")).json()
    tech_devices = client.get(f"{API}/devices", headers=crew.user("tech")).json()

    assert admin2_view.status_code == 404
    assert tech_view.status_code == 404
    assert tech2_view.status_code == 200
    assert [d["id"] for d in tech2_devices] == [DEVICE_A]
    assert tech_devices == []


def test_missing_reason_or_notes_and_foreign_assignee_are_refused(client, session, crew, sync):
    _seed_devices(sync)
    order_id = make_order(session, "accepted")
    outsider = _user(session, "county")
    assert outsider.id

    no_reason = client.post(
        f"{API}/work-orders/{order_id}/actions", json={"action": "pending"}, headers=crew.user("tech")
    )
    no_notes = client.post(
        f"{API}/work-orders/{order_id}/actions", json={"action": "resolve"}, headers=crew.user("tech")
    )
    not_tech = client.post(
        f"{API}/work-orders/{order_id}/actions",
        json={"action": "assign", "assignee": "admin1"},
        headers=crew.user("boss"),
    )

    assert no_reason.status_code == 422 and "reason" in no_reason.json()["detail"][0]["msg"]
    assert no_notes.status_code == 422 and "notes" in no_notes.json()["detail"][0]["msg"]
    assert not_tech.status_code == 422 and "not a technician" in not_tech.json()["detail"][0]["msg"]


def test_auto_assignment_picks_the_least_loaded_covering_technician(client, session, crew, sync):
    _seed_devices(sync)
    first, second, third = (
        workorders.report_fault(session, actor=CLI, device_id=DEVICE_A, description="x", fault_code=code)
        for code in ("a", "b", "c")
    )
    tech, tech2 = _user(session, "tech"), _user(session, "tech2")

    assert [o.assignee_id for o in (first, second, third)] == [tech.id, tech2.id, tech.id]
    assert {o.team_id for o in (first, second, third)} == {crew.team_id}


def test_no_covering_team_leaves_the_order_new(client, session, crew, sync):
    _seed_devices(sync)
    teams.update_team(session, actor=CLI, team_id=crew.team_id, device_roles=["sensor"])

    board = workorders.report_fault(session, actor=CLI, device_id=DEVICE_A, description="dark")
    sensor_order = workorders.report_fault(session, actor=CLI, device_id=DEVICE_B, description="no readings")

    assert (board.status, board.team_id, board.assignee_id) == ("new", None, None)
    assert sensor_order.status == "assigned" and sensor_order.team_id == crew.team_id


def _local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), ZONE).astimezone(UTC)


def test_sla_clocks_pause_while_pending_and_skip_holidays_and_count_make_up_days(client, session, crew, sync):
    _seed_devices(sync)
    calendars.set_calendar(
        session,
        actor=CLI,
        scope="d1",
        day_start="08:00",
        day_end="18:00",
        weekdays=[1, 2, 3, 4, 5],
        holidays=[date(2026, 1, 12)],
        school_days=[date(2026, 1, 10)],
    )
    friday, saturday, tuesday = date(2026, 1, 9), date(2026, 1, 10), date(2026, 1, 13)
    start = _local(friday, 16)
    order = workorders.report_fault(
        session, actor=CLI, device_id=DEVICE_A, description="dark", impact="high", urgency="high", now=start
    )
    assert order.priority == 1
    # P1: 1 service hour to own, 4 to resolve; Friday 16:00 + 4 h = Saturday (make-up day) 10:00.
    assert order.own_due_at == _local(friday, 17)
    assert order.own_warn_at == _local(friday, 16, 48)
    assert order.resolve_due_at == _local(saturday, 10)

    workorders.transition(session, actor=CLI, order_id=order.id, action="accept", now=_local(friday, 16, 30))
    workorders.transition(session, actor=CLI, order_id=order.id, action="start", now=_local(friday, 16, 40))
    workorders.transition(
        session, actor=CLI, order_id=order.id, action="pending", reason="part", now=_local(friday, 17)
    )
    # Pending from Friday 17:00 to Tuesday 09:00: 1 h Friday + 10 h Saturday + 0 Sunday/holiday Monday + 1 h.
    resumed = workorders.transition(session, actor=CLI, order_id=order.id, action="resume", now=_local(tuesday, 9))
    assert resumed.pending_service_s == 12 * 3600
    assert resumed.resolve_due_at == _local(tuesday, 12)
    done = workorders.transition(
        session, actor=CLI, order_id=order.id, action="resolve", notes="fixed", now=_local(tuesday, 11, 30)
    )
    own, resolve = workorders.sla_elapsed(session, done, _local(tuesday, 11, 30))

    assert (done.own_met, done.resolve_met) == (True, True)
    assert own == 30 * 60
    assert resolve == 3.5 * 3600


def test_missing_the_deadline_is_recorded(client, session, crew, sync):
    _seed_devices(sync)
    monday = date(2026, 1, 5)
    order = workorders.report_fault(session, actor=CLI, device_id=DEVICE_A, description="x", now=_local(monday, 9))
    # P3 (medium x medium): 4 h to own.
    late = workorders.transition(session, actor=CLI, order_id=order.id, action="accept", now=_local(monday, 14))

    assert late.own_met is False


def test_priority_matrix():
    expected = {"high": (1, 2, 3), "medium": (2, 3, 4), "low": (3, 4, 4)}
    for impact, row in expected.items():
        assert tuple(workorders.priority_of(impact, urgency) for urgency in ("high", "medium", "low")) == row


def test_manual_report_with_photo_journal_and_download(client, session, crew, sync):
    _seed_devices(sync)

    created = client.post(
        f"{API}/fault-reports",
        data={"device_id": DEVICE_A, "description": "the board flickers", "urgency": "high"},
        files={"photo": ("board.png", PNG, "image/png")},
        headers=crew.user("admin1"),
    )
    order = created.json()
    order_id, photo = order["id"], order["attachments"][0]
    client.post(f"{API}/work-orders/{order_id}/comments", json={"text": "on my way"}, headers=crew.user("tech"))
    client.post(f"{API}/work-orders/{order_id}/parts", json={"part": "relay", "quantity": 2}, headers=crew.user("tech"))
    client.post(f"{API}/work-orders/{order_id}/time", json={"minutes": 45}, headers=crew.user("tech"))
    detail = client.get(f"{API}/work-orders/{order_id}", headers=crew.user("county")).json()
    own = client.get(f"{API}/work-orders/{order_id}/attachments/{photo['id']}", headers=crew.user("tech"))
    other = client.get(f"{API}/work-orders/{order_id}/attachments/{photo['id']}", headers=crew.user("admin2"))

    assert created.status_code == 201, created.text
    assert (order["source"], order["priority"], order["assignee"], order["reporter_id"]) == ("manual", 2, "tech", 2)
    assert own.status_code == 200 and own.content == PNG and own.headers["content-type"] == "image/png"
    assert other.status_code == 404
    assert detail["parts"] == {"relay": 2} and detail["time_spent_min"] == 45
    assert [e["kind"] for e in detail["events"]] == ["status", "status", "attachment", "comment", "part", "time"]


def test_bad_photos_are_refused(client, session, crew, sync, settings):
    _seed_devices(sync)
    settings.max_attachment_bytes = 1024
    order_id = make_order(session, "assigned")

    for payload, status in ((b"GIF89a not allowed", 422), (b"", 422), (PNG + b"\x00" * 2048, 413)):
        response = client.post(
            f"{API}/work-orders/{order_id}/attachments", files={"file": ("x.png", payload)}, headers=crew.user("tech")
        )

        assert response.status_code == status, response.text
        assert response.json()["detail"]


def test_duplicate_report_and_reports_by_other_roles_are_refused(client, session, crew, sync):
    _seed_devices(sync)
    form = {"device_id": DEVICE_A, "description": "dark"}
    first = client.post(f"{API}/fault-reports", data=form, headers=crew.user("admin1"))
    again = client.post(f"{API}/fault-reports", data=form, headers=crew.user("admin1"))
    by_tech = client.post(f"{API}/fault-reports", data=form, headers=crew.user("tech"))
    other_school = client.post(f"{API}/fault-reports", data=form, headers=crew.user("admin2"))

    assert first.status_code == 201
    assert again.status_code == 409 and str(first.json()["id"]) in again.json()["detail"]
    assert by_tech.status_code in (403, 404)
    assert other_school.status_code == 404


def test_reprioritising_moves_the_deadlines(client, session, crew, sync):
    _seed_devices(sync)
    order_id = make_order(session, "assigned")
    before = client.get(f"{API}/work-orders/{order_id}", headers=crew.user("county")).json()

    changed = client.patch(
        f"{API}/work-orders/{order_id}", json={"impact": "high", "urgency": "high"}, headers=crew.user("boss")
    )
    refused = client.patch(f"{API}/work-orders/{order_id}", json={"impact": "low"}, headers=crew.user("tech"))

    assert changed.status_code == 200 and changed.json()["priority"] == 1
    assert changed.json()["resolve_due_at"] < before["resolve_due_at"]
    assert refused.status_code == 403


def test_list_filters_and_team_views(client, session, crew, sync):
    _seed_devices(sync)
    make_order(session, "assigned", fault="a")
    make_order(session, "resolved", fault="b")

    open_orders = client.get(f"{API}/work-orders?status=assigned&status=accepted", headers=crew.user("boss")).json()
    team = client.get(f"{API}/teams/{crew.team_id}", headers=crew.user("boss")).json()
    others = client.get(f"{API}/teams", headers=crew.user("admin1"))

    assert open_orders["total"] == 1
    assert team["districts"] == ["d1"] and {m["username"] for m in team["members"]} == {"tech", "tech2", "boss"}
    assert others.status_code == 403
