"""The asset registry: cities, districts, schools, buildings, classrooms, gateways and devices."""

import pytest

from cloud import crud, registry
from tests.cloud.helpers import CLI, DEVICE_A, DEVICE_C, PASSWORD, tap

API = "/api/v1"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


def _post(client, world, user, path, body):
    return client.post(f"{API}{path}", json=body, headers=world.user(user))


def _room(client, world, user="admin1", school="s1", building="Main", room="101"):
    b = _post(client, world, user, "/buildings", {"school_code": school, "name": building})
    assert b.status_code == 201, b.text
    r = _post(client, world, user, "/classrooms", {"building_id": b.json()["id"], "name": room, "grade": 3})
    assert r.status_code == 201, r.text
    return b.json(), r.json()


def test_hierarchy_from_city_to_device(client, world):
    building, room = _room(client, world)
    device = _post(
        client,
        world,
        "admin1",
        "/devices",
        {
            "id": DEVICE_A,
            "school_code": "s1",
            "classroom_id": room["id"],
            "model": "CO-Board 2",
            "vendor": "Acme",
            "serial": "SN-1",
            "asset_tag": "A-0001",
            "purchase_date": "2025-09-01",
            "warranty_end": "2028-08-31",
            "fw": "1.2.0",
            "role": "sensor",
        },
    )

    assert device.status_code == 201, device.text
    body = device.json()
    assert (body["classroom_id"], body["asset_tag"], body["warranty_end"]) == (
        room["id"],
        "A-0001",
        "2028-08-31",
    )
    assert body["presence"] == "unknown"
    assert client.get(f"{API}/schools/s1", headers=world.user("county")).json()["district_code"] == "d1"
    assert [d["code"] for d in client.get(f"{API}/districts?city=c1", headers=world.user("admin1")).json()] == ["d1"]
    listed = client.get(f"{API}/devices?classroom={room['id']}", headers=world.user("county"))
    assert [d["id"] for d in listed.json()] == [DEVICE_A]
    assert listed.headers["x-total-count"] == "1"
    assert client.get(f"{API}/classrooms?building={building['id']}", headers=world.user("admin1")).json() == [room]


def test_device_updates_bind_move_and_clear(client, world):
    _, room = _room(client, world)
    _post(client, world, "county", "/devices", {"id": DEVICE_A, "school_code": "s1", "asset_tag": "T1"})

    bound = client.patch(f"{API}/devices/{DEVICE_A}", json={"classroom_id": room["id"]}, headers=world.user("admin1"))
    cleared = client.patch(f"{API}/devices/{DEVICE_A}", json={"asset_tag": None}, headers=world.user("admin1"))
    moved_by_admin = client.patch(f"{API}/devices/{DEVICE_A}", json={"school_code": "s2"}, headers=world.user("admin1"))
    moved = client.patch(f"{API}/devices/{DEVICE_A}", json={"school_code": "s2"}, headers=world.user("county"))

    assert bound.json()["classroom_id"] == room["id"]
    assert cleared.json()["asset_tag"] is None
    assert moved_by_admin.status_code == 403
    assert (moved.json()["school_code"], moved.json()["classroom_id"]) == ("s2", None)


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"classroom_id": 999}, 422, "not a classroom of school s1"),
        ({"purchase_date": "2026-01-01", "warranty_end": "2025-01-01"}, 422, "warranty_end is before"),
        ({"asset_tag": "TAKEN"}, 409, "already on device"),
        ({"role": "toaster"}, 422, "role"),
        ({"purchase_date": "yesterday"}, 422, "date"),
        ({"unknown": 1}, 422, "extra"),
    ],
)
def test_device_changes_that_break_a_rule_are_refused(client, world, change, status, words):
    _post(client, world, "county", "/devices", {"id": DEVICE_A, "school_code": "s1"})
    _post(client, world, "county", "/devices", {"id": DEVICE_C, "school_code": "s1", "asset_tag": "TAKEN"})

    response = client.patch(f"{API}/devices/{DEVICE_A}", json=change, headers=world.user("admin1"))

    assert response.status_code == status, response.text
    assert words in str(response.json()["detail"]).lower() or words in str(response.json()["detail"])


def test_device_of_the_registry_keeps_its_school_when_another_gateway_syncs_it(client, world, sync):
    _post(client, world, "county", "/devices", {"id": DEVICE_A, "school_code": "s1"})

    body = sync([tap(1, DEVICE_A)], school="s2").json()

    assert [r["reason"] for r in body["rejected"]] == ["foreign_device"]


def test_things_in_use_cannot_be_deleted_and_empty_ones_can(client, world, sync):
    building, room = _room(client, world)
    assert sync([tap(1, DEVICE_A)]).json()["confirmed"] == [1]
    client.patch(f"{API}/devices/{DEVICE_A}", json={"classroom_id": room["id"]}, headers=world.user("admin1"))
    headers = world.user("admin1")

    assert client.delete(f"{API}/buildings/{building['id']}", headers=headers).status_code == 409
    assert client.delete(f"{API}/classrooms/{room['id']}", headers=headers).status_code == 409
    in_use = client.delete(f"{API}/devices/{DEVICE_A}", headers=headers)
    assert in_use.status_code == 409
    assert "still referred to" in in_use.json()["detail"]
    assert client.delete(f"{API}/schools/s1", headers=world.user("county")).status_code == 409

    client.patch(f"{API}/devices/{DEVICE_A}", json={"classroom_id": None}, headers=headers)
    assert client.delete(f"{API}/classrooms/{room['id']}", headers=headers).status_code == 204
    assert client.delete(f"{API}/buildings/{building['id']}", headers=headers).status_code == 204
    assert client.get(f"{API}/buildings/{building['id']}", headers=headers).status_code == 404


def test_duplicate_names_conflict(client, world):
    _room(client, world)

    again = _post(client, world, "admin1", "/buildings", {"school_code": "s1", "name": "Main"})
    school = _post(client, world, "county", "/schools", {"code": "s1", "name": "Again"})

    assert again.status_code == 409
    assert school.status_code == 409


def test_district_county_admin_sees_and_changes_only_their_district(client, world, session):
    registry.create_district(session, actor=CLI, code="d2", city_code="c1", name="District 2")
    registry.create_school(session, actor=CLI, code="s3", name="School 3", district_code="d2")
    crud.create_user(session, actor=CLI, username="county2", password=PASSWORD, role="county_admin", district_code="d2")
    token = client.post(f"{API}/auth/login", json={"username": "county2", "password": PASSWORD}).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}

    schools = client.get(f"{API}/schools", headers=headers).json()
    created = client.post(f"{API}/schools", json={"code": "s4", "name": "School 4"}, headers=headers)
    elsewhere = client.post(f"{API}/schools", json={"code": "s5", "name": "S5", "district_code": "d1"}, headers=headers)
    foreign = client.get(f"{API}/schools/s1", headers=headers)
    city = client.post(f"{API}/cities", json={"code": "c9", "name": "C9"}, headers=headers)

    assert [s["code"] for s in schools] == ["s3"]
    assert (created.status_code, created.json()["district_code"]) == (201, "d2")
    assert elsewhere.status_code == 403
    assert foreign.status_code == 404
    assert city.status_code == 403
    assert [s["code"] for s in client.get(f"{API}/schools", headers=world.user("county")).json()] == [
        "s1",
        "s2",
        "s3",
        "s4",
    ]


def test_city_and_district_lifecycle_by_a_city_wide_admin(client, world):
    headers = world.user("county")

    assert client.post(f"{API}/cities", json={"code": "c2", "name": "City 2"}, headers=headers).status_code == 201
    district = client.post(f"{API}/districts", json={"code": "d9", "city_code": "c2", "name": "D9"}, headers=headers)
    renamed = client.patch(f"{API}/districts/d9", json={"name": "District 9"}, headers=headers)
    in_use = client.delete(f"{API}/cities/c2", headers=headers)

    assert district.status_code == 201
    assert renamed.json()["name"] == "District 9"
    assert in_use.status_code == 409
    assert client.delete(f"{API}/districts/d9", headers=headers).status_code == 204
    assert client.delete(f"{API}/cities/c2", headers=headers).status_code == 204
    assert client.get(f"{API}/cities/c2", headers=headers).status_code == 404


def test_gateways_are_listed_with_staleness_and_tokens_rotate(client, world, sync):
    sync([])
    headers = world.user("county")

    listed = {g["id"]: g for g in client.get(f"{API}/gateways", headers=headers).json()}
    rotated = client.post(f"{API}/gateways/{world.gateway_ids['s1']}/token", headers=headers)

    assert listed[world.gateway_ids["s1"]]["stale"] is False
    assert listed[world.gateway_ids["s2"]]["stale"] is True
    assert "token_hash" not in listed[world.gateway_ids["s1"]]
    assert rotated.status_code == 200
    assert sync([]).status_code == 401
    new = client.post(
        f"{API}/gateway/sync",
        json={"records": []},
        headers={"Authorization": f"Bearer {rotated.json()['token']}"},
    )
    assert new.status_code == 200
    created = _post(client, world, "county", "/gateways", {"school_code": "s2", "name": "spare"})
    assert created.status_code == 201
    assert created.json()["gateway_id"].startswith("gw-s2-")


def test_school_update_checks_time_zone_and_district(client, world):
    headers = world.user("county")

    bad_zone = client.patch(f"{API}/schools/s1", json={"timezone": "Mars/Olympus"}, headers=headers)
    no_district = client.patch(f"{API}/schools/s1", json={"district_code": "nope"}, headers=headers)
    no_name = client.patch(f"{API}/schools/s1", json={"name": None}, headers=headers)
    ok = client.patch(f"{API}/schools/s1", json={"name": "No. 1 Primary"}, headers=headers)

    assert bad_zone.status_code == 422
    assert "time zone" in bad_zone.json()["detail"][0]["msg"]
    assert no_district.status_code == 404
    assert no_name.status_code == 422
    assert ok.json()["name"] == "No. 1 Primary"
