"""Batches pushed by school gateways."""

import math

from fastapi import APIRouter, HTTPException, Request, status

from cloud import crud
from cloud.api.deps import ClientIP, CurrentGateway, SessionDep, SettingsDep
from cloud.models import SyncBatch, SyncResult

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
    return crud.apply_sync_batch(session, gateway=gateway, records=batch.records, client_ip=ip)
