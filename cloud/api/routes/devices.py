"""Classroom devices and their presence and health."""

from typing import Annotated

from fastapi import APIRouter, Query

from cloud import crud
from cloud.api.deps import CurrentUser, SessionDep
from cloud.models import DevicePublic

router = APIRouter(prefix="/devices", tags=["devices"])


@router.get("")
def list_devices(
    user: CurrentUser,
    session: SessionDep,
    school: Annotated[str | None, Query(description="only this school's devices")] = None,
) -> list[DevicePublic]:
    """Devices the user may see."""
    devices = crud.list_devices(session, user=user, school_code=school)
    return [DevicePublic.model_validate(device) for device in devices]


@router.get("/{device_id}")
def get_device(device_id: str, user: CurrentUser, session: SessionDep) -> DevicePublic:
    """One device."""
    return DevicePublic.model_validate(crud.get_device(session, user=user, device_id=device_id))
