"""The audit log: read-only, for auditors and county admins."""

from typing import Annotated

from fastapi import APIRouter, Query

from cloud import crud
from cloud.api.deps import CurrentUser, Offset, SessionDep
from cloud.api.params import Since
from cloud.models import AuditEntryPublic, AuditPage

router = APIRouter(prefix="/audit-log", tags=["audit"])

MAX_PAGE = 10_000


@router.get("")
def list_audit_entries(
    user: CurrentUser,
    session: SessionDep,
    entity: Annotated[str | None, Query(description="e.g. device, school, gateway, user")] = None,
    entity_id: Annotated[str | None, Query()] = None,
    actor: Annotated[str | None, Query(description="a username or gateway id")] = None,
    school: Annotated[str | None, Query()] = None,
    since: Since = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Offset = 0,
) -> AuditPage:
    """Audit entries of the user's district (all of them for city-wide staff), newest first."""
    items, total = crud.list_audit_entries(
        session,
        user=user,
        entity=entity,
        entity_id=entity_id,
        actor=actor,
        school_code=school,
        since=since,
        limit=limit,
        offset=offset,
    )
    return AuditPage(items=[AuditEntryPublic.model_validate(item) for item in items], total=total)
