"""The quick paths of /gateway/sync answer exactly as the general ones do.

- the route reads the body itself; what it refuses, and how, is what FastAPI says for a SyncBatch body;
- taps are checked by a short path; a record it takes is the record the full checks make of it, and what
  it does not take is judged, and worded, by the full checks;
- records may reach the data layer as SyncRecordIn or as plain dicts, with the same result.
"""

import json
import math
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.models import SyncBatch, SyncRecordIn
from cloud.sync.records import RecordRejected, _parse_tap, parse_sync_record
from tests.cloud.helpers import BOOT, DEVICE_A, TS, record, tap

SYNC = "/api/v1/gateway/sync"
GOOD = {"gseq": 1, "kind": "attendance", "device": DEVICE_A, "boot": BOOT, "seq": 1, "ts": TS, "body": {"card": "p"}}

# (body, content type) pairs: malformed JSON, other content types, shapes SyncBatch refuses or coerces.
BODIES: list[tuple[bytes, str | None]] = [
    (b"not json", "application/json"),
    (b"", "application/json"),
    (b"null", "application/json"),
    (b"[1, 2]", "application/json"),
    (b'{"records": "many"}', "application/json"),
    (b'{"records": [5, {"nogseq": 1}]}', "application/json"),
    (b'{"records": [{"gseq": 0}, {"gseq": -1}, {"gseq": true}, {"gseq": "3"}, {"gseq": 1.0}, {"gseq": null}]}',
     "application/json"),
    (b'{"records": [{"gseq": 9223372036854775808}]}', "application/json"),
    (b'{"records": [{"gseq": 99999999999999999999999}]}', "application/json"),
    (b'{"records": [], "sent_at": "12.5"}', "application/json"),
    (b'{"records": [], "sent_at": "soon"}', "application/json"),
    (b'{"records": [], "sent_at": true}', "application/json"),
    (b'{"records": [], "sent_at": NaN}', "application/json"),
    (b'{"records": []}', None),
    (b'{"records": []}', "text/plain"),
    (b'{"records": []}', "application/vnd.classops+json"),
    (b'{"records": []}', "application/json; charset=utf-8"),
    (json.dumps({"records": [GOOD]}).encode("utf-16"), "application/json"),
    (b"\xff\xfe{", "application/json"),
    (b"[" * 5000, "application/json"),
]


def _reference_client() -> TestClient:
    """An app whose route declares SyncBatch as its body, as /gateway/sync did."""
    reference = FastAPI()

    @reference.post("/reference")
    def accept(batch: SyncBatch) -> dict[str, Any]:
        return {"records": len(batch.records)}

    return TestClient(reference)


@pytest.mark.parametrize(("payload", "content_type"), BODIES, ids=repr)
def test_bodies_are_refused_as_fastapi_refuses_a_syncbatch(sync, client, world, payload, content_type):
    headers = {"Content-Type": content_type} if content_type else {}

    expected = _reference_client().post("/reference", content=payload, headers=headers)
    answer = client.post(SYNC, content=payload, headers={**headers, **world.gateway("s1")})

    assert answer.status_code == expected.status_code, answer.text
    if expected.status_code != 200:
        assert answer.json() == expected.json()


def test_the_token_is_checked_before_the_body_is_read(client, world):
    # Only a known gateway can make the server read, and parse, a body as large as a batch may be.
    unknown = {"Content-Type": "application/json", "Authorization": "Bearer nope"}
    unreadable = client.post(SYNC, content=b"not json", headers=unknown)
    bad_gseq = client.post(SYNC, json={"records": [{"gseq": 0}]}, headers=unknown)
    known = client.post(SYNC, content=b"not json", headers={**unknown, **world.gateway("s1")})

    assert unreadable.status_code == 401
    assert bad_gseq.status_code == 401
    assert known.status_code == 422
    assert known.json()["detail"][0]["type"] == "json_invalid"


def test_what_only_pythons_json_parser_reads_is_still_read(client, world):
    # An integer past 64 bits and a NaN: orjson refuses both, the standard parser reads them, and the
    # records are then judged one by one.
    device, boot = DEVICE_A.encode(), BOOT.encode()
    payload = (
        b'{"records": [{"gseq": 1, "kind": "attendance", "device": "' + device + b'", "boot": "' + boot
        + b'", "seq": 99999999999999999999999, "ts": 1, "body": {"card": "p"}},'
        b' {"gseq": 2, "kind": "telemetry", "device": "' + device + b'", "boot": "' + boot
        + b'", "seq": 2, "ts": 1, "body": {"readings": {"co2": NaN}}}]}'
    )

    response = client.post(SYNC, content=payload, headers={"Content-Type": "application/json", **world.gateway("s1")})

    assert response.status_code == 200, response.text
    assert [(r["gseq"], r["reason"]) for r in response.json()["rejected"]] == [(1, "bad_field"), (2, "bad_field")]


# ---- the quick check of taps ----------------------------------------------------------------------


def _full(fields: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "ok", parse_sync_record(fields)
    except RecordRejected as exc:
        return exc.reason, exc.detail


def _check_agreement(fields: dict[str, Any]) -> None:
    quick = _parse_tap(fields)
    if quick is not None:
        assert _full(fields) == ("ok", quick)


EDGE_TAPS = [
    tap(1),
    tap(1, card="x" * 128),
    tap(1, card="x" * 129),
    tap(1, card=""),
    tap(1, card=5),
    record(1, "attendance", card="p", hist=None),
    record(1, "attendance", card="p", hist=1),
    record(1, "attendance", card="p"),
    {**tap(1), "ts": 0},
    {**tap(1), "ts": -0.5},
    {**tap(1), "ts": 7_258_118_400},
    {**tap(1), "ts": 7_258_118_400.5},
    {**tap(1), "ts": math.nan},
    {**tap(1), "ts": math.inf},
    {**tap(1), "ts": True},
    {**tap(1), "ts": "1"},
    {**tap(1), "seq": 0},
    {**tap(1), "seq": -1},
    {**tap(1), "seq": 2**63 - 1},
    {**tap(1), "seq": 2**63},
    {**tap(1), "seq": True},
    {**tap(1), "seq": 1.0},
    {**tap(1), "device": "esp32-AABBCCDDEE01"},
    {**tap(1), "device": "esp32-aabbccddee0"},
    {**tap(1), "device": "ESP32-aabbccddee01"},
    {**tap(1), "device": None},
    {**tap(1), "boot": "0BADF00D"},
    {**tap(1), "boot": "0badf00"},
    {**tap(1), "boot": None},
    {**tap(1), "body": None},
    {**tap(1), "body": []},
    {**tap(1), "body": {"card": "p", "ts": 5, "v": 2}},
    {**tap(1), "kind": "Attendance"},
    {**tap(1), "extra": "ignored"},
    record(1, "health", uptime_s=5),
]


@pytest.mark.parametrize("fields", EDGE_TAPS, ids=repr)
def test_a_tap_the_quick_check_takes_is_the_one_the_full_checks_make(fields):
    _check_agreement(fields)


def test_the_quick_check_takes_ordinary_taps():
    parsed = _parse_tap(tap(7, seq=3, card="p-7", ts=TS + 0.25))

    assert parsed is not None
    assert (parsed.gseq, parsed.kind, parsed.device, parsed.boot, parsed.seq) == (7, "attendance", DEVICE_A, BOOT, 3)
    assert parsed.ts == datetime.fromtimestamp(TS + 0.25, UTC)
    assert parsed.body == {"card": "p-7", "hist": False}


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from([DEVICE_A, BOOT, "attendance", "p", "x" * 128, "x" * 129]),
)


@settings(max_examples=300, deadline=None)
@given(
    device=st.one_of(_values, st.just(DEVICE_A)),
    boot=st.one_of(_values, st.just(BOOT)),
    seq=st.one_of(_values, st.integers(min_value=0, max_value=2**63)),
    ts=st.one_of(_values, st.floats(min_value=0, max_value=8e9)),
    card=st.one_of(_values, st.just("p")),
    hist=st.one_of(_values, st.just(False)),
    extra=st.dictionaries(st.sampled_from(["v", "ts", "note"]), _values, max_size=2),
)
def test_the_quick_check_agrees_with_the_full_checks(device, boot, seq, ts, card, hist, extra):
    body = {"card": card, "hist": hist, **extra}
    _check_agreement({"gseq": 1, "kind": "attendance", "device": device, "boot": boot, "seq": seq, "ts": ts,
                      "body": body})


def test_records_as_models_or_as_dicts_parse_alike():
    records = [tap(1), record(2, "health", uptime_s=5), record(3, "presence", boot=None, state="online"), {"gseq": 4}]
    for fields in records:
        model = SyncRecordIn.model_validate(fields)
        assert _full(fields) == _full(model)


# ---- several API workers ------------------------------------------------------------------------


def test_serve_refuses_fewer_than_one_worker(sqlite_url, capsys):
    from tests.cloud.test_cli import _run

    assert _run(["serve", "--workers", "0", "--database-url", sqlite_url]) == 2
    assert "--workers" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_serve_with_two_workers_applies_batches(sqlite_empty_url, tmp_path):
    import httpx

    cli = [sys.executable, "-m", "classops_cli", "cloud"]
    database = ["--database-url", sqlite_empty_url]
    subprocess.run([*cli, "migrate", *database], check=True, capture_output=True)
    subprocess.run([*cli, "add-school", "--code", "w1", "--name", "W1", *database], check=True, capture_output=True)
    done = subprocess.run(
        [*cli, "add-gateway", "--school", "w1", *database], check=True, capture_output=True, text=True
    )
    token = json.loads(done.stdout.strip().splitlines()[-1])["token"]
    port = _free_port()
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [*cli, "serve", "--port", str(port), "--workers", "2", *database],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "CLASSOPS_CLOUD_OPERATIONS_INTERVAL_S": "0"},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/api/v1/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        answers = [
            httpx.post(f"{base}{SYNC}", json={"records": [tap(n, seq=n)]}, headers={"Authorization": f"Bearer {token}"})
            for n in range(1, 5)
        ]
        assert [a.json()["confirmed"] for a in answers] == [[1], [2], [3], [4]]
    finally:
        server.terminate()
        server.wait(30)
        log.close()
