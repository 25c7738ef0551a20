"""The audit log: every write through the API, the CLI and gateway sync, and who may read it."""

from datetime import timedelta

import pytest
from sqlmodel import Session, select

from cloud import crud, registry
from cloud.models import AuditEntry
from tests.cloud.helpers import CLI, DEVICE_A, PASSWORD, tap

API = "/api/v1"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


def _entries(session: Session, **where) -> list[AuditEntry]:
    session.rollback()
    statement = select(AuditEntry).order_by(AuditEntry.id)
    for name, value in where.items():
        statement = statement.where(getattr(AuditEntry, name) == value)
    return list(session.exec(statement))


def test_api_writes_record_who_what_and_from_where(client, world, session):
    headers = {**world.user("admin1"), "X-Forwarded-For": "10.9.8.7"}
    building = client.post(f"{API}/buildings", json={"school_code": "s1", "name": "Main"}, headers=headers).json()
    client.patch(f"{API}/buildings/{building['id']}", json={"name": "East"}, headers=headers)
    client.delete(f"{API}/buildings/{building['id']}", headers=headers)

    entries = _entries(session, entity="building")

    assert [(e.action, e.actor_kind, e.actor, e.school_code, e.district_code) for e in entries] == [
        ("create", "user", "admin1", "s1", "d1"),
        ("update", "user", "admin1", "s1", "d1"),
        ("delete", "user", "admin1", "s1", "d1"),
    ]
    assert entries[1].summary == {"name": ["Main", "East"]}
    assert entries[0].client_ip == "testclient", "X-Forwarded-For is ignored unless trusted"
    assert all(e.entity_id == str(building["id"]) for e in entries)


def test_refused_writes_leave_no_entry(client, world, session):
    before = len(_entries(session))
    client.post(f"{API}/buildings", json={"school_code": "s1", "name": "Main"}, headers=world.user("auditor"))
    client.post(f"{API}/buildings", json={"school_code": "s2", "name": "Main"}, headers=world.user("admin1"))

    assert len(_entries(session)) == before


def test_one_entry_per_sync_batch_and_none_for_heartbeats_and_replays(sync, session, world):
    batch = [tap(n) for n in range(1, 11)]
    sync(batch)
    sync(batch)
    sync([])

    entries = _entries(session, action="sync")

    assert len(entries) == 1
    entry = entries[0]
    assert (entry.actor_kind, entry.actor, entry.school_code) == ("gateway", world.gateway_ids["s1"], "s1")
    assert entry.summary == {
        "records": 10,
        "new": 10,
        "rejected": 0,
        "kinds": {"attendance": 10},
        "gseq": [1, 10],
    }


def test_cli_and_login_are_recorded(client, world, session):
    login = client.post(f"{API}/auth/login", json={"username": "admin1", "password": PASSWORD})
    client.post(f"{API}/auth/logout", headers={"Authorization": f"Bearer {login.json()['access_token']}"})

    cli_school = _entries(session, entity="school", entity_id="s1")
    logins = _entries(session, entity="user", actor="admin1")

    assert [(e.action, e.actor_kind, e.actor) for e in cli_school] == [("create", "cli", CLI.name)]
    assert [e.action for e in logins][-2:] == ["login", "logout"]


def test_audit_log_readers(client, world, session):
    registry.create_district(session, actor=CLI, code="d2", city_code="c1", name="D2")
    registry.create_school(session, actor=CLI, code="s9", name="S9", district_code="d2")
    crud.create_user(session, actor=CLI, username="aud1", password=PASSWORD, role="auditor", district_code="d1")
    auditor = crud.get_user_by_username(session, username="aud1")
    token, _ = crud.create_auth_token(session, user=auditor, ttl=timedelta(hours=1))

    city_wide = client.get(f"{API}/audit-log?entity=school", headers=world.user("auditor")).json()
    district = client.get(f"{API}/audit-log?entity=school", headers={"Authorization": f"Bearer {token}"}).json()

    assert {e["entity_id"] for e in city_wide["items"]} == {"s1", "s2", "s9"}
    assert {e["entity_id"] for e in district["items"]} == {"s1", "s2"}
    assert city_wide["items"][0]["entity_id"] == "s9", "newest first"
    for user in ("admin1", "tech"):
        assert client.get(f"{API}/audit-log", headers=world.user(user)).status_code == 403
    assert client.get(f"{API}/audit-log", headers=world.user("county")).status_code == 200


def test_audit_log_has_no_write_routes(client, world):
    headers = world.user("county")
    for method in ("post", "put", "patch", "delete"):
        assert getattr(client, method)(f"{API}/audit-log", headers=headers).status_code == 405


def test_roster_changes_are_audited_without_personal_data(client, world, session):
    body = {"card_pseudonym": "p-secret", "person_name": "Li Lei", "person_no": "2024001"}
    client.post(f"{API}/schools/s1/roster", json=body, headers=world.user("admin1"))

    entry = _entries(session, entity="roster_entry")[0]

    assert "p-secret" not in str(entry.summary) and "Li Lei" not in str(entry.summary)
    assert entry.summary == {"fields": ["card_pseudonym", "person_name", "person_no"]}


def test_device_update_summary_is_a_diff(client, world, session):
    client.post(f"{API}/devices", json={"id": DEVICE_A, "school_code": "s1"}, headers=world.user("county"))
    client.patch(f"{API}/devices/{DEVICE_A}", json={"model": "X", "serial": None}, headers=world.user("county"))

    update = _entries(session, entity="device", action="update")[0]

    assert update.summary == {"model": [None, "X"]}
