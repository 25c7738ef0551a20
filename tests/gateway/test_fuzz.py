"""Whatever arrives on the school's broker, the gateway's ingest neither crashes nor loses the good
messages beside the bad ones."""

from __future__ import annotations

import itertools
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import GatewaySettings
from gateway.ingest import Ingestor
from gateway.store import Store
from protocol import messages, topics

SCHOOL = "S001"
DEV = "esp32-246f28000001"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (st.lists(children, max_size=4)
                      | st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=12,
)
kinds = st.sampled_from([*messages.UP_KINDS, *messages.DOWN_KINDS, "nonsense"])
fields = st.sampled_from(["v", "kind", "device", "boot", "seq", "ts", "card", "hist", "readings", "errors",
                          "uptime_s", "heap_free", "heap_max_block", "buffered", "code", "state", "cid",
                          "result", "role", "fw", "app", "reset", "health_s"])


@st.composite
def messy_message(draw) -> tuple[str, bytes]:
    leaf = draw(st.sampled_from([*topics.UP_LEAVES, "cmd", "x"]))
    device = draw(st.sampled_from([DEV, "esp32-246f28000002", "esp32-XYZ", "+", ""]))
    topic = draw(st.sampled_from([
        f"classops/v1/{SCHOOL}/up/{device}/{leaf}",
        f"classops/v1/S002/up/{device}/{leaf}",
        f"classops/v2/{SCHOOL}/up/{device}/{leaf}",
        draw(st.text(max_size=40)),
    ]))
    body = {"v": 1, "kind": draw(kinds), "device": device, "boot": "0000abcd", "seq": draw(st.integers())}
    body.update(draw(st.dictionaries(fields, json_values, max_size=6)))
    payload = draw(st.sampled_from([
        json.dumps(body).encode(),
        draw(st.binary(max_size=64)),
        json.dumps(draw(json_values)).encode(),
    ]))
    return topic, payload


def good(seq: int) -> tuple[str, bytes]:
    msg = messages.message(messages.ATTENDANCE, DEV, "0000abcd", seq, 1795454769, {"card": f"{seq:08x}"})
    return topics.up(SCHOOL, DEV, topics.ATTENDANCE), messages.encode(msg)


@pytest.fixture(scope="module")
def ingestor():
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "gw.db")
        yield Ingestor(GatewaySettings(school=SCHOOL, school_secret="s" * 20, data_dir=Path(tmp)), store)
        store.close()


GOOD_SEQ = itertools.count(10_000_000)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(messy_message(), max_size=12))
def test_ingest_survives_anything_and_keeps_the_good_messages(ingestor: Ingestor,
                                                              batch: list[tuple[str, bytes]]) -> None:
    first, last = next(GOOD_SEQ), next(GOOD_SEQ)
    mixed = [good(first), *batch, good(last)]
    result = ingestor.ingest(mixed)
    accounted = result.new + result.duplicate + result.empty + sum(result.rejected.values())
    assert accounted == len(mixed)
    acked = {seq for _, seq in result.event_keys.get(DEV, [])}
    assert {first, last} <= acked
