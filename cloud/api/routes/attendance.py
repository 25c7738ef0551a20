"""Attendance events (card taps), which are personal data."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from cloud import crud
from cloud.api.deps import CurrentUser, SessionDep
from cloud.models import AttendanceEventPublic, AttendancePage

router = APIRouter(prefix="/attendance-events", tags=["attendance"])

MAX_PAGE = 10_000


@router.get("")
def list_attendance_events(
    user: CurrentUser,
    session: SessionDep,
    school: Annotated[str | None, Query(description="only this school's events")] = None,
    device: Annotated[str | None, Query(description="only this device's events")] = None,
    since: Annotated[
        datetime | None, Query(description="events at or after this time, UTC if no zone")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> AttendancePage:
    """A page of attendance events, oldest first."""
    items, total = crud.list_attendance_events(
        session, user=user, school_code=school, device_id=device, since=since, limit=limit, offset=offset
    )
    return AttendancePage(items=[AttendanceEventPublic.model_validate(item) for item in items], total=total)
