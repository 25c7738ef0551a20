"""Commands fanned out to devices, the gateway's long-poll downlink, acks and command_status turning into
states, expiry, and desired against reported configuration. SQLite and PostgreSQL."""

import asyncio
import json
import threading
import time
from datetime import timedelta

import pytest
from sqlmodel import select

from cloud.crud import run_operations
from cloud.models import Command, utcnow
from tests.cloud.helpers import DEVICE_A, DEVICE_B, DEVICE_C, record

API = "/api/v1"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def devices(sync, client, world):
    """s1: blackboards A and B, sensor C; s2: blackboard D."""
    births = [
        record(1, "birth", DEVICE_A, role="blackboard", fw="1", app="1", config_version=3),
        record(2, "birth", DEVICE_B, role="blackboard", fw="1", app="1"),
        record(3, "birth", DEVICE_C, role="sensor", fw="1", app="1"),
    ]
    assert sync(births).json()["confirmed"] == [1, 2, 3]
    assert sync([record(1, "birth", "esp32-aabbccddee0d", role="blackboard", fw="1", app="1")], "s2").status_code == 200


def downlink(client, world, school="s1", **params):
    return client.get(f"{API}/gateway/downlink", params=params, headers=world.gateway(school))


def test_a_county_wide_blackboard_command_fans_out_one_per_blackboard(client, world, devices):
    sent = client.post(
        f"{API}/commands",
        json={"target": {"county": True}, "name": "power_off", "args": {}},
        headers=world.user("county"),
    )
    batch = sent.json()

    assert sent.status_code == 201, sent.text
    assert batch["devices"] == 3 and batch["states"]["queued"] == 3
    assert batch["target"] == {"county": True, "role": "blackboard"}
    s1 = downlink(client, world).json()
    assert sorted(c["device"] for c in s1["commands"]) == [DEVICE_A, DEVICE_B]
    assert all(len(c["cid"]) == 32 and c["name"] == "power_off" for c in s1["commands"])
    assert downlink(client, world).json()["commands"] == [], "a command is handed out once"
    states = client.get(f"{API}/commands/{batch['id']}", headers=world.user("county")).json()["states"]
    assert (states["sent"], states["queued"]) == (2, 1)
    admin1 = client.get(f"{API}/commands/{batch['id']}", headers=world.user("admin1")).json()
    assert {c["device_id"] for c in admin1["commands"]} == {DEVICE_A, DEVICE_B}


def test_ack_and_command_status_drive_the_states(client, world, devices, sync):
    batch = client.post(
        f"{API}/commands", json={"target": {"school": "s1"}, "name": "ping"}, headers=world.user("admin1")
    ).json()
    commands = {c["device"]: c["cid"] for c in downlink(client, world).json()["commands"]}
    assert set(commands) == {DEVICE_A, DEVICE_B, DEVICE_C}
    records = [
        {
            "gseq": 10,
            "kind": "command_status",
            "device": DEVICE_A,
            "ts": time.time(),
            "body": {"cid": commands[DEVICE_A], "state": "delivered"},
        },
        record(11, "ack", DEVICE_A, cid=commands[DEVICE_A], result="ok"),
        record(12, "ack", DEVICE_B, cid=commands[DEVICE_B], result="rejected", detail="not for this role"),
        {
            "gseq": 13,
            "kind": "command_status",
            "device": None,
            "ts": time.time(),
            "body": {"cid": commands[DEVICE_C], "state": "delivered"},
        },
        {
            "gseq": 14,
            "kind": "command_status",
            "device": DEVICE_C,
            "ts": time.time(),
            "body": {"cid": commands[DEVICE_C], "state": "done"},
        },
    ]

    result = sync(records).json()
    view = client.get(f"{API}/commands/{batch['id']}", headers=world.user("admin1")).json()
    by_device = {c["device_id"]: c for c in view["commands"]}

    assert result["confirmed"] == [10, 11, 12, 13] and [r["gseq"] for r in result["rejected"]] == [14]
    assert by_device[DEVICE_A]["state"] == "succeeded" and by_device[DEVICE_A]["delivered_at"]
    assert (by_device[DEVICE_B]["state"], by_device[DEVICE_B]["detail"]) == ("failed", "not for this role")
    assert by_device[DEVICE_C]["state"] == "delivered"
    assert view["states"] == {"queued": 0, "sent": 0, "delivered": 1, "succeeded": 1, "failed": 1, "expired": 0}


def test_another_schools_gateway_cannot_ack_or_take_commands(client, world, devices, sync):
    client.post(
        f"{API}/commands", json={"target": {"device": DEVICE_A}, "name": "reboot"}, headers=world.user("county")
    )

    assert downlink(client, world, "s2").json()["commands"] == []
    cid = downlink(client, world).json()["commands"][0]["cid"]
    sync(
        [
            {
                "gseq": 5,
                "kind": "command_status",
                "device": None,
                "ts": time.time(),
                "body": {"cid": cid, "state": "delivered"},
            }
        ],
        "s2",
    )

    assert client.get(f"{API}/commands", headers=world.user("county")).json()[0]["states"]["sent"] == 1


def test_the_downlink_waits_until_a_command_is_queued(client, world, devices):
    answer: dict = {}

    def poll() -> None:
        started = time.monotonic()
        answer["response"] = downlink(client, world, wait=10)
        answer["took"] = time.monotonic() - started

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.8)
    client.post(f"{API}/commands", json={"target": {"device": DEVICE_C}, "name": "ping"}, headers=world.user("admin1"))
    poller.join(timeout=15)

    assert [c["device"] for c in answer["response"].json()["commands"]] == [DEVICE_C]
    assert 0.8 <= answer["took"] < 5


def test_a_downlink_whose_gateway_has_gone_leaves_the_commands_queued(client, world, devices):
    """A long-poll whose gateway disconnected (stopped, or gave up waiting) must not mark commands sent:
    no one would relay them. It ends at once; the gateway's next poll gets them."""
    client.post(f"{API}/commands", json={"target": {"device": DEVICE_C}, "name": "ping"}, headers=world.user("admin1"))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": f"{API}/gateway/downlink", "raw_path": f"{API}/gateway/downlink".encode(), "root_path": "",
        "query_string": b"wait=10", "server": ("cloud", 80), "client": ("127.0.0.1", 50000),
        "headers": [(b"host", b"cloud"), *((k.lower().encode(), v.encode()) for k, v in world.gateway("s1").items())],
    }
    sent: list[dict] = []

    async def gone() -> dict:
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    async def poll() -> None:
        await asyncio.wait_for(client.app(scope, gone, send), timeout=8)

    started = time.monotonic()
    asyncio.run(poll())

    assert time.monotonic() - started < 5
    assert sent[0]["status"] == 200 and json.loads(sent[1]["body"])["commands"] == []
    assert [c["device"] for c in downlink(client, world).json()["commands"]] == [DEVICE_C]


def test_an_empty_downlink_returns_after_the_wait(client, world, devices):
    started = time.monotonic()
    empty = downlink(client, world, wait=1).json()

    assert empty == {"commands": [], "configs": [], "config_cursor": 0}
    assert 0.9 <= time.monotonic() - started < 4


def test_bad_downlink_parameters_are_422(client, world):
    for params in ({"wait": 31}, {"wait": -1}, {"config_cursor": -1}, {"wait": "soon"}):
        assert downlink(client, world, **params).status_code == 422, params


def test_unanswered_commands_expire(client, world, devices, session):
    client.post(
        f"{API}/commands",
        json={"target": {"device": DEVICE_A}, "name": "ping", "ttl_s": 10},
        headers=world.user("admin1"),
    )
    downlink(client, world)
    report = run_operations(session, now=utcnow() + timedelta(seconds=11))

    assert report.expired_commands == 1
    assert session.exec(select(Command.state)).all() == ["expired"]
    assert downlink(client, world).json()["commands"] == []


def test_a_late_ok_ack_replaces_an_assumed_expiry(client, world, devices, session, sync):
    client.post(
        f"{API}/commands",
        json={"target": {"device": DEVICE_A}, "name": "ping", "ttl_s": 10},
        headers=world.user("admin1"),
    )
    cid = downlink(client, world).json()["commands"][0]["cid"]
    run_operations(session, now=utcnow() + timedelta(seconds=11))
    sync([record(20, "ack", DEVICE_A, cid=cid, result="ok")])
    session.expire_all()

    assert session.exec(select(Command.state)).all() == ["succeeded"]


def test_commands_that_are_held_are_not_handed_out_early(client, world, devices):
    later = (utcnow() + timedelta(hours=1)).isoformat()
    client.post(
        f"{API}/commands",
        json={"target": {"school": "s1", "role": "blackboard"}, "name": "power_off", "send_at": later},
        headers=world.user("admin1"),
    )

    assert downlink(client, world).json()["commands"] == []


REFUSED = (
    ("admin1", {"target": {"school": "s2"}, "name": "ping"}, 404),
    ("admin1", {"target": {"district": "d1"}, "name": "ping"}, 403),
    ("tech", {"target": {"device": DEVICE_A}, "name": "ping"}, 404),
    ("auditor", {"target": {"device": DEVICE_A}, "name": "ping"}, 403),
    ("county", {"target": {"device": DEVICE_A}, "name": "format_disk"}, 422),
    ("county", {"target": {"device": DEVICE_C}, "name": "power_on"}, 422),
    ("county", {"target": {"device": DEVICE_C, "school": "s1"}, "name": "ping"}, 422),
    ("county", {"target": {}, "name": "ping"}, 422),
    ("county", {"target": {"classroom": 10**12}, "name": "ping"}, 422),
    ("county", {"target": {"device": DEVICE_A}, "name": "ping", "ttl_s": 1}, 422),
    ("county", {"target": {"device": DEVICE_A}, "name": "ping", "args": []}, 422),
)


def test_commands_that_may_not_be_sent(client, world, devices):
    for person, body, status in REFUSED:
        response = client.post(f"{API}/commands", json=body, headers=world.user(person))

        assert response.status_code == status, (person, body, response.text)
        assert response.json()["detail"]


def test_desired_config_goes_down_and_reported_version_comes_back(client, world, devices, sync):
    before = client.get(f"{API}/devices/{DEVICE_A}/config", headers=world.user("admin1")).json()
    first = client.put(
        f"{API}/devices/{DEVICE_A}/config", json={"values": {"health_s": 30}}, headers=world.user("admin1")
    )
    client.put(f"{API}/devices/{DEVICE_B}/config", json={"values": {"health_s": 60}}, headers=world.user("county"))
    second = client.put(
        f"{API}/devices/{DEVICE_A}/config", json={"values": {"health_s": 45}}, headers=world.user("admin1")
    )

    all_configs = downlink(client, world).json()
    since = downlink(client, world, config_cursor=2).json()
    caught_up = downlink(client, world, config_cursor=all_configs["config_cursor"]).json()
    sync([record(30, "birth", DEVICE_A, role="blackboard", fw="1", app="1", config_version=5)])
    after = client.get(f"{API}/devices/{DEVICE_A}/config", headers=world.user("admin1")).json()

    assert (before["desired_version"], before["reported_version"], before["in_sync"]) == (None, 3, True)
    assert first.json()["desired_version"] == 4 and second.json()["desired_version"] == 5
    assert [(c["device"], c["version"]) for c in all_configs["configs"]] == [(DEVICE_B, 1), (DEVICE_A, 5)]
    assert all_configs["config_cursor"] == 3
    assert [c["values"] for c in since["configs"]] == [{"health_s": 45}]
    assert caught_up["configs"] == [] and caught_up["config_cursor"] == 3
    assert after == after | {"desired_version": 5, "reported_version": 5, "in_sync": True}
    assert (
        client.put(f"{API}/devices/{DEVICE_A}/config", json={"values": {}}, headers=world.user("admin2")).status_code
        == 404
    )
    assert (
        client.put(f"{API}/devices/{DEVICE_A}/config", json={"values": {}}, headers=world.user("auditor")).status_code
        == 403
    )
    assert (
        client.put(f"{API}/devices/{DEVICE_A}/config", json={"values": []}, headers=world.user("county")).status_code
        == 422
    )
