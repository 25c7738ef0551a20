"""Sizes capped before work is done: request bodies per route, and the JSON documents a device's records store."""

import json
from collections.abc import Iterator
from typing import Any

import pytest

from cloud.core.config import SYNC_RECORD_BYTES, Settings
from cloud.sync.records import MAX_DOCUMENT_BYTES, MAX_DOCUMENT_DEPTH
from protocol import messages
from tests.cloud.helpers import DEVICE_A, DEVICE_B, TS, record, tap

SYNC = "/api/v1/gateway/sync"


@pytest.fixture
def settings(database_url: str, tmp_path) -> Settings:
    return Settings(
        database_url=database_url,
        maintenance_interval_s=0,
        operations_interval_s=0,
        media_dir=str(tmp_path / "media"),
        max_sync_records=20,
        max_body_bytes=64 * 1024,
    )


def _chunks(data: bytes, size: int = 16 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _batch_of(size: int) -> bytes:
    """A well-formed sync body of about `size` bytes: one tap padded by a field the cloud ignores."""
    return json.dumps({"records": [tap(1, pad="x" * size)], "sent_at": TS}).encode()


# ---- request bodies -------------------------------------------------------------------------------


def test_a_body_past_the_small_limit_is_refused_before_anything_reads_it(client):
    login = client.post(
        "/api/v1/auth/login",
        content=json.dumps({"username": "someone", "password": "x" * 100_000}),
        headers={"Content-Type": "application/json"},
    )

    assert login.status_code == 413
    assert login.json() == {"detail": "the request body is larger than the 65536 bytes this operation takes"}
    assert login.headers["connection"] == "close"


def test_a_body_without_a_length_is_refused_once_it_passes_the_limit(client):
    streamed = client.post(
        "/api/v1/auth/login",
        content=_chunks(json.dumps({"username": "someone", "password": "x" * 100_000}).encode()),
        headers={"Content-Type": "application/json"},
    )

    assert streamed.status_code == 413
    assert streamed.json()["detail"].startswith("the request body is larger than the 65536 bytes")


def test_the_sync_route_takes_its_largest_batch_and_no_more(client, world):
    limit = 20 * SYNC_RECORD_BYTES
    headers = {"Content-Type": "application/json", **world.gateway("s1")}

    within = client.post(SYNC, content=_batch_of(limit - 1000), headers=headers)
    past = client.post(SYNC, content=_batch_of(limit + 1000), headers=headers)
    past_streamed = client.post(SYNC, content=_chunks(_batch_of(limit + 1000)), headers=headers)

    assert within.status_code == 200, within.text
    assert within.json()["confirmed"] == [1]
    assert past.status_code == 413
    assert past.json()["detail"] == f"the request body is larger than the {limit} bytes this operation takes"
    assert past_streamed.status_code == 413


def test_an_oversized_sync_body_without_a_token_is_refused_for_its_size(client):
    body = _batch_of(20 * SYNC_RECORD_BYTES + 1000)

    answer = client.post(SYNC, content=body, headers={"Content-Type": "application/json"})

    assert answer.status_code == 413


def test_a_sync_body_is_not_read_for_an_unknown_token(client):
    # Within the sync route's limit, so only the token stops it; a body that is read is refused (422).
    answer = client.post(
        SYNC,
        content=_chunks(b"{" * 60_000),
        headers={"Content-Type": "application/json", "Authorization": "Bearer nope"},
    )

    assert answer.status_code == 401
    # The rest of a body nobody wants is not read: the connection ends with the answer.
    assert answer.headers["connection"] == "close"


def test_routes_that_take_a_file_take_the_largest_file(client, world):
    csv = "id,school_code\n" + "".join(f"esp32-0000000{n:05x},s1\n" for n in range(4000))
    assert len(csv) > 64 * 1024

    answer = client.post(
        "/api/v1/imports/devices",
        files={"file": ("devices.csv", csv.encode(), "text/csv")},
        headers=world.user("county"),
    )

    assert answer.status_code != 413, answer.text
    assert answer.status_code < 500, answer.text


def test_ordinary_requests_keep_their_connection(client, world):
    answer = client.get("/api/v1/devices", headers=world.user("county"))

    assert answer.status_code == 200
    assert "connection" not in answer.headers


# ---- documents a record stores ----------------------------------------------------------------------


def _nested(depth: int) -> dict[str, Any]:
    """An object nesting `depth` levels, itself included."""
    value: dict[str, Any] = {"n": 1}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


def _health(gseq: int, device: str = DEVICE_A, **errors: Any) -> dict[str, Any]:
    return record(gseq, "health", device, uptime_s=60, heap_free=90_000, errors=errors)


def test_a_large_health_report_is_rejected_alone_and_never_shown(sync, client, world):
    answer = sync([tap(1), _health(2, mqtt=1), _health(3, huge="x" * 60_000), _health(4, DEVICE_B, mqtt=2)])

    assert answer.status_code == 200
    assert answer.json()["confirmed"] == [1, 2, 4]
    detail = f"health body is more than {MAX_DOCUMENT_BYTES} bytes of JSON"
    assert answer.json()["rejected"] == [{"gseq": 3, "reason": messages.TOO_LARGE, "detail": detail}]
    devices = client.get("/api/v1/devices", headers=world.user("county"))
    assert len(devices.content) < 5_000
    shown = {device["id"]: device["last_health"]["errors"] for device in devices.json()}
    assert shown == {DEVICE_A: {"mqtt": 1}, DEVICE_B: {"mqtt": 2}}
    history = client.get(f"/api/v1/devices/{DEVICE_A}/health", headers=world.user("county"))
    assert [sample["errors"] for sample in history.json()] == [{"mqtt": 1}]


def test_a_document_at_the_bounds_is_kept(sync, client, world):
    # The body is level 1, errors level 2: errors may nest MAX_DOCUMENT_DEPTH - 1 levels.
    deep = _health(1)
    deep["body"]["errors"] = _nested(MAX_DOCUMENT_DEPTH - 1)
    full = _health(2, e="")
    full["body"]["errors"]["e"] = "x" * (MAX_DOCUMENT_BYTES - len(json.dumps(full["body"], separators=(",", ":"))))
    assert len(json.dumps(full["body"], separators=(",", ":"))) == MAX_DOCUMENT_BYTES

    answer = sync([deep, full])

    assert answer.json()["confirmed"] == [1, 2], answer.text
    history = client.get(f"/api/v1/devices/{DEVICE_A}/health", headers=world.user("county")).json()
    assert [sample["errors"] for sample in history] == [deep["body"]["errors"], full["body"]["errors"]]


@pytest.mark.parametrize("depth", [MAX_DOCUMENT_DEPTH, 300])
def test_a_document_nested_too_deep_is_rejected(sync, depth):
    # 300 levels: past what orjson writes, still within what the JSON parser reads.
    deep = _health(1)
    deep["body"]["errors"] = _nested(depth)

    answer = sync([deep, tap(2)])

    assert answer.json()["confirmed"] == [2]
    detail = f"health body nests deeper than {MAX_DOCUMENT_DEPTH} levels"
    assert answer.json()["rejected"] == [{"gseq": 1, "reason": messages.TOO_DEEP, "detail": detail}]


def test_telemetry_and_the_gateways_own_records_are_bounded_too(sync):
    faults = record(1, "telemetry", readings={"co2_ppm": 800}, faults={"co2": "x" * MAX_DOCUMENT_BYTES})
    alarm = record(2, "gateway_alarm", None, boot=None, seq=None, code="store_quota", state="raise",
                   note="x" * MAX_DOCUMENT_BYTES)
    small_alarm = record(3, "gateway_alarm", None, boot=None, seq=None, code="store_quota", state="raise")

    answer = sync([faults, alarm, small_alarm])

    assert answer.json()["confirmed"] == [3]
    assert [(r["gseq"], r["reason"]) for r in answer.json()["rejected"]] == [
        (1, messages.TOO_LARGE),
        (2, messages.TOO_LARGE),
    ]
