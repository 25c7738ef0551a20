"""What the console's page areas share: the settings, the answer to a form action, page and form types."""

from typing import Annotated

from fastapi import Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from cloud.bounds import whole_number
from cloud.core.config import Settings
from cloud.errors import InvalidInput
from cloud.models import MAX_ROW_ID
from cloud.web.session import wants_json

Page = Annotated[int, Query(ge=1, le=100_000)]
# Commands offered on the console; the API takes every command the firmware knows.
CONSOLE_COMMANDS = ("power_off", "power_on", "reboot")


def app_settings(request: Request) -> Settings:
    """The running service's settings."""
    return request.app.state.settings


def done(request: Request, location: str, message: str = "") -> Response:
    """After a successful action: JSON for the script (which then follows `location`), else a redirect."""
    if wants_json(request):
        return JSONResponse({"ok": True, "location": location, "message": message})
    return RedirectResponse(location, status_code=303)


def chosen_classroom(text: str) -> int | None:
    """A classroom chosen in a form: none when left empty; InvalidInput when not a classroom's number."""
    if not text.strip():
        return None
    room = whole_number(text, high=MAX_ROW_ID)
    if room is None:
        raise InvalidInput(f"{text!r} is not a classroom's number")
    return room
