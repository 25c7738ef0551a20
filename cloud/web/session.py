"""Sign-in for the console: the API's own opaque token in an HttpOnly cookie, and CSRF protection.

The cookie is SameSite=Lax, so other sites cannot make a browser post with it; every form also carries a
double-submit token (a random cookie that a script on another origin cannot read) as a second guard.
"""

import hmac
import secrets
from datetime import timedelta
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, Form, HTTPException, Request, Response, status
from sqlmodel import Session

from cloud import crud
from cloud.api.deps import SessionDep, client_ip
from cloud.core.config import Settings
from cloud.core.db import release_connection
from cloud.crud import Actor
from cloud.models import User
from cloud.web import i18n

SESSION_COOKIE = "classops_session"
CSRF_COOKIE = "classops_csrf"
LANG_COOKIE = "classops_lang"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
# What the console's script sends, so that errors come back as JSON for it to show, not as a page.
FETCH_HEADER = "x-requested-with"
YEAR_S = 365 * 24 * 3600


def wants_json(request: Request) -> bool:
    """True for the console script's requests."""
    return request.headers.get(FETCH_HEADER) == "fetch"


def language(request: Request) -> str:
    """The language chosen by the switch, else Chinese."""
    return i18n.normalise(request.cookies.get(LANG_COOKIE))


def safe_next(target: str | None) -> str:
    """A local path to go to after sign-in; anything pointing off the site becomes the home page."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def cookies_secure(settings: Settings) -> bool:
    """Whether cookies are marked Secure (sent over HTTPS only): when people reach the service by https."""
    return settings.public_base_url.startswith("https://")


def csrf_token(request: Request) -> str:
    """The double-submit token of this browser, made on first sight and set on the response by `remember_csrf`."""
    token = request.cookies.get(CSRF_COOKIE) or getattr(request.state, "new_csrf", None)
    if not token:
        token = secrets.token_urlsafe(24)
        request.state.new_csrf = token
    return token


def remember_csrf(request: Request, response: Response) -> None:
    """Set the CSRF cookie if this request made one."""
    token = getattr(request.state, "new_csrf", None)
    if token:
        response.set_cookie(
            CSRF_COOKIE,
            token,
            max_age=YEAR_S,
            samesite="lax",
            secure=cookies_secure(request.app.state.settings),
            path="/",
        )


def verify_csrf(request: Request, csrf: Annotated[str, Form()] = "") -> None:
    """Refuse a form post whose token does not match the browser's CSRF cookie."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = csrf or request.headers.get(CSRF_HEADER, "")
    if not cookie or not sent or not hmac.compare_digest(cookie.encode(), sent.encode()):
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN, detail=i18n.translate(language(request), "csrf_failed")
        )


def start_session(request: Request, response: Response, session: Session, user: User) -> None:
    """Issue a login token for `user` and put it in the session cookie."""
    settings: Settings = request.app.state.settings
    ttl = timedelta(minutes=settings.access_token_ttl_minutes)
    token, _ = crud.create_auth_token(session, user=user, ttl=ttl, client_ip=client_ip(request, settings))
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(ttl.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=cookies_secure(settings),
        path="/",
    )


def end_session(request: Request, response: Response, session: Session) -> None:
    """Revoke the login token and drop the cookie."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        crud.revoke_auth_token(session, token=token, client_ip=client_ip(request, request.app.state.settings))
    response.delete_cookie(SESSION_COOKIE, path="/")


def session_user(request: Request, session: Session) -> User | None:
    """The user the session cookie belongs to, if it is valid."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    user = crud.user_for_token(session, token=token)
    release_connection(session)
    return user


def get_web_user(request: Request, session: SessionDep) -> User:
    """The signed-in user; otherwise the sign-in page (or a 401 for the console script)."""
    user = session_user(request, session)
    if user is not None:
        # Error pages show the same navigation as the page that failed.
        request.state.web_user = user
        return user
    if wants_json(request):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED, detail=i18n.translate(language(request), "session_expired")
        )
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    raise HTTPException(status_code=status.HTTP_303_SEE_OTHER, headers={"Location": f"/login?next={quote(target)}"})


WebUser = Annotated[User, Depends(get_web_user)]


def get_web_actor(request: Request, user: WebUser) -> Actor:
    """The signed-in user as the author of a write, with the address for the audit log."""
    return Actor.of_user(user, client_ip(request, request.app.state.settings))


WebActor = Annotated[Actor, Depends(get_web_actor)]
Csrf = Annotated[None, Depends(verify_csrf)]
