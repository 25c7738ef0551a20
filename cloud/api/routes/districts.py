"""Counties and districts: the tenants of county education bureaus."""

from typing import Annotated

from fastapi import APIRouter, Query, status

from cloud import registry
from cloud.api.deps import CurrentActor, CurrentUser, SessionDep
from cloud.models import DistrictCreate, DistrictPublic, DistrictUpdate

router = APIRouter(prefix="/districts", tags=["registry"])


@router.get("")
def list_districts(
    user: CurrentUser,
    session: SessionDep,
    city: Annotated[str | None, Query(description="only this city's districts")] = None,
) -> list[DistrictPublic]:
    """Every district, or one city's."""
    return [DistrictPublic.model_validate(d) for d in registry.list_districts(session, user=user, city_code=city)]


@router.get("/{code}")
def get_district(code: str, user: CurrentUser, session: SessionDep) -> DistrictPublic:
    """One district."""
    return DistrictPublic.model_validate(registry.get_district(session, user=user, code=code))


@router.post("", status_code=status.HTTP_201_CREATED)
def create_district(body: DistrictCreate, actor: CurrentActor, session: SessionDep) -> DistrictPublic:
    """Register a district of a city (city-wide county admins)."""
    district = registry.create_district(session, actor=actor, code=body.code, city_code=body.city_code, name=body.name)
    return DistrictPublic.model_validate(district)


@router.patch("/{code}")
def update_district(code: str, body: DistrictUpdate, actor: CurrentActor, session: SessionDep) -> DistrictPublic:
    """Rename a district."""
    changes = body.model_dump(exclude_unset=True)
    return DistrictPublic.model_validate(registry.update_district(session, actor=actor, code=code, changes=changes))


@router.delete("/{code}", status_code=status.HTTP_204_NO_CONTENT)
def delete_district(code: str, actor: CurrentActor, session: SessionDep) -> None:
    """Remove a district without schools or users."""
    registry.delete_district(session, actor=actor, code=code)
