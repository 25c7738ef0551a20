"""POST /api/v1/gateway/sync: idempotent, record-by-record, confined to the gateway's school.

Every test here runs on SQLite and, where a server is reachable, on PostgreSQL.
"""

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlmodel import Session, func, select

from cloud.models import (
    Alarm,
    AttendanceEvent,
    CommandAck,
    Device,
    Gateway,
    HealthSample,
    IngestedRecord,
    SyncRecordIn,
    TelemetrySample,
)
from cloud.sync import apply_sync_batch
from tests.cloud.helpers import BOOT, DEVICE_A, DEVICE_B, DEVICE_C, TS, record, tap


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


def _count(session: Session, table) -> int:
    session.rollback()
    return session.exec(select(func.count()).select_from(table)).one()


def test_same_batch_twice_is_confirmed_twice_and_applied_once(sync, session, world):
    batch = [tap(1), tap(2, seq=2, card="p-2"), record(3, "health", uptime_s=5, heap_free=1000)]

    first = sync(batch)
    second = sync(batch)

    assert first.status_code == 200, first.text
    assert second.status_code == 200, second.text
    expected = {"gateway_id": world.gateway_ids["s1"], "confirmed": [1, 2, 3], "rejected": []}
    assert first.json() == expected
    assert second.json() == expected
    assert _count(session, AttendanceEvent) == 2
    assert _count(session, IngestedRecord) == 3


def test_device_replay_under_a_new_gseq_is_one_event(sync, session):
    assert sync([tap(1, seq=7)]).json()["confirmed"] == [1]

    replay = tap(2, seq=7)
    replay["body"]["hist"] = True
    response = sync([replay])

    assert response.json()["confirmed"] == [2]
    assert _count(session, AttendanceEvent) == 1
    event = session.exec(select(AttendanceEvent)).one()
    assert (event.device_id, event.boot_id, event.seq, event.historical) == (DEVICE_A, BOOT, 7, False)
    assert event.card_pseudonym == "p-1"
    assert event.school_code == "s1"
    assert event.ts.timestamp() == TS


def test_device_of_another_school_is_rejected_as_foreign(sync, session):
    assert sync([tap(1, DEVICE_A)], school="s1").json()["confirmed"] == [1]

    response = sync([tap(1, DEVICE_A), tap(2, DEVICE_B)], school="s2")

    body = response.json()
    session.rollback()
    assert body["confirmed"] == [2]
    assert [(r["gseq"], r["reason"]) for r in body["rejected"]] == [(1, "foreign_device")]
    assert session.get(Device, DEVICE_A).school_code == "s1"
    assert session.get(Device, DEVICE_B).school_code == "s2"
    assert _count(session, AttendanceEvent) == 2


def test_invalid_records_are_rejected_and_good_ones_beside_them_confirmed(sync, session):
    bad_device = tap(2, "esp32-NOTHEX")
    no_card = record(4, "attendance", DEVICE_B)
    bad_boot = tap(5, DEVICE_C, boot="xyz")
    unknown_kind = record(6, "firmware-update")
    bad_ts = tap(7, ts="yesterday")
    no_seq = tap(9)
    no_seq["seq"] = None
    bad_body = record(10, "health")
    bad_body["body"] = ["not", "an", "object"]
    batch = [tap(1), bad_device, tap(3, DEVICE_B), no_card, bad_boot, unknown_kind, bad_ts, tap(8), no_seq]

    response = sync([*batch, bad_body])

    assert response.status_code == 200, response.text
    session.rollback()
    body = response.json()
    assert body["confirmed"] == [1, 3, 8]
    reasons = {r["gseq"]: r["reason"] for r in body["rejected"]}
    assert reasons == {
        2: "bad_field",
        4: "missing_field",
        5: "bad_field",
        6: "unknown_kind",
        7: "bad_field",
        9: "missing_field",
        10: "bad_field",
    }
    assert all(r["detail"] for r in body["rejected"])
    assert _count(session, AttendanceEvent) == 3
    assert session.get(Device, DEVICE_C) is None


def test_presence_follows_birth_will_and_gateway_presence(sync, session):
    birth = record(1, "birth", role="attendance", fw="1.2.0", app="0.3.1", reset="power", health_s=60)
    stale_will = record(2, "will", boot="00000001", ts=TS + 1)
    health = record(3, "health", ts=TS + 60, uptime_s=60, heap_free=90000, heap_max_block=40000, errors={})

    assert sync([birth, stale_will, health]).json()["confirmed"] == [1, 2, 3]
    session.rollback()
    device = session.get(Device, DEVICE_A)
    assert (device.presence, device.boot_id, device.role, device.fw, device.app) == (
        "online",
        BOOT,
        "attendance",
        "1.2.0",
        "0.3.1",
    )
    assert device.presence_since.timestamp() == TS
    assert device.last_seen_at.timestamp() == TS + 60
    assert device.last_health == {"uptime_s": 60, "heap_free": 90000, "heap_max_block": 40000, "errors": {}}

    assert sync([record(4, "will", ts=TS + 100)]).json()["confirmed"] == [4]
    session.rollback()
    device = session.get(Device, DEVICE_A)
    assert device.presence == "offline"
    assert device.presence_since.timestamp() == TS + 100

    assert sync([record(5, "presence", boot=None, ts=TS + 200, state="online")]).json()["confirmed"] == [5]
    session.rollback()
    assert session.get(Device, DEVICE_A).presence == "online"


def test_gateway_progress_is_recorded(sync, session, world):
    sync([tap(5), tap(3), record(4, "telemetry", readings={"co2": 600})])
    session.rollback()

    gateway = session.get(Gateway, world.gateway_ids["s1"])
    assert gateway.last_gateway_seq == 5
    assert gateway.last_sync_at is not None
    assert _count(session, IngestedRecord) == 3


def test_alarms_and_acks_are_stored_in_their_own_tables(sync, session, world):
    alarm = record(1, "alarm", code="offline_in_class", state="raise", detail="no health for 3 periods")
    ack = record(2, "ack", cid="c-1", result="ok")
    bad_alarm = record(3, "alarm", code="x", state="maybe")
    replayed_alarm = record(4, "alarm", seq=1, code="offline_in_class", state="raise", hist=True)

    body = sync([alarm, ack, bad_alarm, replayed_alarm]).json()

    assert body["confirmed"] == [1, 2, 4]
    assert body["rejected"][0]["gseq"] == 3
    session.rollback()
    stored = session.exec(select(Alarm)).one()
    assert (stored.device_id, stored.code, stored.state, stored.detail) == (
        DEVICE_A,
        "offline_in_class",
        "raise",
        "no health for 3 periods",
    )
    assert (stored.school_code, stored.gateway_id, stored.historical) == (
        "s1",
        world.gateway_ids["s1"],
        False,
    )
    acked = session.exec(select(CommandAck)).one()
    assert (acked.cid, acked.result, acked.seq) == ("c-1", "ok", 2)


def test_health_and_telemetry_become_history(sync, session):
    health = record(1, "health", ts=TS + 125, uptime_s=60, heap_free=90000, heap_max_block=40000, rssi=-61)
    telemetry = record(2, "telemetry", readings={"co2_ppm": 812, "temp_c": 18.5}, faults={"pm25": "i2c"})
    bad_reading = record(3, "telemetry", readings={"co2_ppm": "high"})
    bad_heap = record(4, "health", heap_free=1.5)

    body = sync([health, telemetry, bad_reading, bad_heap, health]).json()

    assert body["confirmed"] == [1, 2]
    assert {r["gseq"]: r["reason"] for r in body["rejected"]} == {3: "bad_field", 4: "bad_field"}
    session.rollback()
    sample = session.exec(select(HealthSample)).one()
    assert (sample.uptime_s, sample.heap_free, sample.heap_max_block, sample.rssi) == (60, 90000, 40000, -61)
    assert sample.hour.timestamp() == TS
    reading = session.exec(select(TelemetrySample)).one()
    assert reading.readings == {"co2_ppm": 812, "temp_c": 18.5}
    assert reading.faults == {"pm25": "i2c"}


def test_a_gseq_repeated_inside_a_batch_is_answered_once(sync, session):
    body = sync([tap(1), tap(1)]).json()

    assert body["confirmed"] == [1]
    assert _count(session, AttendanceEvent) == 1


def test_sync_needs_a_gateway_token(client, world):
    batch = {"records": [tap(1)], "sent_at": TS}

    missing = client.post("/api/v1/gateway/sync", json=batch)
    wrong = client.post("/api/v1/gateway/sync", json=batch, headers={"Authorization": "Bearer nope"})
    user = client.post("/api/v1/gateway/sync", json=batch, headers=world.user("county"))

    assert [r.status_code for r in (missing, wrong, user)] == [401, 401, 401]
    assert missing.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("gseq", [0, -1, "1", 1.5, True, None])
def test_record_without_a_usable_gseq_fails_the_batch(sync, gseq):
    bad = tap(1)
    bad["gseq"] = gseq

    response = sync([tap(2), bad])

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:3] == ["body", "records", 1]


def test_concurrent_copies_of_a_batch_count_once(engine, session, world):
    records = [SyncRecordIn.model_validate(tap(n, DEVICE_A if n % 2 else DEVICE_B)) for n in range(1, 201)]

    def push(_: int) -> list[int]:
        with Session(engine) as own:
            gateway = own.get(Gateway, world.gateway_ids["s1"])
            return apply_sync_batch(own, gateway=gateway, records=records).confirmed

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(push, range(4)))

    assert all(confirmed == list(range(1, 201)) for confirmed in results)
    assert _count(session, AttendanceEvent) == 200
    assert _count(session, IngestedRecord) == 200


def test_empty_batch_is_a_heartbeat(sync, session, world):
    response = sync([])

    assert response.json() == {"gateway_id": world.gateway_ids["s1"], "confirmed": [], "rejected": []}
    session.rollback()
    assert session.get(Gateway, world.gateway_ids["s1"]).last_sync_at is not None


def test_alarms_of_the_gateways_edge_rules_are_stored_once(sync, session, world, client):
    raised = record(1, "gateway_alarm", boot=None, seq=None, code="sensor_fault:pm25", state="raise", detail="i2c")
    cleared = record(2, "gateway_alarm", boot=None, seq=None, code="sensor_fault:pm25", state="clear")
    bad = record(3, "gateway_alarm", boot=None, seq=None, code="x", state="sometimes")

    first = sync([raised, cleared, bad]).json()
    again = sync([raised, cleared]).json()

    assert first["confirmed"] == again["confirmed"] == [1, 2]
    assert [r["gseq"] for r in first["rejected"]] == [3]
    session.rollback()
    alarms = session.exec(select(Alarm).order_by(Alarm.seq)).all()
    assert [(a.source, a.state, a.seq) for a in alarms] == [("gateway", "raise", 1), ("gateway", "clear", 2)]
    assert alarms[0].boot_id.startswith("g") and len(alarms[0].boot_id) == 8
    assert session.get(Device, DEVICE_A).last_seen_at is None
    listed = client.get("/api/v1/alarms", headers=world.user("admin1")).json()
    assert [a["source"] for a in listed["items"]] == ["gateway", "gateway"]
