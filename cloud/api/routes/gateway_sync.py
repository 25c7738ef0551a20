"""Batches pushed by school gateways, and the downlink they pull commands and configs from."""

import asyncio
import email.message
import json
import math
import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy import Engine
from sqlmodel import Session

from cloud.api.deps import ClientIP, CurrentGateway, SessionDep, SettingsDep
from cloud.crud import commands
from cloud.models import MAX_BIGINT, Downlink, SyncBatch, SyncRecordIn, SyncResult
from cloud.sync import apply_sync_batch

MAX_DOWNLINK_WAIT_S = 30
DOWNLINK_POLL_S = 0.5

router = APIRouter(prefix="/gateway", tags=["gateway"])

# The body of /sync is read and checked here rather than by FastAPI: at thousands of records a second the
# standard JSON parser and a model per record cost more than applying the records. What a client sees is
# the same as if SyncBatch were the declared body: the checks below accept exactly the batches that model
# accepts as they are, and anything else goes through the model itself and fails (or passes) as it would.
_BATCH = TypeAdapter(SyncBatch)
_NO_BODY = object()
# orjson reads an integer past 64 bits as a float, where Python's parser keeps it exact: a body with a
# number of 19 digits or more is read by the latter. In the body with digits made "0" and the characters
# that can come before a number made "|", such a number shows as "|" and 19 "0"s.
_NUMBER_SHAPES = bytes.maketrans(b"0123456789:,[- \t\r\n", b"0000000000" + b"|" * 8)
_LONG_NUMBER = b"|" + b"0" * 19


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its definitions written in place, for an operation's OpenAPI entry."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            reference = node.get("$ref")
            if isinstance(reference, str) and reference.startswith("#/$defs/"):
                return resolve(definitions[reference.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    return resolve(schema)


_SYNC_BODY_DOC = {
    "requestBody": {"content": {"application/json": {"schema": _inline_schema(SyncBatch)}}, "required": True}
}


def _json_decode_error(exc: json.JSONDecodeError) -> RequestValidationError:
    return RequestValidationError(
        [
            {
                "type": "json_invalid",
                "loc": ("body", exc.pos),
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": exc.msg},
            }
        ],
        body=exc.doc,
    )


def _refuse_lone_surrogates(parsed: Any) -> None:
    """Python's parser takes escapes of lone UTF-16 surrogates ("\\ud800"), which no UTF-8 text, and so no
    database, can hold: refuse the body as invalid JSON text rather than fail later while storing it."""
    try:
        json.dumps(parsed, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        found = exc.object[exc.start : exc.end].encode("unicode_escape").decode("ascii")
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body",),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": f"a string holds a lone UTF-16 surrogate ({found}), which is not Unicode text"},
                }
            ]
        ) from None


async def sync_body(request: Request) -> Any:
    """The request's body as FastAPI hands one to a body parameter: parsed when it is JSON, else bytes."""
    try:
        raw = await request.body()
        if not raw:
            return _NO_BODY
        content_type = request.headers.get("content-type")
        if not content_type:
            return raw
        message = email.message.Message()
        message["content-type"] = content_type
        subtype = message.get_content_subtype()
        if message.get_content_maintype() != "application" or not (subtype == "json" or subtype.endswith("+json")):
            return raw
        if _LONG_NUMBER not in raw.translate(_NUMBER_SHAPES):
            try:
                return orjson.loads(raw)
            except orjson.JSONDecodeError:
                # What orjson refuses but Python's parser takes (NaN, UTF-16, lone surrogates), and the
                # error message for what neither takes, are the standard parser's.
                pass
        parsed = json.loads(raw)
        _refuse_lone_surrogates(parsed)
        return parsed
    except json.JSONDecodeError as exc:
        raise _json_decode_error(exc) from exc
    except (HTTPException, RequestValidationError):
        raise
    except Exception as exc:
        raise HTTPException(
            status_code=status.HTTP_400_BAD_REQUEST, detail="There was an error parsing the body"
        ) from exc


SyncBody = Annotated[Any, Depends(sync_body)]


def _is_gseq(value: Any) -> bool:
    return type(value) is int and 0 < value <= MAX_BIGINT


def batch_records(body: Any) -> list[dict[str, Any]] | list[SyncRecordIn]:
    """The records of a sync body; RequestValidationError, as FastAPI raises it, if SyncBatch refuses it."""
    if isinstance(body, dict):
        records = body.get("records")
        sent_at = body.get("sent_at")
        if (
            type(records) is list
            and (sent_at is None or type(sent_at) is float or type(sent_at) is int)
            and all(type(record) is dict and _is_gseq(record.get("gseq")) for record in records)
        ):
            return records
    if body is _NO_BODY:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}], body=None
        )
    try:
        batch = _BATCH.validate_python(body, from_attributes=True)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error.get("loc", ()))} for error in exc.errors(include_url=False)]
        raise RequestValidationError(errors, body=body) from None
    return batch.records


@router.post(
    "/sync",
    responses={
        422: {
            "description": "Validation Error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}},
        },
        429: {"description": "the gateway syncs faster than its rate limit; see Retry-After"},
    },
    openapi_extra=_SYNC_BODY_DOC,
)
def sync(
    # The token first: a body is read only for a known gateway.
    gateway: CurrentGateway,
    body: SyncBody,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
    ip: ClientIP,
) -> SyncResult:
    """Apply a batch of records; every record comes back confirmed or rejected."""
    records = batch_records(body)
    wait = request.app.state.sync_limiter.take(gateway.id)
    if wait > 0:
        raise HTTPException(
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"gateway {gateway.id} syncs faster than {settings.sync_rate_per_s} batches a second; "
            f"retry in {math.ceil(wait)} s",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    if len(records) > settings.max_sync_records:
        raise HTTPException(
            status_code=status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"a batch holds at most {settings.max_sync_records} records; this one has {len(records)}",
        )
    return apply_sync_batch(
        session, gateway=gateway, records=records, client_ip=ip, policy=settings.fault_policy()
    )


@router.get("/downlink")
async def downlink(
    request: Request,
    gateway: CurrentGateway,
    session: SessionDep,
    settings: SettingsDep,
    wait: Annotated[float, Query(ge=0, le=MAX_DOWNLINK_WAIT_S, description="seconds to wait for something")] = 0,
    config_cursor: Annotated[int, Query(ge=0, le=MAX_BIGINT, description="the last config_cursor received")] = 0,
) -> Downlink:
    """Commands queued for this gateway's school (now marked sent) and device configs changed after
    `config_cursor`; held open up to `wait` seconds until there is something."""
    engine = request.app.state.engine
    deadline = time.monotonic() + min(wait, settings.downlink_max_wait_s)
    school_code = gateway.school_code
    # The token check's session would otherwise hold a pooled connection for the whole wait: with a few
    # dozen schools long-polling, the pool runs dry.
    session.close()
    while True:
        if await request.is_disconnected():
            # The gateway has gone (stopped, or gave up on this request): what is queued for it stays
            # queued for its next poll instead of being marked sent to no one.
            return Downlink(commands=[], configs=[], config_cursor=config_cursor)
        found = await run_in_threadpool(_take_downlink, engine, school_code, config_cursor)
        if found.commands or found.configs or time.monotonic() >= deadline:
            return found
        # Polling the database keeps this right with any number of API workers.
        await asyncio.sleep(min(DOWNLINK_POLL_S, max(0.0, deadline - time.monotonic())))


def _take_downlink(engine: Engine, school_code: str, config_cursor: int) -> Downlink:
    with Session(engine) as session:
        return commands.take_downlink(session, school_code=school_code, config_cursor=config_cursor)
