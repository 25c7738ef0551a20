"""Daily summaries the figures read instead of the raw history for closed days."""

from datetime import date

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

# The 24 UTC hours of a day, as the columns of a daily online summary.
DAY_HOURS = tuple(f"h{hour:02d}" for hour in range(24))


class OnlineDay(SQLModel, table=True):
    """Per school, device role and UTC day: how many devices had a health report in each UTC hour.

    Built from the hourly roll-ups for closed days, so that the online rate adds up days instead of
    device-hours. `role` is "" for devices without one (a key cannot hold null)."""

    __tablename__ = "online_day"
    __table_args__ = (Index("ix_online_day_day", "day"),)

    school_code: str = Field(primary_key=True, max_length=32)
    role: str = Field(primary_key=True, max_length=32)
    day: date = Field(primary_key=True)
    h00: int = 0
    h01: int = 0
    h02: int = 0
    h03: int = 0
    h04: int = 0
    h05: int = 0
    h06: int = 0
    h07: int = 0
    h08: int = 0
    h09: int = 0
    h10: int = 0
    h11: int = 0
    h12: int = 0
    h13: int = 0
    h14: int = 0
    h15: int = 0
    h16: int = 0
    h17: int = 0
    h18: int = 0
    h19: int = 0
    h20: int = 0
    h21: int = 0
    h22: int = 0
    h23: int = 0


class UsageDay(SQLModel, table=True):
    """Per school and local day (in the school's time zone): the blackboards' hours on, and how many of
    them were used, built from the usage counters for closed days."""

    __tablename__ = "usage_day"
    __table_args__ = (Index("ix_usage_day_day", "day"),)

    school_code: str = Field(primary_key=True, max_length=32)
    day: date = Field(primary_key=True)
    hours: float = 0.0
    used: int = 0


class SummaryDevice(SQLModel, table=True):
    """The school, role and time zone each device had when the daily summaries were built: a device
    that moved, changed role or was added since makes its schools read the raw history until rebuilt."""

    __tablename__ = "summary_device"

    device_id: str = Field(primary_key=True, max_length=18)
    school_code: str = Field(max_length=32)
    role: str = Field(max_length=32)
    timezone: str = Field(max_length=64)
