"""Commands to a device, a classroom, a school, a district or the whole county, and their states."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query, status

from cloud.api.deps import CurrentActor, CurrentUser, Offset, SessionDep
from cloud.crud import commands
from cloud.crud.common import as_utc
from cloud.models import CommandBatchPublic, CommandIn

router = APIRouter(prefix="/commands", tags=["commands"])


@router.post("", status_code=status.HTTP_201_CREATED)
def send_command(body: CommandIn, actor: CurrentActor, session: SessionDep) -> CommandBatchPublic:
    """Queue a command for every device of the target, one cid each; blackboard commands go to blackboards."""
    batch = commands.send_command(
        session,
        actor=actor,
        target=body.target.model_dump(exclude_none=True),
        name=body.name,
        args=body.args,
        ttl_s=body.ttl_s,
        send_at=as_utc(body.send_at),
    )
    assert actor.user is not None
    return commands.read_batch(session, user=actor.user, batch_id=batch.id, limit=0)


@router.get("")
def list_commands(
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Offset = 0,
) -> list[CommandBatchPublic]:
    """Commands reaching devices the user may see, newest first, with counts per state."""
    return commands.list_batches(session, user=user, limit=limit, offset=offset)


@router.get("/{batch_id}")
def get_command(
    batch_id: str,
    user: CurrentUser,
    session: SessionDep,
    state: Annotated[Literal["queued", "sent", "delivered", "succeeded", "failed", "expired"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=0, le=50_000)] = 1000,
    offset: Offset = 0,
) -> CommandBatchPublic:
    """One command: counts per state and each device's command (filtered by state, paged)."""
    return commands.read_batch(session, user=user, batch_id=batch_id, state=state, limit=limit, offset=offset)
