"""Edge rules: alarms the gateway raises and clears itself, whether or not the cloud is reachable.

- a device offline during school hours (the school's calendar: hours, holidays, make-up school days),
  after a grace period, so that a reboot is not an alarm;
- a sensor that reports a fault instead of a reading;
- a reading out of its range, with hysteresis so that a value hovering at the limit raises once.

Each alarm is raised once and cleared once: the store keeps which alarms are active, across restarts.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from gateway.config import CalendarSettings, GatewaySettings, RangeRule
    from gateway.store import Store

DEVICE_OFFLINE = "device_offline"
SENSOR_FAULT = "sensor_fault"
READING_HIGH = "reading_high"
READING_LOW = "reading_low"


class SchoolCalendar:
    """When the school is in session, in the school's own time zone."""

    def __init__(self, settings: CalendarSettings) -> None:
        self._zone = ZoneInfo(settings.timezone)
        self._days = set(settings.weekdays)
        self._start, self._end = settings.hours
        self._holidays = set(settings.holidays)
        self._extra_days = set(settings.school_days)

    def in_session(self, when: float) -> bool:
        """True if `when` (epoch seconds) falls in school hours of a school day."""
        local = dt.datetime.fromtimestamp(when, self._zone)
        day = local.date()
        if day in self._holidays:
            return False
        if day not in self._extra_days and local.isoweekday() not in self._days:
            return False
        return self._start <= local.time() < self._end


class RuleEngine:
    """Evaluates the edge rules against the store; runs in the store worker."""

    def __init__(self, settings: GatewaySettings, store: Store) -> None:
        self._calendar = SchoolCalendar(settings.calendar)
        self._offline_grace_s = settings.rules.offline_grace_s
        self._ranges: dict[str, RangeRule] = {r.reading: r for r in settings.rules.ranges}
        self._store = store

    def on_telemetry(self, device: str, body: dict[str, Any], now: float) -> int:
        """Check one telemetry sample; return the number of alarms raised or cleared."""
        changes = 0
        faults = body.get("faults") or {}
        for sensor, fault in faults.items():
            changes += self._store.set_alarm(device, f"{SENSOR_FAULT}:{sensor}", True, f"{sensor}: {fault}", now)
        for sensor in list(self._store.active_alarms(device, SENSOR_FAULT + ":")):
            name = sensor.split(":", 1)[1]
            # A sensor reports readings under its quantities' names (scd4x gives co2_ppm), not its own:
            # a sample that no longer lists the fault is the sensor answering again.
            if name not in faults:
                changes += self._store.set_alarm(device, sensor, False, f"{name} reads again", now)
        for name, value in body.get("readings", {}).items():
            rule = self._ranges.get(name)
            if rule is not None:
                changes += self._check_range(device, rule, value, now)
        return changes

    def _check_range(self, device: str, rule: RangeRule, value: float, now: float) -> int:
        changes = 0
        high, low = f"{READING_HIGH}:{rule.reading}", f"{READING_LOW}:{rule.reading}"
        if rule.high is not None and rule.clear_high is not None:
            if value >= rule.high:
                changes += self._store.set_alarm(device, high, True, f"{rule.reading} {value} >= {rule.high}", now)
            elif value <= rule.clear_high:
                changes += self._store.set_alarm(device, high, False, f"{rule.reading} back to {value}", now)
        if rule.low is not None and rule.clear_low is not None:
            if value <= rule.low:
                changes += self._store.set_alarm(device, low, True, f"{rule.reading} {value} <= {rule.low}", now)
            elif value >= rule.clear_low:
                changes += self._store.set_alarm(device, low, False, f"{rule.reading} back to {value}", now)
        return changes

    def evaluate(self, now: float) -> int:
        """The time-driven rules: offline devices during school hours. Returns alarms changed."""
        changes = 0
        in_session = self._calendar.in_session(now)
        for device in self._store.devices():
            offline_for = now - (device["presence_since"] or now)
            gone = device["presence"] == "offline" and offline_for >= self._offline_grace_s
            if gone and in_session:
                changes += self._store.set_alarm(device["id"], DEVICE_OFFLINE, True,
                                                 f"offline since {offline_for:.0f}s during school hours", now)
            elif device["presence"] == "online":
                changes += self._store.set_alarm(device["id"], DEVICE_OFFLINE, False, "online again", now)
        return changes
