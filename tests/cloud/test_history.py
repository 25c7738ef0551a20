"""Health history: samples, hourly roll-ups with late arrivals, retention, and the maintenance run."""

import argparse
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from cloud import cli, crud, registry
from cloud.core.config import Settings
from cloud.main import create_app, maintenance_once
from cloud.models import AuditEntry, HealthHourly, HealthSample, SyncRecordIn, TelemetrySample, utcnow
from cloud.sync import apply_sync_batch
from tests.cloud.helpers import DEVICE_A, DEVICE_B, TS, record

HOUR = 3600


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


def health(gseq, device=DEVICE_A, *, ts, heap, rssi=-60, boot="0badf00d"):
    return record(gseq, "health", device, boot=boot, ts=ts, uptime_s=int(ts - TS), heap_free=heap, rssi=rssi)


def _hourly(session: Session) -> dict[tuple[str, float], HealthHourly]:
    session.rollback()
    return {(row.device_id, row.hour.timestamp()): row for row in session.exec(select(HealthHourly))}


def test_rollup_sums_up_whole_hours_and_picks_up_late_samples(sync, session):
    current = utcnow().timestamp()
    sync([health(1, ts=TS + 60, heap=1000, rssi=-70), health(2, ts=TS + 120, heap=3000, rssi=-50)])
    sync([health(3, ts=current, heap=500), health(4, DEVICE_B, ts=TS + 10, heap=10, boot="00000002")])

    session.rollback()
    written = crud.rollup_health(session)
    session.commit()

    rows = _hourly(session)
    assert written == 2
    assert set(rows) == {(DEVICE_A, TS), (DEVICE_B, TS)}, "the current hour is not whole yet"
    first = rows[(DEVICE_A, TS)]
    assert (first.samples, first.boots, first.heap_free_min, first.heap_free_avg) == (2, 1, 1000, 2000.0)
    assert (first.rssi_min, first.rssi_avg, first.uptime_max, first.school_code) == (-70, -60.0, 120, "s1")

    sync([health(5, ts=TS + 300, heap=100, boot="00000009")])
    session.rollback()
    crud.rollup_health(session)
    session.commit()
    late = _hourly(session)[(DEVICE_A, TS)]
    assert (late.samples, late.boots, late.heap_free_min) == (3, 2, 100)

    session.rollback()
    crud.rollup_health(session, before=utcnow() + timedelta(hours=1))
    session.commit()
    assert len(_hourly(session)) == 3


def test_prune_keeps_samples_until_rolled_up_and_past_retention(sync, session, client, world):
    sync([health(1, ts=TS, heap=1), record(2, "telemetry", ts=TS, readings={"co2": 400})])
    late = datetime.fromtimestamp(TS, UTC) + timedelta(days=40)
    session.rollback()

    health_pruned, telemetry_pruned, _ = crud.prune_history(
        session, sample_retention=timedelta(days=31), rollup_retention=timedelta(days=400), now=late
    )
    assert (health_pruned, telemetry_pruned) == (0, 1)
    session.commit()

    report = crud.run_maintenance(
        session,
        actor=crud.Actor.cli("t"),
        sample_retention=timedelta(days=31),
        rollup_retention=timedelta(days=400),
        now=late,
    )

    assert report.rolled_up_hours == 1
    assert report.pruned_health_samples == 1
    session.rollback()
    assert session.exec(select(func.count()).select_from(HealthSample)).one() == 0
    assert session.exec(select(func.count()).select_from(TelemetrySample)).one() == 0
    assert len(_hourly(session)) == 1
    entry = session.exec(select(AuditEntry).where(AuditEntry.action == "maintenance")).one()
    assert entry.summary["pruned_health_samples"] == 1
    history = client.get(f"/api/v1/devices/{DEVICE_A}/health/hourly", headers=world.user("admin1")).json()
    assert [row["samples"] for row in history] == [1]


def test_history_reads_follow_tenancy(client, world, sync):
    sync([health(1, ts=TS, heap=5), record(2, "telemetry", ts=TS, readings={"co2": 400})])

    own = client.get(f"/api/v1/devices/{DEVICE_A}/health", headers=world.user("admin1"))
    other = client.get(f"/api/v1/devices/{DEVICE_A}/health", headers=world.user("admin2"))
    telemetry = client.get(
        f"/api/v1/devices/{DEVICE_A}/telemetry",
        params={"since": "2026-01-01T00:00:00", "until": "2026-01-02T00:00:00"},
        headers=world.user("county"),
    )

    assert [s["heap_free"] for s in own.json()] == [5]
    assert other.status_code == 404
    assert [s["readings"] for s in telemetry.json()] == [{"co2": 400}]


def test_alarms_are_listed_within_scope(client, world, sync):
    sync([record(1, "alarm", code="sensor_fault", state="raise", ts=TS)])
    sync([record(1, "alarm", DEVICE_B, code="offline", state="clear", ts=TS + 5)], school="s2")

    county = client.get("/api/v1/alarms", headers=world.user("county")).json()
    admin = client.get("/api/v1/alarms?state=raise", headers=world.user("admin1")).json()
    refused = client.get("/api/v1/alarms?school=s2", headers=world.user("admin1"))

    assert [a["code"] for a in county["items"]] == ["offline", "sensor_fault"]
    assert (admin["total"], admin["items"][0]["device_id"]) == (1, DEVICE_A)
    assert refused.status_code == 403


def test_maintenance_command_and_background_run(sqlite_url, capsys, settings, engine, world, sync):
    sync([health(1, ts=TS, heap=1)])
    maintenance_once(engine, settings)
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(HealthHourly)).one() == 1

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="part"))
    args = parser.parse_args(["cloud", "maintenance", "--database-url", sqlite_url])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["rolled_up_hours"] == 0


def test_the_app_runs_maintenance_on_its_own(database_url):
    settings = Settings(database_url=database_url, maintenance_interval_s=0.05)
    with TestClient(create_app(settings)) as client:
        engine = client.app.state.engine
        with Session(engine) as session:
            registry.create_school(session, actor=crud.Actor.cli("t"), code="s1", name="S1")
            gateway, _ = registry.create_gateway(session, actor=crud.Actor.cli("t"), school_code="s1")
            apply_sync_batch(
                session, gateway=gateway, records=[SyncRecordIn.model_validate(health(1, ts=TS, heap=1))]
            )
        deadline = time.monotonic() + 10
        rolled = 0
        while time.monotonic() < deadline and not rolled:
            time.sleep(0.05)
            with Session(engine) as session:
                rolled = session.exec(select(func.count()).select_from(HealthHourly)).one()
    assert rolled == 1
