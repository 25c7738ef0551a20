"""Bad input on every endpoint is answered 4xx with a message a person can act on, never 5xx."""

import io
from typing import Any

import pytest

from tests.cloud.test_authorization_matrix import API, ENDPOINTS, Endpoint, Env, env  # noqa: F401

HUGE = 10**30
GARBAGE_BODIES: tuple[Any, ...] = (
    [],
    "text",
    None,
    {"unknown": 1},
    {"name": ""},
    {"name": "x" * 5000},
    {"code": "bad code!", "name": "x"},
    {"school_code": HUGE, "name": 1.5},
    {"building_id": HUGE, "name": "x"},
    {"building_id": -1, "name": "x"},
    {"id": "esp32-ZZ", "school_code": "s1"},
    {"id": "esp32-0123456789ab", "school_code": "s1", "classroom_id": HUGE},
    {"id": "esp32-0123456789ab", "school_code": "s1", "purchase_date": "31/12/2025"},
    {"classroom_id": HUGE},
    {"grade": 99},
    {"card_pseudonym": "p", "person_name": "n", "classroom_id": HUGE},
    {"timezone": "Nowhere/Never"},
    {"district_code": "\\u0000"},
)
BAD_PATHS = (
    "/buildings/abc",
    f"/buildings/{HUGE}",
    f"/classrooms/{HUGE}",
    "/classrooms/-5",
    "/devices/%00",
    f"/devices?classroom={HUGE}",
    f"/devices?offset={HUGE}",
    f"/devices?limit={HUGE}",
    "/devices?limit=0",
    f"/alarms?offset={HUGE}",
    "/alarms?state=maybe",
    "/alarms?since=yesterday",
    f"/audit-log?offset={HUGE}",
    f"/attendance-events?offset={HUGE}",
    f"/classrooms?building={HUGE}",
    "/attendance/daily?school=s1&date=2026-02-30",
    f"/devices/esp32-0000000000a1/health?limit={HUGE}",
    "/devices/esp32-0000000000a1/health?since=2026-13-01",
    f"/schools/s1/roster/{HUGE}",
    "/gateways/%20",
    "/work-orders/abc",
    f"/work-orders/{HUGE}",
    "/work-orders?status=maybe",
    f"/work-orders?offset={HUGE}",
    f"/work-orders/1/attachments/{HUGE}",
    f"/commands?limit={HUGE}",
    "/commands/nonexistent",
    "/figures?scope=county&from=2026-13-01",
    "/figures?scope=contractor&id=99999",
    "/service-calendars/nowhere",
    f"/teams/{HUGE}",
    f"/notifications?limit={HUGE}",
    "/devices/%00/config",
)


def _body_endpoints() -> list[Endpoint]:
    return [endpoint for endpoint in ENDPOINTS if endpoint.method in ("POST", "PATCH") and not endpoint.upload]


@pytest.mark.parametrize("body", GARBAGE_BODIES, ids=repr)
@pytest.mark.parametrize("endpoint", _body_endpoints(), ids=lambda endpoint: endpoint.name)
def test_garbage_bodies(env: Env, endpoint: Endpoint, body: Any) -> None:  # noqa: F811
    path = API + endpoint.path(env, env.targets["own"])

    response = env.client.request(endpoint.method, path, json=body, headers=env.headers("county_city"))

    assert 400 <= response.status_code < 500 or response.status_code < 300, response.text
    if response.status_code >= 400:
        assert response.json()["detail"]


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
@pytest.mark.parametrize("path", BAD_PATHS)
def test_bad_paths_and_queries(env: Env, path: str, method: str) -> None:  # noqa: F811
    response = env.client.request(method, API + path, json={}, headers=env.headers("county_city"))

    assert 400 <= response.status_code < 500, f"{response.status_code} {response.text}"


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b'{"records": "many"}',
        b'{"records": [{"gseq": 1, "kind": "attendance", "device": "esp32-0000000000a1", "boot": "0badf00d",'
        b' "seq": 99999999999999999999999, "ts": 1, "body": {"card": "p"}}]}',
    ],
)
def test_malformed_sync_batches(env: Env, payload: bytes) -> None:  # noqa: F811
    env.client.app.state.sync_limiter._buckets.clear()
    token = env.client.post(f"{API}/gateways", json={"school_code": "s1"}, headers=env.headers("county_city")).json()[
        "token"
    ]

    response = env.client.post(
        f"{API}/gateway/sync",
        content=payload,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )

    assert response.status_code < 500, response.text
    if response.status_code == 200:
        assert response.json()["rejected"][0]["reason"] == "bad_field"


def test_bad_uploads(env: Env) -> None:  # noqa: F811
    for data in (b"\x00\x01\x02", b"PK\x03\x04junk", b"device_id\n" + b"x\n" * 3):
        response = env.client.post(
            f"{API}/imports/devices",
            files={"file": ("f", io.BytesIO(data))},
            headers=env.headers("county_city"),
        )
        assert response.status_code == 422, response.text
    missing = env.client.post(f"{API}/imports/devices", headers=env.headers("county_city"))
    assert missing.status_code == 422


@pytest.mark.parametrize(
    "payload",
    [
        b'{"records": [{"gseq": 1, "kind": "attendance", "device": "esp32-0000000000a1", "boot": "0badf00d",'
        b' "seq": 1, "ts": 1767225600, "body": {"card": "\\ud800"}}]}',
        b'{"records": [{"gseq": 1, "kind": "alarm", "device": "esp32-0000000000a1", "boot": "0badf00d",'
        b' "seq": 2, "ts": 1767225600, "body": {"code": "heap_low", "state": "raise", "detail": "x\\udfff"}}]}',
        b'{"records": [], "\\ud800": 1}',
    ],
)
def test_sync_batch_with_a_lone_surrogate(env: Env, payload: bytes) -> None:  # noqa: F811
    env.client.app.state.sync_limiter._buckets.clear()
    token = env.client.post(f"{API}/gateways", json={"school_code": "s1"}, headers=env.headers("county_city")).json()[
        "token"
    ]

    response = env.client.post(
        f"{API}/gateway/sync",
        content=payload,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )

    assert response.status_code == 422, response.text
    assert "lone UTF-16 surrogate" in response.json()["detail"][0]["ctx"]["error"]
