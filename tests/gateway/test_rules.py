"""Edge rules: offline in school hours, sensor faults, readings out of range with hysteresis."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.config import CalendarSettings, GatewaySettings
from gateway.ingest import Ingestor
from gateway.records import Accepted
from gateway.rules import SchoolCalendar
from gateway.store import Store
from protocol import messages, topics

SCHOOL = "S001"
DEV = "esp32-246f28000001"
BOOT = "00000001"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).timestamp()


def test_the_calendar_knows_school_hours_holidays_and_make_up_days() -> None:
    calendar = SchoolCalendar(CalendarSettings(holidays=[dt.date(2026, 10, 1)], school_days=[dt.date(2026, 10, 10)]))
    assert calendar.in_session(at("2026-11-23T09:00"))          # a Monday morning
    assert not calendar.in_session(at("2026-11-23T07:00"))      # before school
    assert not calendar.in_session(at("2026-11-23T18:00"))      # after school
    assert not calendar.in_session(at("2026-11-22T09:00"))      # Sunday
    assert not calendar.in_session(at("2026-10-01T09:00"))      # National Day
    assert calendar.in_session(at("2026-10-10T09:00"))          # a Saturday made a school day


@pytest.fixture
def world(tmp_path: Path):
    store = Store(tmp_path / "gw.db")
    settings = GatewaySettings(school=SCHOOL, school_secret="s" * 20, data_dir=tmp_path,
                               rules={"offline_grace_s": 120})
    yield Ingestor(settings, store), store
    store.close()


def telemetry(seq: int, readings: dict, faults: dict | None = None) -> tuple[str, bytes]:
    fields: dict = {"readings": readings}
    if faults:
        fields["faults"] = faults
    msg = messages.message(messages.TELEMETRY, DEV, BOOT, seq, 1795454769, fields)
    return topics.up(SCHOOL, DEV, topics.TELEMETRY), messages.encode(msg)


def birth() -> tuple[str, bytes]:
    msg = messages.message(messages.BIRTH, DEV, BOOT, 0, 1795454769,
                           {"role": "sensor", "fw": "1", "app": "1", "reset": "power_on", "health_s": 10})
    return topics.up(SCHOOL, DEV, topics.STATUS), messages.encode(msg)


def alarms(store: Store) -> list[tuple[str, str]]:
    return [(r["body"]["code"], r["body"]["state"]) for r in store.pending(1000, "priority")]


def test_a_reading_hovering_at_its_limit_raises_once_and_clears_once(world) -> None:
    ingestor, store = world
    ingestor.ingest([birth()])
    for seq, co2 in enumerate([900, 1510, 1490, 1520, 1300, 1510, 1190, 1250, 1180], 1):
        ingestor.ingest([telemetry(seq, {"co2_ppm": co2})])
    assert alarms(store) == [("reading_high:co2_ppm", "raise"), ("reading_high:co2_ppm", "clear")]


def test_a_sensor_fault_raises_and_a_good_reading_clears(world) -> None:
    ingestor, store = world
    ingestor.ingest([birth()])
    ingestor.ingest([telemetry(1, {"temp_c": 21.0}, {"scd4x": "no_answer"})])
    ingestor.ingest([telemetry(2, {"temp_c": 21.0}, {"scd4x": "no_answer"})])
    ingestor.ingest([telemetry(3, {"temp_c": 21.0, "co2_ppm": 650.0})])
    assert alarms(store) == [("sensor_fault:scd4x", "raise"), ("sensor_fault:scd4x", "clear")]


def test_offline_alarms_only_in_school_hours_and_after_the_grace(world) -> None:
    ingestor, store = world
    ingestor.ingest([birth()], now=at("2026-11-23T06:00"))
    store.commit([Accepted.from_message(messages.will(DEV, BOOT))], now=at("2026-11-23T06:30"))
    assert ingestor.evaluate_rules(at("2026-11-23T07:00")) == 0    # before school: no alarm
    assert ingestor.evaluate_rules(at("2026-11-23T07:31")) == 1    # classes on: raised
    assert ingestor.evaluate_rules(at("2026-11-23T08:00")) == 0    # raised once
    ingestor.ingest([birth()], now=at("2026-11-23T08:05"))          # same boot, retained birth: no change
    msg = messages.message(messages.BIRTH, DEV, "00000002", 0, 1795454769,
                           {"role": "sensor", "fw": "1", "app": "1", "reset": "power_on", "health_s": 10})
    ingestor.ingest([(topics.up(SCHOOL, DEV, topics.STATUS), messages.encode(msg))], now=at("2026-11-23T08:06"))
    assert ingestor.evaluate_rules(at("2026-11-23T08:07")) == 1    # back: cleared
    assert [a for a in alarms(store)] == [("device_offline", "raise"), ("device_offline", "clear")]


def test_a_short_drop_within_the_grace_is_no_alarm(world) -> None:
    ingestor, store = world
    ingestor.ingest([birth()], now=at("2026-11-23T09:00"))
    store.commit([Accepted.from_message(messages.will(DEV, BOOT))], now=at("2026-11-23T09:10"))
    assert ingestor.evaluate_rules(at("2026-11-23T09:11")) == 0
    assert alarms(store) == []


def test_range_rules_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="clear_high must not be above high"):
        GatewaySettings(school=SCHOOL, school_secret="s" * 20,
                        rules={"ranges": [{"reading": "co2_ppm", "high": 1000, "clear_high": 1200}]})
    with pytest.raises(ValueError, match="unknown time zone"):
        GatewaySettings(school=SCHOOL, school_secret="s" * 20, calendar={"timezone": "Mars/Olympus"})
