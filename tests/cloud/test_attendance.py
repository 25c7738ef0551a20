"""Attendance: per-classroom daily counts for everyone in reach, rosters for the school's own admins."""

import pytest

from cloud import crud, registry
from tests.cloud.helpers import CLI, DEVICE_A, DEVICE_B, TS, tap

API = "/api/v1"
# TS is 2026-01-01T00:00Z, which is 08:00 on 1 January in Asia/Shanghai.


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def classroom(world, session, sync):
    building = registry.create_building(session, actor=CLI, school_code="s1", name="Main")
    room = registry.create_classroom(
        session, actor=CLI, building_id=building.id, name="101", grade=3, class_label="3-2"
    )
    registry.create_classroom(session, actor=CLI, building_id=building.id, name="102")
    batch = [
        tap(1, DEVICE_A, card="p-1"),
        tap(2, DEVICE_A, card="p-1", ts=TS + 60),
        tap(3, DEVICE_A, card="p-2", ts=TS + 120),
        tap(4, DEVICE_A, card="p-3", ts=TS + 17 * 3600),  # 01:00 on 2 January in Shanghai
        tap(5, DEVICE_B, card="p-4"),
    ]
    assert sync(batch).json()["rejected"] == []
    registry.update_device(session, actor=CLI, device_id=DEVICE_A, changes={"classroom_id": room.id})
    for n, card in enumerate(("p-1", "p-2", "p-5", "p-6"), start=1):
        crud.create_roster_entry(
            session,
            actor=CLI,
            school_code="s1",
            fields={"card_pseudonym": card, "person_name": f"Pupil {n}", "classroom_id": room.id},
        )
    return room


@pytest.mark.parametrize("user", ["county", "auditor", "admin1"])
def test_daily_counts_per_classroom_in_the_school_time_zone(client, world, classroom, user):
    response = client.get(
        f"{API}/attendance/daily", params={"school": "s1", "date": "2026-01-01"}, headers=world.user(user)
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["school_code"], body["date"], body["timezone"]) == ("s1", "2026-01-01", "Asia/Shanghai")
    rooms = {(r["building"], r["classroom"]): r for r in body["classrooms"]}
    first = rooms[("Main", "101")]
    assert (first["present"], first["taps"], first["enrolled"], first["rate"]) == (2, 3, 4, 0.5)
    assert (first["grade"], first["class_label"]) == (3, "3-2")
    assert rooms[("Main", "102")]["present"] == 0
    assert rooms[(None, None)]["present"] == 1, "taps at devices bound to no classroom"
    assert "card_pseudonym" not in str(body)


def test_daily_counts_of_another_day_and_out_of_reach(client, world, classroom):
    next_day = client.get(f"{API}/attendance/daily?school=s1&date=2026-01-02", headers=world.user("county")).json()
    assert [r["present"] for r in next_day["classrooms"] if r["classroom"] == "101"] == [1]

    assert client.get(f"{API}/attendance/daily?school=s1", headers=world.user("admin2")).status_code == 403
    assert client.get(f"{API}/attendance/daily?school=s1", headers=world.user("tech")).status_code == 403
    assert client.get(f"{API}/attendance/daily?school=nope", headers=world.user("county")).status_code == 404
    assert client.get(f"{API}/attendance/daily?school=s1&date=01/01", headers=world.user("county")).status_code == 422
    assert client.get(f"{API}/attendance/daily", headers=world.user("county")).status_code == 422


def test_roster_is_for_the_school_admins_only(client, world, classroom):
    own = client.get(f"{API}/schools/s1/roster", headers=world.user("admin1"))

    assert own.status_code == 200
    assert {e["card_pseudonym"] for e in own.json()} == {"p-1", "p-2", "p-5", "p-6"}
    for user in ("county", "auditor", "tech", "admin2"):
        response = client.get(f"{API}/schools/s1/roster", headers=world.user(user))
        assert response.status_code == 403, user
        assert "personal data" in response.json()["detail"]
    write = client.post(
        f"{API}/schools/s1/roster",
        json={"card_pseudonym": "x", "person_name": "X"},
        headers=world.user("county"),
    )
    assert write.status_code == 403


def test_roster_entry_lifecycle(client, world, classroom):
    headers = world.user("admin1")
    body = {
        "card_pseudonym": "p-9",
        "person_name": "Han Meimei",
        "person_no": "2024009",
        "class_label": "3-2",
    }

    created = client.post(f"{API}/schools/s1/roster", json=body, headers=headers)
    duplicate = client.post(f"{API}/schools/s1/roster", json=body, headers=headers)
    entry_id = created.json()["id"]
    replaced = client.put(
        f"{API}/schools/s1/roster/{entry_id}", json={**body, "classroom_id": classroom.id}, headers=headers
    )
    wrong_room = client.put(f"{API}/schools/s1/roster/{entry_id}", json={**body, "classroom_id": 999}, headers=headers)
    other_school = client.delete(f"{API}/schools/s2/roster/{entry_id}", headers=world.user("admin2"))

    assert created.status_code == 201
    assert duplicate.status_code == 409
    assert replaced.json()["classroom_id"] == classroom.id
    assert wrong_room.status_code == 422
    assert other_school.status_code == 404
    assert client.delete(f"{API}/schools/s1/roster/{entry_id}", headers=headers).status_code == 204


def test_roster_import_from_csv(client, world, classroom, session):
    csv = (
        "card_pseudonym,person_name,person_no,class_label,building,classroom\n"
        "p-1,Renamed Pupil,1,3-2,Main,101\n"
        "p-10,New Pupil,10,3-2,Main,101\n"
        ",Nobody,,,,\n"
        "p-11,Lost Pupil,,,Main,999\n"
        "p-10,Twice,,,,\n"
    )

    dry = client.post(
        f"{API}/schools/s1/roster/import",
        params={"dry_run": True},
        files={"file": ("roster.csv", csv.encode())},
        headers=world.user("admin1"),
    ).json()
    real = client.post(
        f"{API}/schools/s1/roster/import",
        files={"file": ("roster.csv", csv.encode())},
        headers=world.user("admin1"),
    ).json()
    refused = client.post(
        f"{API}/schools/s1/roster/import",
        files={"file": ("roster.csv", csv.encode())},
        headers=world.user("county"),
    )

    assert (dry["created"], dry["updated"], dry["dry_run"]) == (1, 1, True)
    assert (real["created"], real["updated"]) == (1, 1)
    assert [(p["row"], p["column"]) for p in real["errors"]] == [
        (4, "card_pseudonym"),
        (5, "classroom"),
        (6, "card_pseudonym"),
    ]
    assert refused.status_code == 403
    names = {
        e["card_pseudonym"]: e["person_name"]
        for e in client.get(f"{API}/schools/s1/roster", headers=world.user("admin1")).json()
    }
    assert (names["p-1"], names["p-10"]) == ("Renamed Pupil", "New Pupil")
