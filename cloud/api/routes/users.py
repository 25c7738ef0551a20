"""People's accounts: lifting the sign-in locks that guessing left on an account."""

from typing import Annotated

from fastapi import APIRouter, Path

from cloud import crud
from cloud.api.deps import CurrentActor, SessionDep
from cloud.models import SignInUnlocked

router = APIRouter(prefix="/users", tags=["users"])

Username = Annotated[str, Path(min_length=1, max_length=64, description="the account's username")]


@router.post("/{username}/unlock")
def unlock_sign_in(username: Username, actor: CurrentActor, session: SessionDep) -> SignInUnlocked:
    """Let the account sign in again at once from every address (county admins of the account's district)."""
    return crud.unlock_sign_in(session, actor=actor, username=username)
