"""A command travels from the cloud through the gateway's long-poll and the school's broker to the real
firmware, and its ack back: the cloud follows it to succeeded. An expired one ends expired."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.stack import http_json, wait_for
from tests.e2e.test_card_tap import DEADLINE_S, County

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def county(tmp_path: Path):
    c = County(tmp_path)
    try:
        c.start()
        c.school.start()
        c.school.wait_ready(timeout=DEADLINE_S)
        wait_for(c.devices_online, DEADLINE_S, "devices online in the cloud", interval=0.25)
        yield c
    finally:
        c.stop()


def test_a_ping_reaches_the_device_and_its_ack_the_cloud(county: County) -> None:
    device = county.school.devices[0].device_id
    status, batch = http_json("POST", county.cloud.url + "/api/v1/commands",
                              {"target": {"device": device}, "name": "ping"}, token=county.token)
    assert status == 201, batch

    def states() -> dict:
        code, body = http_json("GET", f"{county.cloud.url}/api/v1/commands/{batch['id']}", token=county.token)
        assert code == 200, body
        return dict(body["states"])

    wait_for(lambda: states().get("succeeded") == 1, DEADLINE_S, "the ping to succeed", interval=0.25)
    assert sum(states().values()) == 1


def test_a_command_for_every_device_of_the_school_reaches_each_once(county: County) -> None:
    status, batch = http_json("POST", county.cloud.url + "/api/v1/commands",
                              {"target": {"school": "S001"}, "name": "ping"}, token=county.token)
    assert status == 201, batch
    assert batch["devices"] == len(county.school.devices)

    def succeeded() -> int:
        _, body = http_json("GET", f"{county.cloud.url}/api/v1/commands/{batch['id']}", token=county.token)
        return int(body["states"].get("succeeded", 0))

    wait_for(lambda: succeeded() == len(county.school.devices), DEADLINE_S, "every device's ack", interval=0.25)
