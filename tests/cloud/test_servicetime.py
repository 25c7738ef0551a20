"""Service time on a calendar of school days, holidays and make-up days, in the school's time zone."""

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from cloud.servicetime import Calendar

ZONE = ZoneInfo("Asia/Shanghai")
FRIDAY = date(2026, 1, 9)
SATURDAY = date(2026, 1, 10)
MONDAY = date(2026, 1, 12)
TUESDAY = date(2026, 1, 13)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), ZONE).astimezone(UTC)


def hours(calendar: Calendar, start: datetime, end: datetime) -> float:
    return calendar.service_seconds(start, end) / 3600


def test_the_clock_stops_at_night_and_over_the_weekend():
    calendar = Calendar()

    assert hours(calendar, at(FRIDAY, 16), at(MONDAY, 10)) == 4
    assert calendar.add_service(at(FRIDAY, 16), 4 * 3600) == at(MONDAY, 10)


def test_a_holiday_is_skipped():
    calendar = Calendar(holidays=frozenset({MONDAY}))

    assert hours(calendar, at(FRIDAY, 16), at(TUESDAY, 10)) == 4
    assert calendar.add_service(at(FRIDAY, 16), 3 * 3600) == at(TUESDAY, 9)


def test_a_make_up_school_day_counts_though_it_is_a_saturday():
    calendar = Calendar(school_days=frozenset({SATURDAY}))

    assert hours(calendar, at(FRIDAY, 16), at(MONDAY, 10)) == 14
    assert calendar.add_service(at(FRIDAY, 17), 2 * 3600) == at(SATURDAY, 9)


def test_time_outside_service_hours_starts_counting_at_the_next_opening():
    calendar = Calendar(day_start=time(8, 30), day_end=time(17, 30))

    assert calendar.add_service(at(SATURDAY, 12), 3600) == at(MONDAY, 9, 30)
    assert hours(calendar, at(FRIDAY, 18), at(MONDAY, 8, 30)) == 0


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "Asia/Urumqi", "Europe/Berlin"])
def test_service_hours_are_local_to_the_school(zone):
    calendar = Calendar(timezone=zone)
    local = ZoneInfo(zone)
    start = datetime.combine(MONDAY, time(7), local).astimezone(UTC)

    assert calendar.add_service(start, 3600) == datetime.combine(MONDAY, time(9), local).astimezone(UTC)


def test_a_calendar_without_service_days_gives_no_deadline():
    assert Calendar(weekdays=frozenset()).add_service(at(MONDAY, 9), 3600) is None
