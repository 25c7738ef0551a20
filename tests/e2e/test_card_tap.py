"""A card tap travels from the real firmware through Mosquitto and the gateway into the cloud, exactly once,
even when the gateway is killed and the broker restarted along the way."""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from gateway.privacy import card_pseudonym
from simulator.school import VirtualSchool
from simulator.stack import CloudServer, GatewayProcess, Mosquitto, http_json, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCHOOL = "S001"
TAPS_PER_PHASE = 6
DEADLINE_S = 90.0


class County:
    """Broker, cloud and one school's gateway as real processes, torn down whatever happens."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.secret = secrets.token_hex(16)
        self.broker = Mosquitto(root / "broker")
        self.cloud = CloudServer(root / "cloud")
        self.gateway: GatewayProcess | None = None
        self.school = VirtualSchool(root / "devices", school=SCHOOL, broker_port=self.broker.port,
                                    devices=2, health_s=2, seed=7)
        self.token = ""

    def start(self) -> None:
        self.broker.start()
        self.cloud.start()
        self.cloud.add_school(SCHOOL, "No. 1 Primary")
        self.cloud.add_user("admin1", "school-pass-123", "school_admin", SCHOOL)
        creds = self.cloud.add_gateway(SCHOOL)
        self.gateway = GatewayProcess(self.root / "gateway", school=SCHOOL, school_secret=self.secret,
                                      broker_port=self.broker.port, cloud_url=self.cloud.url,
                                      cloud_token=creds["token"])
        self.gateway.start()
        self.token = self.cloud.login("admin1", "school-pass-123")

    def stop(self) -> None:
        self.school.stop()
        for part in (self.gateway, self.cloud, self.broker):
            if part is not None:
                part.stop()

    def api(self, path: str) -> object:
        status, body = http_json("GET", self.cloud.url + path, token=self.token)
        assert status == 200, (path, status, body)
        return body

    def events(self) -> list[dict]:
        body = self.api("/api/v1/attendance-events?limit=10000")
        assert isinstance(body, dict)
        return list(body["items"])

    def settled(self, after: float) -> bool:
        """True once every device has reported an empty event buffer since `after` and the gateway has
        nothing left for the cloud: from then on no event can still be on its way."""
        assert self.gateway is not None
        with sqlite3.connect(f"file:{self.gateway.db_path}?mode=ro", uri=True) as db:
            backlog = db.execute("SELECT COUNT(*) FROM record WHERE sync_state = 0").fetchone()[0]
            rows = db.execute(
                "SELECT device, body FROM record WHERE kind = 'health' AND ts > ? ORDER BY gseq", (after,)
            ).fetchall()
        latest = {device: json.loads(body)["buffered"] for device, body in rows}
        drained = all(latest.get(d.device_id) == 0 for d in self.school.devices)
        return backlog == 0 and drained

    def devices_online(self) -> bool:
        listed = self.api(f"/api/v1/devices?school={SCHOOL}")
        assert isinstance(listed, list)
        online = {d["id"] for d in listed if d["presence"] == "online"}
        return online >= {d.device_id for d in self.school.devices}


@pytest.fixture
def county(tmp_path: Path):
    c = County(tmp_path)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def tap_round(county: County) -> None:
    for i in range(TAPS_PER_PHASE):
        device = county.school.devices[i % len(county.school.devices)]
        assert county.school.tap(device.device_id), f"{device.device_id} did not take the tap"


def test_every_tap_arrives_exactly_once_through_gateway_kill_and_broker_restart(county: County) -> None:
    county.school.start()
    county.school.wait_ready(timeout=DEADLINE_S)
    wait_for(county.devices_online, DEADLINE_S, "both devices online in the cloud", interval=0.25)

    tap_round(county)

    assert county.gateway is not None
    county.gateway.kill()
    tap_round(county)
    county.gateway.start()
    tap_round(county)

    county.broker.stop()
    tap_round(county)
    county.broker.start()
    tap_round(county)

    expected = Counter(
        (device, card_pseudonym(county.secret, card)) for device, card, _ in county.school.ledger.taps
    )
    assert sum(expected.values()) == 5 * TAPS_PER_PHASE

    def arrived() -> bool:
        return len(county.events()) >= sum(expected.values())

    wait_for(arrived, DEADLINE_S, "every tap to reach the cloud", interval=0.25)
    # Let every device replay whatever it still holds, then check nothing came twice.
    last_tap = max(t for _, _, t in county.school.ledger.taps)
    wait_for(lambda: county.settled(after=last_tap), DEADLINE_S,
             "devices to report empty buffers and the gateway to drain", interval=0.25)
    events = county.events()
    got = Counter((e["device_id"], e["card_pseudonym"]) for e in events)
    assert got == expected
    keys = Counter((e["device_id"], e["boot_id"], e["seq"]) for e in events)
    assert max(keys.values()) == 1
    for card in {c for _, c, _ in county.school.ledger.taps}:
        assert all(card not in str(e) for e in events), "a card UID reached the cloud in clear"
