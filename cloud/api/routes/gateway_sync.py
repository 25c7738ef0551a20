"""Batches pushed by school gateways, and the downlink they pull commands and configs from."""

import asyncio
import math
import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine
from sqlmodel import Session

from cloud import crud
from cloud.api.deps import ClientIP, CurrentGateway, SessionDep, SettingsDep
from cloud.crud import commands
from cloud.models import MAX_BIGINT, Downlink, SyncBatch, SyncResult

MAX_DOWNLINK_WAIT_S = 30
DOWNLINK_POLL_S = 0.5

router = APIRouter(prefix="/gateway", tags=["gateway"])


@router.post(
    "/sync",
    responses={429: {"description": "the gateway syncs faster than its rate limit; see Retry-After"}},
)
def sync(
    batch: SyncBatch,
    gateway: CurrentGateway,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
    ip: ClientIP,
) -> SyncResult:
    """Apply a batch of records; every record comes back confirmed or rejected."""
    wait = request.app.state.sync_limiter.take(gateway.id)
    if wait > 0:
        raise HTTPException(
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"gateway {gateway.id} syncs faster than {settings.sync_rate_per_s} batches a second; "
            f"retry in {math.ceil(wait)} s",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    if len(batch.records) > settings.max_sync_records:
        raise HTTPException(
            status_code=status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"a batch holds at most {settings.max_sync_records} records; this one has {len(batch.records)}",
        )
    return crud.apply_sync_batch(
        session, gateway=gateway, records=batch.records, client_ip=ip, policy=settings.fault_policy()
    )


@router.get("/downlink")
async def downlink(
    request: Request,
    gateway: CurrentGateway,
    settings: SettingsDep,
    wait: Annotated[float, Query(ge=0, le=MAX_DOWNLINK_WAIT_S, description="seconds to wait for something")] = 0,
    config_cursor: Annotated[int, Query(ge=0, le=MAX_BIGINT, description="the last config_cursor received")] = 0,
) -> Downlink:
    """Commands queued for this gateway's school (now marked sent) and device configs changed after
    `config_cursor`; held open up to `wait` seconds until there is something."""
    engine = request.app.state.engine
    deadline = time.monotonic() + min(wait, settings.downlink_max_wait_s)
    school_code = gateway.school_code
    while True:
        found = await run_in_threadpool(_take_downlink, engine, school_code, config_cursor)
        if found.commands or found.configs or time.monotonic() >= deadline:
            return found
        # Polling the database keeps this right with any number of API workers.
        await asyncio.sleep(min(DOWNLINK_POLL_S, max(0.0, deadline - time.monotonic())))


def _take_downlink(engine: Engine, school_code: str, config_cursor: int) -> Downlink:
    with Session(engine) as session:
        return commands.take_downlink(session, school_code=school_code, config_cursor=config_cursor)
