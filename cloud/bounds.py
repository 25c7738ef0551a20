"""Dates and times as the service takes them from callers: ISO 8601 text within the years it serves.

Bounding the years keeps every later step safe: near year 1 or 9999, shifting a time to UTC or adding a
day leaves the calendar and raises. Text only, so that a bare number is never read as a time.
"""

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import PlainValidator, WithJsonSchema

FIRST_YEAR = 2000
LAST_YEAR = 2099
_YEAR = r"20[0-9]{2}"
_DAY = rf"{_YEAR}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
DATE_PATTERN = rf"^{_DAY}$"
# Seconds and a zone are optional; a time without a zone is UTC.
MOMENT_PATTERN = (
    rf"^{_DAY}[T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{{1,6}})?)?(Z|[+-]([01][0-9]|2[0-3]):?[0-5][0-9])?$"
)
_DATE_TEXT = re.compile(DATE_PATTERN)
_MOMENT_TEXT = re.compile(MOMENT_PATTERN)


def _text(value: Any, pattern: re.Pattern[str], example: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"write it like {example}, a year from {FIRST_YEAR} to {LAST_YEAR}")
    return value


def parse_day(value: Any) -> date:
    """A calendar day written YYYY-MM-DD within the service's years; ValueError otherwise."""
    if isinstance(value, date) and not isinstance(value, datetime) and FIRST_YEAR <= value.year <= LAST_YEAR:
        return value
    return date.fromisoformat(_text(value, _DATE_TEXT, "2026-09-01"))


def parse_moment(value: Any) -> datetime:
    """An ISO 8601 date-time within the service's years, as an aware UTC time (UTC if it names no zone)."""
    if isinstance(value, datetime) and FIRST_YEAR <= value.year <= LAST_YEAR:
        moment = value
    else:
        moment = datetime.fromisoformat(_text(value, _MOMENT_TEXT, "2026-09-01T08:00:00+08:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


Day = Annotated[
    date,
    PlainValidator(parse_day),
    WithJsonSchema({"type": "string", "format": "date", "pattern": DATE_PATTERN}),
]
Moment = Annotated[
    datetime,
    PlainValidator(parse_moment),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": MOMENT_PATTERN}),
]


def whole_number(text: str, *, low: int = 1, high: int) -> int | None:
    """The number `text` writes in ASCII digits if it lies in low..high, else None.

    `str.isdigit()` alone is no check: "²" passes it and then fails int(), and a long run of digits passes
    int() and then overflows the database column it is compared with.
    """
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(high)):
        return None
    number = int(text)
    return number if low <= number <= high else None
