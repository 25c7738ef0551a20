"""Who may read which devices and attendance events, in the routes and in the data layer."""

from datetime import UTC, datetime

import pytest
from sqlmodel import Session

from cloud import crud, registry
from cloud.errors import AccessDenied, NotFound
from tests.cloud.helpers import DEVICE_A, DEVICE_B, DEVICE_C, TS, tap


@pytest.fixture
def taps(sync, world):
    """Two taps at s1 (devices A and B), one at s2 (device C)."""
    assert sync([tap(1, DEVICE_A), tap(2, DEVICE_B, ts=TS + 10)], school="s1").json()["rejected"] == []
    assert sync([tap(1, DEVICE_C, ts=TS + 20)], school="s2").json()["rejected"] == []


def _events(client, world, user, **params):
    return client.get("/api/v1/attendance-events", params=params, headers=world.user(user))


def test_school_admin_sees_only_their_school(client, world, taps):
    devices = client.get("/api/v1/devices", headers=world.user("admin1")).json()
    events = _events(client, world, "admin1").json()

    assert [d["id"] for d in devices] == [DEVICE_A, DEVICE_B]
    assert {d["school_code"] for d in devices} == {"s1"}
    assert events["total"] == 2
    assert {e["school_code"] for e in events["items"]} == {"s1"}


def test_school_admin_asking_for_another_school_is_refused(client, world, taps):
    assert client.get("/api/v1/devices?school=s2", headers=world.user("admin1")).status_code == 403
    assert _events(client, world, "admin1", school="s2").status_code == 403
    other = client.get(f"/api/v1/devices/{DEVICE_C}", headers=world.user("admin1"))
    assert other.status_code == 404


@pytest.mark.parametrize("user", ["county", "auditor"])
def test_county_roles_see_every_device_but_no_raw_attendance(client, world, taps, user):
    assert len(client.get("/api/v1/devices", headers=world.user(user)).json()) == 3
    assert len(client.get("/api/v1/devices?school=s2", headers=world.user(user)).json()) == 1
    refused = _events(client, world, user)
    assert refused.status_code == 403
    assert "personal data" in refused.json()["detail"]
    assert "/attendance/daily" in refused.json()["detail"]


def test_technician_may_not_read_attendance(client, world, taps):
    response = _events(client, world, "tech")

    assert response.status_code == 403
    assert "personal data" in response.json()["detail"]


def test_technician_sees_no_devices_until_work_orders_exist(client, world, taps):
    assert client.get("/api/v1/devices", headers=world.user("tech")).json() == []
    assert client.get(f"/api/v1/devices/{DEVICE_A}", headers=world.user("tech")).status_code == 404
    assert client.get("/api/v1/devices?school=s1", headers=world.user("tech")).status_code == 403


def test_data_layer_enforces_the_scope_itself(client, world, taps, session: Session):
    session.rollback()  # a snapshot from before the syncs would hide their rows
    admin = crud.get_user_by_username(session, username="admin2")
    county = crud.get_user_by_username(session, username="county")
    technician = crud.get_user_by_username(session, username="tech")

    items, total = crud.list_attendance_events(session, user=admin)

    assert total == 1
    assert [item.device_id for item in items] == [DEVICE_C]
    for reader in (technician, county):
        with pytest.raises(AccessDenied):
            crud.list_attendance_events(session, user=reader)
    with pytest.raises(AccessDenied):
        registry.list_devices(session, user=admin, school_code="s1")
    with pytest.raises(NotFound):
        registry.create_building(session, actor=crud.Actor.of_user(admin), school_code="s1", name="B")


def test_attendance_filters_and_pages(client, world, taps):
    page = _events(client, world, "admin1", limit=1, offset=1).json()
    since = _events(client, world, "admin1", since=datetime.fromtimestamp(TS + 10, UTC).isoformat()).json()
    naive_utc = datetime.fromtimestamp(TS + 10, UTC).replace(tzinfo=None).isoformat()
    naive = _events(client, world, "admin1", since=naive_utc).json()
    by_device = _events(client, world, "admin1", device=DEVICE_B).json()

    assert page["total"] == 2
    assert [e["device_id"] for e in page["items"]] == [DEVICE_B]
    assert since["total"] == 1
    assert naive["total"] == 1
    assert [e["device_id"] for e in by_device["items"]] == [DEVICE_B]
    item = by_device["items"][0]
    assert set(item) == {
        "device_id",
        "boot_id",
        "seq",
        "ts",
        "card_pseudonym",
        "historical",
        "received_at",
        "school_code",
    }
    assert datetime.fromisoformat(item["ts"]) == datetime.fromtimestamp(TS + 10, UTC)


@pytest.mark.parametrize("limit", [0, 10_001])
def test_attendance_page_size_is_bounded(client, world, limit):
    assert _events(client, world, "admin1", limit=limit).status_code == 422


def test_device_detail(client, world, taps):
    response = client.get(f"/api/v1/devices/{DEVICE_A}", headers=world.user("admin1"))
    missing = client.get("/api/v1/devices/esp32-000000000000", headers=world.user("county"))

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == DEVICE_A
    assert body["presence"] == "unknown"
    assert datetime.fromisoformat(body["last_seen_at"]) == datetime.fromtimestamp(TS, UTC)
    assert missing.status_code == 404
