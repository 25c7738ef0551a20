"""Cities: the top of the registry's hierarchy."""

from fastapi import APIRouter, status

from cloud import registry
from cloud.api.deps import CurrentActor, CurrentUser, SessionDep
from cloud.models import CityCreate, CityPublic, CityUpdate

router = APIRouter(prefix="/cities", tags=["registry"])


@router.get("")
def list_cities(user: CurrentUser, session: SessionDep) -> list[CityPublic]:
    """Every city."""
    return [CityPublic.model_validate(city) for city in registry.list_cities(session, user=user)]


@router.get("/{code}")
def get_city(code: str, user: CurrentUser, session: SessionDep) -> CityPublic:
    """One city."""
    return CityPublic.model_validate(registry.get_city(session, user=user, code=code))


@router.post("", status_code=status.HTTP_201_CREATED)
def create_city(body: CityCreate, actor: CurrentActor, session: SessionDep) -> CityPublic:
    """Register a city (city-wide county admins)."""
    return CityPublic.model_validate(registry.create_city(session, actor=actor, code=body.code, name=body.name))


@router.patch("/{code}")
def update_city(code: str, body: CityUpdate, actor: CurrentActor, session: SessionDep) -> CityPublic:
    """Rename a city."""
    changes = body.model_dump(exclude_unset=True)
    return CityPublic.model_validate(registry.update_city(session, actor=actor, code=code, changes=changes))


@router.delete("/{code}", status_code=status.HTTP_204_NO_CONTENT)
def delete_city(code: str, actor: CurrentActor, session: SessionDep) -> None:
    """Remove a city without districts."""
    registry.delete_city(session, actor=actor, code=code)
