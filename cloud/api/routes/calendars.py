"""Service calendars: the hours, school days, holidays and make-up days SLA clocks run on."""

from fastapi import APIRouter

from cloud import calendars
from cloud.api.deps import CurrentActor, CurrentUser, SessionDep
from cloud.models import ServiceCalendarIn, ServiceCalendarPublic

router = APIRouter(prefix="/service-calendars", tags=["work orders"])


@router.get("/{scope}")
def get_calendar(scope: str, user: CurrentUser, session: SessionDep) -> ServiceCalendarPublic:
    """A district's calendar ("default" for the one every district without its own uses)."""
    return calendars.read_calendar(session, user=user, scope=scope)


@router.put("/{scope}")
def set_calendar(
    scope: str, body: ServiceCalendarIn, actor: CurrentActor, session: SessionDep
) -> ServiceCalendarPublic:
    """Set a district's (or the default) service hours, school weekdays, holidays and make-up school days."""
    return calendars.set_calendar(
        session,
        actor=actor,
        scope=scope,
        day_start=body.day_start,
        day_end=body.day_end,
        weekdays=body.weekdays,
        holidays=body.holidays,
        school_days=body.school_days,
    )
