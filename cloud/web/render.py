"""Templates, static files and error pages of the console."""

import hashlib
from collections.abc import Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloud import policy
from cloud.errors import AccessDenied, AlreadyExists, CloudError, InUse, InvalidInput, NotFound
from cloud.models import User
from cloud.web import charts, i18n
from cloud.web.session import csrf_token, language, remember_csrf, wants_json

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}

_STATUS_OF_ERROR: tuple[tuple[type[CloudError], int], ...] = (
    (NotFound, status.HTTP_404_NOT_FOUND),
    (AccessDenied, status.HTTP_403_FORBIDDEN),
    (AlreadyExists, status.HTTP_409_CONFLICT),
    (InUse, status.HTTP_409_CONFLICT),
    (InvalidInput, status.HTTP_422_UNPROCESSABLE_CONTENT),
)


def _static_versions() -> dict[str, str]:
    # A content hash in each asset's URL lets browsers keep it for long and still see a new release at once.
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()[:10]
        for path in STATIC.iterdir()
        if path.suffix in STATIC_TYPES
    }


STATIC_VERSIONS = _static_versions()


def merge_query(params: Any, **changes: Any) -> str:
    """The page's query string with some parameters replaced: paging links keep the list's filters."""
    items = [(key, value) for key, value in params.multi_items() if key not in changes]
    items += [(key, str(value)) for key, value in changes.items() if value not in (None, "")]
    return urlencode(items)


environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters["merge_query"] = merge_query
environment.globals.update(policy.TEMPLATE_GLOBALS)


def static_url(name: str) -> str:
    """The versioned URL of a file of cloud/web/static."""
    return f"/static/{name}?v={STATIC_VERSIONS.get(name, '0')}"


def render(request: Request, template: str, user: User | None, *, status_code: int = 200, **context: Any) -> Response:
    """A page, in the user's language, with the CSRF token its forms need."""
    lang = language(request)
    page = environment.get_template(template).render(
        request=request,
        user=user,
        lang=lang,
        t=partial(i18n.translate, lang),
        csrf=csrf_token(request),
        local_time=i18n.local_time,
        duration=partial(i18n.duration, lang=lang),
        percent=i18n.percent,
        meter=charts.meter,
        static_url=static_url,
        path=request.url.path,
        **context,
    )
    response = HTMLResponse(page, status_code=status_code)
    remember_csrf(request, response)
    # Pages carry personal and operational data: no shared or back-button caches.
    response.headers["Cache-Control"] = "no-store"
    return response


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(item) for item in error.get("loc", ())[1:])
        parts.append(f"{where}: {error.get('msg', '')}" if where else str(error.get("msg", "")))
    return "; ".join(parts) or "invalid input"


def error_response(request: Request, status_code: int, message: str) -> Response:
    """The error as JSON for the console's script, or as a page for a browser."""
    if wants_json(request):
        return JSONResponse({"detail": message}, status_code=status_code)
    lang = language(request)
    title = {404: "not_found", 403: "forbidden"}.get(status_code, "error")
    return render(
        request,
        "error.html",
        getattr(request.state, "web_user", None),
        status_code=status_code,
        title=i18n.translate(lang, title),
        message=message,
    )


class WebRoute(APIRoute):
    """A console route: errors of the data layer and of validation become pages (or JSON for the script)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except CloudError as exc:
                code = next((c for kind, c in _STATUS_OF_ERROR if isinstance(exc, kind)), status.HTTP_400_BAD_REQUEST)
                return error_response(request, code, str(exc))
            except RequestValidationError as exc:
                return error_response(request, status.HTTP_422_UNPROCESSABLE_CONTENT, _validation_message(exc))
            except (HTTPException, StarletteHTTPException) as exc:
                if exc.status_code < 400:
                    raise
                return error_response(request, exc.status_code, str(exc.detail))

        return guarded
