"""Classroom devices: the asset register, presence, health history and QR labels."""

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from cloud import crud, labels, registry
from cloud.api.deps import CurrentActor, CurrentUser, Offset, SessionDep, SettingsDep
from cloud.api.params import Since, Until
from cloud.crud import commands
from cloud.models import (
    MAX_ROW_ID,
    DeviceConfigIn,
    DeviceConfigPublic,
    DeviceCreate,
    DevicePublic,
    DeviceUpdate,
    HealthHourlyPublic,
    HealthSamplePublic,
    TelemetrySamplePublic,
)

router = APIRouter(prefix="/devices", tags=["devices"])

MAX_PAGE = 50_000
MAX_HISTORY = 10_000


def _view(session, device, settings) -> DevicePublic:
    return registry.device_views(session, [device], stale_after=timedelta(seconds=settings.gateway_stale_s))[0]


@router.get("")
def list_devices(
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    school: Annotated[str | None, Query(description="only this school's devices")] = None,
    classroom: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID, description="only this classroom's devices")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = MAX_PAGE,
    offset: Offset = 0,
) -> list[DevicePublic]:
    """Devices the user may see, by id; X-Total-Count says how many match in all."""
    devices, total = registry.list_devices(
        session, user=user, school_code=school, classroom_id=classroom, limit=limit, offset=offset
    )
    response.headers["X-Total-Count"] = str(total)
    return registry.device_views(session, devices, stale_after=timedelta(seconds=settings.gateway_stale_s))


@router.get("/{device_id}")
def get_device(device_id: str, user: CurrentUser, session: SessionDep, settings: SettingsDep) -> DevicePublic:
    """One device."""
    return _view(session, registry.get_device(session, user=user, device_id=device_id), settings)


@router.post("", status_code=status.HTTP_201_CREATED)
def create_device(body: DeviceCreate, actor: CurrentActor, session: SessionDep, settings: SettingsDep) -> DevicePublic:
    """Register a device before it first connects."""
    device = registry.create_device(session, actor=actor, fields=body.model_dump())
    return _view(session, device, settings)


@router.patch("/{device_id}")
def update_device(
    device_id: str, body: DeviceUpdate, actor: CurrentActor, session: SessionDep, settings: SettingsDep
) -> DevicePublic:
    """Change asset data, bind the device to a classroom (null unbinds), or move it to another school."""
    changes = body.model_dump(exclude_unset=True)
    device = registry.update_device(session, actor=actor, device_id=device_id, changes=changes)
    return _view(session, device, settings)


@router.delete("/{device_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_device(device_id: str, actor: CurrentActor, session: SessionDep) -> None:
    """Remove a device registered by mistake (one with history stays)."""
    registry.delete_device(session, actor=actor, device_id=device_id)


@router.get(
    "/{device_id}/label.svg",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}, "description": "the label"}},
)
def device_label_svg(device_id: str, user: CurrentUser, session: SessionDep, settings: SettingsDep) -> Response:
    """A printable label: a QR code of <public_base_url>/d/<device id>, with the id and asset tag."""
    device = registry.get_device(session, user=user, device_id=device_id)
    url = labels.device_url(settings.public_base_url, device.id)
    return Response(content=labels.label_svg(url, device), media_type="image/svg+xml")


@router.get(
    "/{device_id}/label.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "the QR code"}},
)
def device_label_png(device_id: str, user: CurrentUser, session: SessionDep, settings: SettingsDep) -> Response:
    """The label's QR code alone, as a PNG."""
    device = registry.get_device(session, user=user, device_id=device_id)
    url = labels.device_url(settings.public_base_url, device.id)
    return Response(content=labels.label_png(url), media_type="image/png")


@router.get("/{device_id}/health")
def device_health(
    device_id: str,
    user: CurrentUser,
    session: SessionDep,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, Query(ge=1, le=MAX_HISTORY)] = 1000,
) -> list[HealthSamplePublic]:
    """The device's health reports, oldest first (kept for the sample retention period)."""
    samples = crud.list_health_samples(session, user=user, device_id=device_id, since=since, until=until, limit=limit)
    return [HealthSamplePublic.model_validate(sample) for sample in samples]


@router.get("/{device_id}/health/hourly")
def device_health_hourly(
    device_id: str,
    user: CurrentUser,
    session: SessionDep,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, Query(ge=1, le=MAX_HISTORY)] = 1000,
) -> list[HealthHourlyPublic]:
    """The device's health by UTC hour, oldest first."""
    rows = crud.list_health_hourly(session, user=user, device_id=device_id, since=since, until=until, limit=limit)
    return [HealthHourlyPublic.model_validate(row) for row in rows]


@router.get("/{device_id}/telemetry")
def device_telemetry(
    device_id: str,
    user: CurrentUser,
    session: SessionDep,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, Query(ge=1, le=MAX_HISTORY)] = 1000,
) -> list[TelemetrySamplePublic]:
    """The device's sensor readings, oldest first."""
    rows = crud.list_telemetry(session, user=user, device_id=device_id, since=since, until=until, limit=limit)
    return [TelemetrySamplePublic.model_validate(row) for row in rows]


@router.get("/{device_id}/config")
def get_device_config(device_id: str, user: CurrentUser, session: SessionDep) -> DeviceConfigPublic:
    """The desired configuration against the version the device last reported running."""
    return commands.read_device_config(session, user=user, device_id=device_id)


@router.put("/{device_id}/config")
def set_device_config(
    device_id: str, body: DeviceConfigIn, actor: CurrentActor, session: SessionDep
) -> DeviceConfigPublic:
    """Set the desired configuration: the version goes up by one and the gateway picks it up on its downlink."""
    return commands.set_device_config(session, actor=actor, device_id=device_id, values=body.values)
