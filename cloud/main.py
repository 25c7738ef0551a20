"""The FastAPI application."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse

from cloud.api.main import api_router
from cloud.core.config import Settings
from cloud.core.db import create_db_engine, upgrade_database
from cloud.errors import AccessDenied, AlreadyExists, CloudError, InvalidInput, NotFound

API_PREFIX = "/api/v1"

_STATUS_OF_ERROR: tuple[tuple[type[CloudError], int], ...] = (
    (NotFound, status.HTTP_404_NOT_FOUND),
    (AccessDenied, status.HTTP_403_FORBIDDEN),
    (AlreadyExists, status.HTTP_409_CONFLICT),
    (InvalidInput, status.HTTP_422_UNPROCESSABLE_CONTENT),
)


def _error_handler(status_code: int):
    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=status_code, content={"detail": str(exc)})

    return handle


def create_app(settings: Settings | None = None) -> FastAPI:
    """The cloud API; its database is migrated to the newest schema when it starts."""
    settings = settings or Settings()
    engine = create_db_engine(settings.database_url, echo=settings.sql_echo)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        upgrade_database(engine)
        yield
        engine.dispose()

    app = FastAPI(title="ClassOps cloud", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    for error, status_code in _STATUS_OF_ERROR:
        app.add_exception_handler(error, _error_handler(status_code))
    app.include_router(api_router, prefix=API_PREFIX)
    return app
