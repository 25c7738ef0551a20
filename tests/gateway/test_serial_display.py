"""A smart blackboard wired to the gateway's own serial port, against the simulator's virtual display on
a pseudo-terminal: it shows up as a device, reports its state, obeys commands and raises alarms."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gateway.config import DisplaySettings, GatewaySettings
from gateway.ingest import Ingestor
from gateway.metrics import Metrics
from gateway.serial_display import SerialDisplay
from gateway.store import Store
from protocol import messages
from simulator.display import VirtualDisplay

SCHOOL = "S001"
DEV = "esp32-0000d15b1a01"


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # A silent display is given up on after three short waits instead of three seconds.
    monkeypatch.setattr("gateway.serial_display.REPLY_TIMEOUT_S", 0.2)
    display = VirtualDisplay()
    display.start()
    store = Store(tmp_path / "gw.db")
    ingestor = Ingestor(GatewaySettings(school=SCHOOL, school_secret="s" * 20, data_dir=tmp_path), store)

    async def ingest(raw: list[tuple[str, bytes]]) -> None:
        result = ingestor.ingest(raw)
        assert not result.rejected, result.rejected_examples

    connector = SerialDisplay(DisplaySettings(device_id=DEV, port=display.port, poll_s=1), SCHOOL, ingest, Metrics())
    yield display, connector, store
    store.close()
    display.stop()


def records(store: Store, kind: str) -> list[dict]:
    return [r["body"] for r in store.pending(1000) if r["kind"] == kind]


def test_it_is_born_reports_and_obeys(rig) -> None:
    display, connector, store = rig

    async def scenario() -> None:
        await connector.birth()
        await connector.poll()
        assert await connector.execute("c1", messages.POWER_ON, {}, time.time() + 60) == ("ok", None)
        assert await connector.execute("c2", messages.SET_INPUT, {"source": "ops"}, time.time() + 60) == ("ok", None)
        assert (await connector.execute("c3", messages.SET_INPUT, {"source": "tv"}, time.time() + 60))[0] == "rejected"
        assert await connector.execute("c4", messages.POWER_OFF, {}, time.time() - 1) == ("expired", None)
        await connector.poll()

    asyncio.run(scenario())
    assert display.power and display.source == "ops"
    assert store.devices()[0]["presence"] == "online" and store.devices()[0]["role"] == "blackboard"
    readings = [t["readings"] for t in records(store, "telemetry")]
    assert readings[0]["power"] == 0 and readings[-1]["power"] == 1 and readings[-1]["input"] == 6
    assert [(a["cid"], a["result"]) for a in records(store, "ack")] == [
        ("c1", "ok"), ("c2", "ok"), ("c3", "rejected"), ("c4", "expired")]


def test_a_silent_display_raises_an_alarm_once_and_clears_it(rig) -> None:
    display, connector, store = rig

    async def scenario() -> None:
        await connector.birth()
        display.inject("no_answer")
        await connector.poll()
        await connector.poll()
        result = await connector.execute("c1", messages.POWER_ON, {}, time.time() + 60)
        assert result == ("error", "display no_answer")
        display.heal()
        await connector.poll()

    asyncio.run(scenario())
    alarms = [(a["code"], a["state"]) for a in records(store, "alarm")]
    assert alarms == [(messages.DISPLAY_NO_ANSWER, "raise"), (messages.DISPLAY_NO_ANSWER, "clear")]


def test_a_display_that_will_not_power_on_is_an_error_and_an_alarm(rig) -> None:
    display, connector, store = rig
    display.inject("no_power_on")

    async def scenario() -> None:
        await connector.birth()
        result = await connector.execute("c1", messages.POWER_ON, {}, time.time() + 60)
        assert result == ("error", "display refused")

    asyncio.run(scenario())
    assert not display.power
    assert [(a["code"], a["state"]) for a in records(store, "alarm")] == [(messages.DISPLAY_POWER_FAULT, "raise")]
