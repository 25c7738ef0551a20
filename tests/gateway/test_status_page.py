"""The status page and /api/status, served from a status snapshot alone: no gateway has to run."""

from __future__ import annotations

from fastapi.testclient import TestClient

from gateway.status import GatewayStatus, create_status_app

DEVICES = [
    {"id": "esp32-000000000001", "role": "reader", "presence": "online", "last_seen": 1_700_000_000.0},
    {"id": "esp32-000000000002", "role": None, "presence": "offline", "last_seen": None},
]


def _status(store_error: str = "", writable: bool = True) -> GatewayStatus:
    return GatewayStatus(
        school="S001",
        store={"writable": writable, "unwritable_for_s": 0 if writable else 12, "detail": "", "error": store_error},
        gateway_id="gw-S001-1",
        broker_connected=True,
        cloud_last_ok_s_ago=None,
        backlog_records=7,
        backlog_age_s=3.5,
        devices=[] if store_error else DEVICES,
        metrics={"messages_in": 12.0},
    )


def _client(status: GatewayStatus) -> TestClient:
    async def snapshot() -> GatewayStatus:
        return status

    return TestClient(create_status_app("S001", snapshot, lambda: "classops_gateway_messages_in_total 12.0\n"))


def test_the_status_json_and_page_show_the_snapshot() -> None:
    with _client(_status()) as client:
        body = client.get("/api/status").json()
        page = client.get("/").text
        metrics = client.get("/metrics").text
    assert body["school"] == "S001" and body["gateway_id"] == "gw-S001-1"
    assert body["devices_online"] == 1 and [d["id"] for d in body["devices"]] == [d["id"] for d in DEVICES]
    assert body["backlog_records"] == 7 and body["cloud_last_ok_s_ago"] is None
    assert body["metrics"] == {"messages_in": 12.0}
    assert "Devices online: 1 of 2." in page and "never reached" in page and "esp32-000000000002" in page
    assert metrics == "classops_gateway_messages_in_total 12.0\n"


def test_the_page_says_when_the_store_did_not_answer_or_cannot_write() -> None:
    with _client(_status(store_error="the store did not answer within 2 s")) as client:
        assert "The store did not answer." in client.get("/").text
        assert client.get("/api/status").json()["store"]["error"] == "the store did not answer within 2 s"
    with _client(_status(writable=False)) as client:
        assert "The store cannot write (for 12 s)" in client.get("/").text
