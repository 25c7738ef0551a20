"""Service time: the hours on school days in which SLA clocks run, in a school's own time zone.

A day is a service day if its ISO weekday is one of the calendar's weekdays and it is not a holiday, or
if it is a make-up school day (a weekend day worked in exchange for a holiday). On a service day the
clock runs from `day_start` to `day_end`, local time.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# A calendar with no service day in this many days would make a deadline fall nowhere.
MAX_SEARCH_DAYS = 3 * 366


@dataclass(frozen=True)
class Calendar:
    """Service hours of one district, in one school's time zone."""

    timezone: str = "Asia/Shanghai"
    day_start: time = time(8, 0)
    day_end: time = time(18, 0)
    weekdays: frozenset[int] = frozenset({1, 2, 3, 4, 5})
    holidays: frozenset[date] = field(default_factory=frozenset)
    school_days: frozenset[date] = field(default_factory=frozenset)

    def is_service_day(self, day: date) -> bool:
        """True if SLA clocks run on `day`."""
        if day in self.school_days:
            return True
        return day.isoweekday() in self.weekdays and day not in self.holidays

    def _zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local_date(self, moment: datetime) -> date:
        """The calendar date of `moment` in the calendar's time zone."""
        return moment.astimezone(self._zone()).date()

    def window(self, day: date) -> tuple[datetime, datetime] | None:
        """The service hours of `day` as UTC instants, or None if it is not a service day."""
        if not self.is_service_day(day) or self.day_end <= self.day_start:
            return None
        zone = self._zone()
        start = datetime.combine(day, self.day_start, zone).astimezone(UTC)
        end = datetime.combine(day, self.day_end, zone).astimezone(UTC)
        return start, end

    def _windows_from(self, moment: datetime) -> Iterator[tuple[datetime, datetime]]:
        day = self.local_date(moment) - timedelta(days=1)
        for _ in range(MAX_SEARCH_DAYS):
            span = self.window(day)
            if span is not None and span[1] > moment:
                yield span
            day += timedelta(days=1)

    def service_seconds(self, start: datetime, end: datetime) -> float:
        """Seconds of service time between two instants (0 if `end` is not after `start`)."""
        if end <= start:
            return 0.0
        total = 0.0
        for open_at, close_at in self._windows_from(start):
            if open_at >= end:
                break
            total += (min(close_at, end) - max(open_at, start)).total_seconds()
        return total

    def add_service(self, start: datetime, seconds: float) -> datetime | None:
        """The instant at which `seconds` of service time have passed since `start`; None if never."""
        left = max(0.0, seconds)
        for open_at, close_at in self._windows_from(start):
            begin = max(open_at, start)
            available = (close_at - begin).total_seconds()
            if left <= available:
                return begin + timedelta(seconds=left)
            left -= available
        return None

    def service_days(self, first: date, last: date) -> list[date]:
        """The service days from `first` to `last`, both included."""
        days = []
        day = first
        while day <= last:
            if self.is_service_day(day):
                days.append(day)
            day += timedelta(days=1)
        return days
