"""A gateway that stops syncing makes its devices "unknown", not offline, in every read."""

from datetime import timedelta

import pytest
from sqlmodel import Session

from cloud import crud, registry
from cloud.models import Device, Gateway, utcnow
from tests.cloud.helpers import DEVICE_A, DEVICE_C, record


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


def _age_gateway(session: Session, gateway_id: str, seconds: float) -> None:
    session.rollback()
    gateway = session.get(Gateway, gateway_id)
    gateway.last_sync_at = utcnow() - timedelta(seconds=seconds)
    session.add(gateway)
    session.commit()


def _presence(client, world, device):
    return client.get(f"/api/v1/devices/{device}", headers=world.user("county")).json()


def test_devices_of_a_silent_gateway_are_unknown(client, world, sync, session):
    birth = record(1, "birth", role="sensor", fw="1.0", app="1.0")
    assert sync([birth]).json()["confirmed"] == [1]
    assert sync([record(1, "will", DEVICE_C)], school="s2").json()["confirmed"] == [1]

    fresh = _presence(client, world, DEVICE_A)
    offline = _presence(client, world, DEVICE_C)
    _age_gateway(session, world.gateway_ids["s1"], 121)
    _age_gateway(session, world.gateway_ids["s2"], 121)
    stale = _presence(client, world, DEVICE_A)
    stale_offline = _presence(client, world, DEVICE_C)
    listed = {d["id"]: d["presence"] for d in client.get("/api/v1/devices", headers=world.user("county")).json()}

    assert (fresh["presence"], fresh["reported_presence"]) == ("online", "online")
    assert offline["presence"] == "offline"
    assert (stale["presence"], stale["reported_presence"]) == ("unknown", "online")
    assert stale_offline["presence"] == "unknown"
    assert listed == {DEVICE_A: "unknown", DEVICE_C: "unknown"}

    assert sync([]).status_code == 200
    assert _presence(client, world, DEVICE_A)["presence"] == "online"


def test_device_never_synced_is_unknown_and_threshold_is_a_setting(world, session):
    session.rollback()
    registry.create_device(session, actor=crud.Actor.cli("t"), fields={"id": DEVICE_A, "school_code": "s1"})
    device = session.get(Device, DEVICE_A)
    gateway = session.get(Gateway, world.gateway_ids["s1"])
    gateway.last_sync_at = utcnow() - timedelta(seconds=30)
    device.presence = "online"
    session.add_all([gateway, device])
    session.commit()

    assert registry.device_views(session, [device], stale_after=timedelta(seconds=60))[0].presence == "online"
    assert registry.device_views(session, [device], stale_after=timedelta(seconds=10))[0].presence == "unknown"
