"""Attendance: raw card taps for the school's own admins, per-classroom daily counts for everyone else."""

from typing import Annotated

from fastapi import APIRouter, Query

from cloud import crud
from cloud.api.deps import CurrentUser, Offset, SessionDep
from cloud.api.params import Since
from cloud.bounds import Day
from cloud.models import AttendanceEventPublic, AttendancePage, DailyAttendance

router = APIRouter(tags=["attendance"])

MAX_PAGE = 10_000


@router.get("/attendance-events")
def list_attendance_events(
    user: CurrentUser,
    session: SessionDep,
    school: Annotated[str | None, Query(description="only this school's events")] = None,
    device: Annotated[str | None, Query(description="only this device's events")] = None,
    since: Since = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
    offset: Offset = 0,
) -> AttendancePage:
    """A page of the raw (pseudonymous) attendance events of the user's own school, oldest first.

    Personal data: school admins only. Everyone else reads /attendance/daily.
    """
    items, total = crud.list_attendance_events(
        session, user=user, school_code=school, device_id=device, since=since, limit=limit, offset=offset
    )
    return AttendancePage(items=[AttendanceEventPublic.model_validate(item) for item in items], total=total)


@router.get("/attendance/daily")
def daily_attendance(
    user: CurrentUser,
    session: SessionDep,
    school: Annotated[str, Query(description="the school's code")],
    day: Annotated[
        Day | None, Query(alias="date", description="a day of the school's calendar; today if left out")
    ] = None,
) -> DailyAttendance:
    """Per-classroom attendance of one school day: distinct cards, taps, roster size and rate."""
    return crud.daily_attendance(session, user=user, school_code=school, day=day)
