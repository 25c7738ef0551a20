"""The FastAPI application."""

import asyncio
import contextlib
import gc
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI, HTTPException, Request, params, routing, status
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy.exc import DataError
from sqlmodel import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud import crud
from cloud.api import responses
from cloud.api.main import api_router
from cloud.api.ratelimit import TokenBuckets
from cloud.core.config import Settings
from cloud.core.db import create_db_engine, upgrade_database
from cloud.core.headers import SecurityHeaders
from cloud.errors import AccessDenied, AlreadyExists, CloudError, InUse, InvalidInput, NotFound
from cloud.web.pages import router as web_router

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"

_STATUS_OF_ERROR: tuple[tuple[type[Exception], int], ...] = (
    (NotFound, status.HTTP_404_NOT_FOUND),
    (AccessDenied, status.HTTP_403_FORBIDDEN),
    (AlreadyExists, status.HTTP_409_CONFLICT),
    (InUse, status.HTTP_409_CONFLICT),
    (CloudError, status.HTTP_400_BAD_REQUEST),
)


def _error_handler(status_code: int):
    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=status_code, content={"detail": str(exc)})

    return handle


def maintenance_once(engine: Engine, settings: Settings) -> None:
    """One roll-up and pruning run, as the app's background task does it."""
    with Session(engine) as session:
        report = crud.run_maintenance(
            session,
            actor=crud.Actor(kind="system", name="maintenance"),
            sample_retention=timedelta(days=settings.sample_retention_days),
            rollup_retention=timedelta(days=settings.rollup_retention_days),
        )
    if report is not None:
        logger.info("maintenance run", extra=report.model_dump())


async def _maintain(engine: Engine, settings: Settings) -> None:
    while True:
        await asyncio.sleep(settings.maintenance_interval_s)
        try:
            await asyncio.to_thread(maintenance_once, engine, settings)
        except Exception:
            # A failed run is retried at the next interval; it must not end the loop.
            logger.exception("maintenance run failed")


def operations_once(engine: Engine, settings: Settings) -> crud.OperationsReport:
    """One round of the periodic checks (stale gateways, verify, escalate, expire, webhooks)."""
    with Session(engine) as session:
        return crud.run_operations(session, policy=settings.fault_policy(), webhook=settings.webhook_policy())


async def _operate(engine: Engine, settings: Settings) -> None:
    while True:
        await asyncio.sleep(settings.operations_interval_s)
        try:
            await asyncio.to_thread(operations_once, engine, settings)
        except Exception:
            # A failed round is retried at the next interval; it must not end the loop.
            logger.exception("operations run failed")


# A sync batch makes some ten thousand objects and drops them when answered. With the default thresholds
# the collector runs every few hundred of them and its full passes walk every object the process holds,
# which cost the sync route more than parsing its body did.
GC_THRESHOLDS = (50_000, 20, 100)


def _tune_garbage_collector() -> None:
    """Collect young objects less often, and leave what start-up made (modules, models) out of the passes."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


SYNC_PATH = f"{API_PREFIX}/gateway/sync"


class BodyTooLarge(HTTPException):
    """A request body past its route's limit, raised while it is read: the route gets no more of it."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            status_code=status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"the request body is larger than the {limit} bytes this operation takes",
        )


def large_body_routes(app: FastAPI, settings: Settings) -> list[tuple[re.Pattern[str], frozenset[str], int]]:
    """The routes that take more than settings.max_body_bytes, as (path pattern, methods, limit): the sync
    route its largest batch, a route with a file parameter the largest upload."""
    found = []
    for route in routing.iter_route_contexts(app.routes):
        if not isinstance(route.original_route, routing.APIRoute):
            continue
        if route.path == SYNC_PATH:
            limit = settings.max_sync_body_bytes
        elif route.body_field is not None and isinstance(route.body_field.field_info, params.File):
            limit = settings.max_upload_body_bytes
        else:
            continue
        found.append((route.path_regex, frozenset(route.methods), limit))
    return found


class BodySizeLimit:
    """Refuses (413) a request body larger than its route takes: at once when its Content-Length says so,
    otherwise when the bytes read pass the limit. Nothing parses such a body or checks its token first, and
    the server holds no more of it than the limit.

    A response that starts before the body has been read to its end closes the connection, so that the
    server does not go on reading (and dropping) the rest of a body nobody wants."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._large: list[tuple[re.Pattern[str], frozenset[str], int]] | None = None
        self._default = 0

    def _limit(self, scope: Scope) -> int:
        if self._large is None:
            # The app's routes and settings, known once it is built and serving.
            app = scope["app"]
            self._default = app.state.settings.max_body_bytes
            self._large = large_body_routes(app, app.state.settings)
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        for pattern, methods, limit in self._large:
            if scope["method"] in methods and pattern.match(path):
                return limit
        return self._default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        length: int | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = int(value) if value.isdigit() else None
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
        if length is not None and length > limit:
            await self._refuse(scope, receive, send, limit)
            return
        received = 0
        body_done = not chunked and not length
        started = False

        async def receive_within_limit() -> Message:
            nonlocal received, body_done
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
                body_done = not message.get("more_body", False)
            return message

        async def send_closing_early(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not body_done:
                    message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, receive_within_limit, send_closing_early)
        except BodyTooLarge:
            # Routes answer it themselves; this is for a body read outside one (by a middleware).
            if started:
                raise
            await self._refuse(scope, receive, send, limit)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = JSONResponse(
            {"detail": BodyTooLarge(limit).detail},
            status_code=status.HTTP_413_CONTENT_TOO_LARGE,
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The cloud API; its database is migrated to the newest schema when it starts."""
    settings = settings or Settings()
    engine = create_db_engine(settings.database_url, echo=settings.sql_echo)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        upgrade_database(engine)
        if settings.tune_gc:
            _tune_garbage_collector()
        tasks = []
        if settings.maintenance_interval_s > 0:
            tasks.append(asyncio.create_task(_maintain(engine, settings), name="maintenance"))
        if settings.operations_interval_s > 0:
            tasks.append(asyncio.create_task(_operate(engine, settings), name="operations"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            engine.dispose()

    app = FastAPI(
        title="ClassOps cloud",
        version="0.2.0",
        lifespan=lifespan,
        docs_url="/docs" if settings.api_docs else None,
        redoc_url="/redoc" if settings.api_docs else None,
        openapi_url="/openapi.json" if settings.openapi_schema else None,
    )
    app.add_middleware(BodySizeLimit)
    app.add_middleware(SecurityHeaders, docs_paths=frozenset(("/docs", "/docs/oauth2-redirect", "/redoc")))
    app.state.settings = settings
    app.state.engine = engine
    app.state.sync_limiter = TokenBuckets(rate=settings.sync_rate_per_s, burst=settings.sync_burst)
    for error, status_code in _STATUS_OF_ERROR:
        app.add_exception_handler(error, _error_handler(status_code))
    app.add_exception_handler(InvalidInput, responses.invalid_input)
    app.add_exception_handler(DataError, responses.out_of_range)
    app.add_exception_handler(Exception, responses.server_error)
    app.include_router(api_router, prefix=API_PREFIX)
    # The console's /d/{device_id} is where a QR label leads, for browsers and other clients alike.
    app.include_router(web_router)
    return app
