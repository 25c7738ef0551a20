"""Liveness: answers once migrations have run and the database responds."""

from fastapi import APIRouter, HTTPException, status

from cloud import crud
from cloud.api.deps import SessionDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(session: SessionDep) -> dict[str, str]:
    """{"status": "ok"} while the service and its database are up."""
    if not crud.database_ok(session):
        raise HTTPException(status_code=status.HTTP_503_SERVICE_UNAVAILABLE, detail="database unavailable")
    return {"status": "ok"}
