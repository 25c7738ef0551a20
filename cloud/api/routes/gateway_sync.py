"""Batches pushed by school gateways."""

from fastapi import APIRouter, HTTPException, status

from cloud import crud
from cloud.api.deps import CurrentGateway, SessionDep, SettingsDep
from cloud.models import SyncBatch, SyncResult

router = APIRouter(prefix="/gateway", tags=["gateway"])


@router.post("/sync")
def sync(batch: SyncBatch, gateway: CurrentGateway, session: SessionDep, settings: SettingsDep) -> SyncResult:
    """Apply a batch of records; every record comes back confirmed or rejected."""
    if len(batch.records) > settings.max_sync_records:
        raise HTTPException(
            status_code=status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"a batch holds at most {settings.max_sync_records} records; "
            f"this one has {len(batch.records)}",
        )
    return crud.apply_sync_batch(session, gateway=gateway, records=batch.records)
