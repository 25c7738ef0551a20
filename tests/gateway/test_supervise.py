"""Supervision of the gateway's tasks, and the store_unwritable alarm held in memory."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway import supervise
from gateway.app import Gateway
from gateway.config import load_settings
from gateway.errors import ConfigError, StoreWorkerLost
from gateway.ingest import prepare
from gateway.metrics import Metrics
from gateway.supervise import HELD_GSEQ_BASE, StoreHealth, supervised
from protocol import messages, topics

SCHOOL = "S7"
SECRET = "s" * 32
DEV = "esp32-0a0b0c0d0e07"


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervise, "TASK_RETRY_MIN_S", 0.0)


def test_a_task_that_fails_runs_again_and_a_config_error_ends_it() -> None:
    metrics = Metrics()
    runs: list[int] = []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise StoreWorkerLost("the store worker died during backlog")
        raise ConfigError("[cloud] url is not a URL")

    with pytest.raises(ConfigError):
        asyncio.run(supervised("gauges", flaky, metrics))
    assert len(runs) == 3
    assert metrics.get("task_failures", "gauges") == 2


def test_a_bug_in_a_task_is_counted_and_the_task_runs_again() -> None:
    metrics = Metrics()
    runs: list[int] = []

    async def buggy() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise KeyError("presence")

    asyncio.run(supervised("presence", buggy, metrics))
    assert len(runs) == 2 and metrics.get("task_failures", "presence") == 1


def test_the_alarm_is_held_in_memory_raised_once_and_cleared_once() -> None:
    metrics, woken = Metrics(), []
    health = StoreHealth(metrics, on_change=lambda: woken.append(1))
    health.failed("database or disk is full", now=1795454769.0)
    health.failed("database or disk is full", now=1795454770.0)
    assert not health.writable and metrics.get("store_writable") == 0
    health.recovered(now=1795454800.0)
    health.recovered(now=1795454801.0)
    held = health.held()
    assert [(r["body"]["code"], r["body"]["state"]) for r in held] == [
        ("store_unwritable", "raise"), ("store_unwritable", "clear")]
    assert HELD_GSEQ_BASE < held[0]["gseq"] < held[1]["gseq"] < 2**63
    assert len(woken) == 2 and metrics.get("store_writable") == 1
    assert metrics.get("store_unwritable_errors") == 2
    health.answered({held[0]["gseq"]})
    assert health.held() == held[1:]


def test_samples_are_refused_while_the_store_cannot_write(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'school = "{SCHOOL}"\nschool_secret = "{SECRET}"\ndata_dir = "{tmp_path / "data"}"\n'
                      '[cloud]\nurl = "http://127.0.0.1:9"\ntoken = "t"\n')
    gateway = Gateway(load_settings(config))
    health = messages.message(messages.HEALTH, DEV, "0000abcd", 1, 1795454769, {
        "uptime_s": 60, "heap_free": 60000, "heap_max_block": 30000, "errors": {}, "buffered": 0})
    tap = messages.message(messages.ATTENDANCE, DEV, "0000abcd", 2, 1795454770, {"card": "04a1b2c3"})
    batch = prepare(SCHOOL, SECRET, [(topics.up(SCHOOL, DEV, topics.HEALTH), messages.encode(health)),
                                     (topics.up(SCHOOL, DEV, topics.ATTENDANCE), messages.encode(tap))])
    assert gateway._refuse_samples(batch) is batch

    gateway.store_health.failed("database or disk is full")
    refused = gateway._refuse_samples(batch)

    assert [a.kind for a in refused.accepted] == [messages.ATTENDANCE]
    assert refused.event_keys() == batch.event_keys() == {DEV: [["0000abcd", 2]]}
    assert gateway.metrics.get("samples_refused") == 1
