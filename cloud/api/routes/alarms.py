"""Alarms raised and cleared by devices and by their gateways' rules."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from cloud import crud
from cloud.api.deps import CurrentUser, Offset, SessionDep
from cloud.api.params import Since, Until
from cloud.models import AlarmPublic

router = APIRouter(prefix="/alarms", tags=["devices"])

MAX_PAGE = 10_000


class AlarmPage(BaseModel):
    """A page of alarms, newest first, and the number matching the query."""

    items: list[AlarmPublic]
    total: int


@router.get("")
def list_alarms(
    user: CurrentUser,
    session: SessionDep,
    school: Annotated[str | None, Query(description="only this school's alarms")] = None,
    device: Annotated[str | None, Query(description="only this device's alarms")] = None,
    state: Annotated[Literal["raise", "clear"] | None, Query()] = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
    offset: Offset = 0,
) -> AlarmPage:
    """Alarms of the devices the user may see."""
    items, total = crud.list_alarms(
        session,
        user=user,
        school_code=school,
        device_id=device,
        state=state,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )
    return AlarmPage(items=[AlarmPublic.model_validate(item) for item in items], total=total)
