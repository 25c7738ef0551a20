"""School gateways, as people manage them (the gateways themselves use /gateway/sync)."""

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, status

from cloud import registry
from cloud.api.deps import CurrentActor, CurrentUser, SessionDep, SettingsDep
from cloud.models import GatewayCreate, GatewayCredentials, GatewayPublic

router = APIRouter(prefix="/gateways", tags=["registry"])


@router.get("")
def list_gateways(
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    school: Annotated[str | None, Query(description="only this school's gateways")] = None,
) -> list[GatewayPublic]:
    """The gateways of the schools the user may see; `stale` ones have stopped syncing."""
    stale_after = timedelta(seconds=settings.gateway_stale_s)
    return registry.list_gateways(session, user=user, school_code=school, stale_after=stale_after)


@router.get("/{gateway_id}")
def get_gateway(gateway_id: str, user: CurrentUser, session: SessionDep, settings: SettingsDep) -> GatewayPublic:
    """One gateway."""
    stale_after = timedelta(seconds=settings.gateway_stale_s)
    return registry.read_gateway(session, user=user, gateway_id=gateway_id, stale_after=stale_after)


@router.post("", status_code=status.HTTP_201_CREATED)
def create_gateway(body: GatewayCreate, actor: CurrentActor, session: SessionDep) -> GatewayCredentials:
    """Register a school's gateway; the answer holds its token, shown this once."""
    gateway, token = registry.create_gateway(session, actor=actor, school_code=body.school_code, name=body.name)
    return GatewayCredentials(gateway_id=gateway.id, token=token)


@router.post("/{gateway_id}/token")
def rotate_token(gateway_id: str, actor: CurrentActor, session: SessionDep) -> GatewayCredentials:
    """Give a gateway a new token; the old one stops working at once."""
    gateway, token = registry.rotate_gateway_token(session, actor=actor, gateway_id=gateway_id)
    return GatewayCredentials(gateway_id=gateway.id, token=token)
