"""Dependencies of the API routes, as Annotated aliases."""

from collections.abc import Iterator, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from cloud import crud, registry
from cloud.core.config import Settings
from cloud.core.db import release_connection
from cloud.crud import Actor
from cloud.models import MAX_ROW_ID, Gateway, User

RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="the row's id")]
Offset = Annotated[int, Query(ge=0, le=MAX_ROW_ID, description="rows to skip")]

_bearer = HTTPBearer(auto_error=False, description="a login token, or a gateway's token for /gateway/sync")


def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    """A database session for one request."""
    with Session(request.app.state.engine) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def get_bearer_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The token of an `Authorization: Bearer` header."""
    if credentials is None or not credentials.credentials:
        raise _unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    return credentials.credentials


BearerToken = Annotated[str, Depends(get_bearer_token)]


def get_current_user(session: SessionDep, token: BearerToken) -> User:
    """The signed-in user."""
    user = crud.user_for_token(session, token=token)
    release_connection(session)
    if user is None:
        raise _unauthorized("invalid or expired login token; log in again")
    return user


def get_current_gateway(session: SessionDep, token: BearerToken) -> Gateway:
    """The gateway whose token authorises the request."""
    gateway = registry.gateway_for_token(session, token=token)
    release_connection(session)
    if gateway is None:
        raise _unauthorized("unknown gateway token")
    return gateway


CurrentUser = Annotated[User, Depends(get_current_user)]
CurrentGateway = Annotated[Gateway, Depends(get_current_gateway)]


def _address(text: str) -> IPv4Address | IPv6Address | None:
    """An address as a proxy writes it: bare, or with a port ("1.2.3.4:80", "[::1]:80"); None if not one."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ip_address(text)
    except ValueError:
        return None


def _trusted(address: IPv4Address | IPv6Address, networks: Sequence[IPv4Network | IPv6Network]) -> bool:
    return any(address in network for network in networks)


def client_ip(request: Request, settings: Settings) -> str | None:
    """The address the request came from: the peer's, or, when the peer is a trusted proxy, the nearest
    X-Forwarded-For hop that is not one. The header is read from the right: each trusted proxy appends the
    address it saw, while everything to the left of the first untrusted hop is the client's own writing."""
    peer = request.client.host if request.client else None
    if peer is None or not settings.trusted_proxies:
        return peer
    nearest = _address(peer)
    if nearest is None or not _trusted(nearest, settings.trusted_proxies):
        return peer
    hops = ",".join(request.headers.getlist("x-forwarded-for")).split(",")
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            # Not an address: no proxy of ours wrote it, so the nearest address known is the last hop read.
            break
        nearest = address
        if not _trusted(address, settings.trusted_proxies):
            break
    return str(nearest)


def get_client_ip(request: Request, settings: SettingsDep) -> str | None:
    """The client's address, for the audit log."""
    return client_ip(request, settings)


ClientIP = Annotated[str | None, Depends(get_client_ip)]


def get_actor(user: CurrentUser, ip: ClientIP) -> Actor:
    """The signed-in user as the author of a write."""
    return Actor.of_user(user, ip)


CurrentActor = Annotated[Actor, Depends(get_actor)]
