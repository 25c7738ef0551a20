"""Login sessions of people: opaque bearer tokens."""

from datetime import timedelta

from fastapi import APIRouter, HTTPException, status

from cloud import crud
from cloud.api.deps import BearerToken, ClientIP, CurrentUser, SessionDep, SettingsDep
from cloud.models import LoginRequest, TokenPublic, UserPublic

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/login")
def login(body: LoginRequest, session: SessionDep, settings: SettingsDep, ip: ClientIP) -> TokenPublic:
    """Exchange a username and password for a bearer token."""
    user = crud.authenticate(session, username=body.username, password=body.password)
    if user is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="incorrect username or password, or the account is disabled",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token, record = crud.create_auth_token(
        session, user=user, ttl=timedelta(minutes=settings.access_token_ttl_minutes), client_ip=ip
    )
    return TokenPublic(access_token=token, expires_at=record.expires_at)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(session: SessionDep, token: BearerToken, _user: CurrentUser, ip: ClientIP) -> None:
    """End the login session of the token sent."""
    crud.revoke_auth_token(session, token=token, client_ip=ip)


@router.get("/me")
def me(user: CurrentUser) -> UserPublic:
    """The signed-in user."""
    return UserPublic.model_validate(user)
