"""Login sessions of people: opaque bearer tokens."""

from datetime import timedelta

from fastapi import APIRouter, HTTPException, status

from cloud import crud
from cloud.api.deps import BearerToken, ClientIP, CurrentUser, SessionDep, SettingsDep
from cloud.models import LoginRequest, TokenPublic, UserPublic

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post(
    "/login",
    responses={
        401: {"description": "incorrect username or password, or the account is disabled"},
        429: {"description": "too many failed sign-ins for this account or address; see Retry-After"},
    },
)
def login(body: LoginRequest, session: SessionDep, settings: SettingsDep, ip: ClientIP) -> TokenPublic:
    """Exchange a username and password for a bearer token; failed sign-ins are throttled."""
    result = crud.sign_in(session, username=body.username, password=body.password, client_ip=ip)
    user = result.user
    if result.retry_after_s:
        raise HTTPException(
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"too many failed sign-ins; try again in {result.retry_after_s} s",
            headers={"Retry-After": str(result.retry_after_s)},
        )
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
