"""The API's error responses: their shapes, their OpenAPI entries, and the handlers that write them.

A refused request is answered `{"detail": "<what is wrong>"}` (400, 401, 403, 404, 409, 413, 429), except a
422, which has FastAPI's HTTPValidationError shape whether the request's form or a rule of the domain
refused it. An unexpected failure is a 500 that carries a request id, also written to the log with the
traceback, so a report of it can be matched to its cause.
"""

import logging
import re
import uuid
from typing import Any

from fastapi import Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
# A request id set by a proxy in front is kept, so that its log and ours name the request alike.
_GIVEN_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{8,64}")


class ErrorResponse(BaseModel):
    """A refused request, and why, in words a person can act on."""

    detail: str


class ServerErrorResponse(BaseModel):
    """An unexpected failure; the request id finds it in the service's log."""

    detail: str
    request_id: str


_VALIDATION_ERROR: dict[str, Any] = {
    "description": "Validation Error: the request's form, or a rule of the domain, refused it",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}},
}

# Every operation behind a login can be refused for the login, the caller's reach, a thing that is not
# there or already is, a body past the size limit, or a domain rule; any can fail unexpectedly.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "the request cannot be carried out as sent"},
    401: {"model": ErrorResponse, "description": "no login token, or one that is invalid or expired"},
    403: {"model": ErrorResponse, "description": "the caller's role or school does not allow this"},
    404: {"model": ErrorResponse, "description": "not found, or not within the caller's reach"},
    409: {"model": ErrorResponse, "description": "it exists already, or other records still refer to it"},
    413: {"model": ErrorResponse, "description": "the request body is larger than this operation takes"},
    422: _VALIDATION_ERROR,
    500: {"model": ServerErrorResponse, "description": "an unexpected failure, logged under the request id"},
}


def validation_errors(message: str, loc: tuple[str | int, ...] = ()) -> list[dict[str, Any]]:
    """A domain rule's refusal as the one entry of an HTTPValidationError's list."""
    return [{"type": "value_error", "loc": list(loc), "msg": message}]


async def invalid_input(_request: Request, exc: Exception) -> JSONResponse:
    """A rule of the domain refused the input: 422, shaped as FastAPI's own validation errors."""
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, content={"detail": validation_errors(str(exc))}
    )


async def out_of_range(_request: Request, exc: Exception) -> JSONResponse:
    """A value the checks let through but the database column cannot hold (e.g. an integer too large)."""
    logger.warning("database refused a value: %s", exc)
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={"detail": validation_errors("a value is out of range for what the service stores")},
    )


def request_id(request: Request) -> str:
    """The id of the request: the one a proxy gave it, or a new one."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _GIVEN_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


async def server_error(request: Request, exc: Exception) -> JSONResponse:
    """Any other exception: logged with its traceback and a request id, answered 500 with that id."""
    rid = request_id(request)
    logger.error(
        "unexpected error answering %s %s (request id %s)",
        request.method,
        request.url.path,
        rid,
        exc_info=exc,
        extra={"request_id": rid},
    )
    return JSONResponse(
        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
        content={"detail": f"an unexpected error; quote request id {rid} when reporting it", "request_id": rid},
        headers={REQUEST_ID_HEADER: rid},
    )
