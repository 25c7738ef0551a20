"""The console's CSS and script."""

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse

from cloud.errors import NotFound
from cloud.web.render import STATIC, STATIC_TYPES, WebRoute

router = APIRouter(route_class=WebRoute, include_in_schema=False)


@router.get("/static/{name}")
def static_file(name: str) -> Response:
    """The console's CSS and script, cached by the browser for a year (their URLs carry a version)."""
    path = STATIC / name
    if "/" in name or path.suffix not in STATIC_TYPES or not path.is_file():
        raise NotFound(f"no static file {name}")
    return FileResponse(
        path, media_type=STATIC_TYPES[path.suffix], headers={"Cache-Control": "public, max-age=31536000, immutable"}
    )
