"""Sign-in, sign-out, the language switch and each role's start page."""

import math
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from cloud import crud, policy
from cloud.api.deps import SessionDep, client_ip
from cloud.models import Role, User
from cloud.web import i18n
from cloud.web.pages.common import app_settings
from cloud.web.render import WebRoute, render
from cloud.web.session import (
    LANG_COOKIE,
    YEAR_S,
    Csrf,
    cookies_secure,
    end_session,
    safe_next,
    session_user,
    start_session,
)

router = APIRouter(route_class=WebRoute, include_in_schema=False)

HOME_OF_ROLE: dict[str, str] = {
    Role.TECHNICIAN: "/orders",
    Role.CONTRACTOR_MANAGER: "/orders",
    Role.COUNTY_ADMIN: "/county",
    Role.AUDITOR: "/county",
}


def _home(user: User) -> str:
    if policy.admins_one_school(user) and user.school_code:
        return f"/schools/{user.school_code}"
    return HOME_OF_ROLE.get(user.role, "/orders")


@router.get("/")
def home(request: Request, session: SessionDep) -> Response:
    """Each role's start page."""
    user = session_user(request, session)
    if user is None:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse(_home(user), status_code=303)


@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:
    """The sign-in form."""
    return render(request, "login.html", None, next=safe_next(next), failed=False)


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    _csrf: Csrf,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Check the credentials (throttled, as the API's) and start a session."""
    result = None
    if username and password:
        ip = client_ip(request, app_settings(request))
        result = crud.sign_in(session, username=username, password=password, client_ip=ip)
    if result is not None and result.retry_after_s:
        response = render(
            request,
            "login.html",
            None,
            status_code=429,
            next=safe_next(next),
            failed=False,
            throttled_minutes=math.ceil(result.retry_after_s / 60),
            username=username,
        )
        response.headers["Retry-After"] = str(result.retry_after_s)
        return response
    user = result.user if result is not None else None
    if user is None:
        return render(
            request, "login.html", None, status_code=401, next=safe_next(next), failed=True, username=username
        )
    target = safe_next(next)
    response = RedirectResponse(_home(user) if target == "/" else target, status_code=303)
    start_session(request, response, session, user)
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep, _csrf: Csrf) -> Response:
    """End the session."""
    response = RedirectResponse("/login", status_code=303)
    end_session(request, response, session)
    return response


@router.get("/lang/{lang}")
def switch_language(request: Request, lang: str, next: str = "/") -> Response:
    """Switch between Chinese and English; remembered in a cookie."""
    response = RedirectResponse(safe_next(next), status_code=303)
    secure = cookies_secure(request.app.state.settings)
    response.set_cookie(LANG_COOKIE, i18n.normalise(lang), max_age=YEAR_S, samesite="lax", secure=secure, path="/")
    return response
