"""School gateways: registration, token rotation and whether each is still syncing."""

import secrets
from datetime import datetime, timedelta

from sqlmodel import Session, select

from cloud.core import security
from cloud.core.db import begin_write
from cloud.crud import audit
from cloud.crud.access import Scope, read_scope, require_district_write
from cloud.crud.common import Actor
from cloud.errors import NotFound
from cloud.models import Gateway, GatewayPublic, School, User, utcnow
from cloud.registry.common import actor_scope

DEFAULT_GATEWAY_STALE = timedelta(seconds=120)


def gateway_for_token(session: Session, *, token: str) -> Gateway | None:
    """The gateway that holds `token`, if any."""
    return session.exec(select(Gateway).where(Gateway.token_hash == security.hash_token(token))).first()


def create_gateway(session: Session, *, actor: Actor, school_code: str, name: str | None = None) -> tuple[Gateway, str]:
    """Register a gateway for a school; return it with its token, which is stored only hashed."""
    begin_write(session)
    school = session.get(School, school_code)
    scope = actor_scope(session, actor)
    if school is None or (scope is not None and not scope.allows_school(school_code)):
        raise NotFound(f"school {school_code} does not exist")
    require_district_write(actor, school.district_code)
    gateway_id = f"gw-{school_code}"
    if session.get(Gateway, gateway_id) is not None:
        gateway_id = f"gw-{school_code}-{secrets.token_hex(3)}"
    token = security.new_token()
    gateway = Gateway(
        id=gateway_id,
        school_code=school_code,
        name=(name or f"{school.name} gateway").strip(),
        token_hash=security.hash_token(token),
    )
    session.add(gateway)
    audit.record(
        session,
        actor=actor,
        action="create",
        entity="gateway",
        entity_id=gateway_id,
        school_code=school_code,
        summary={"name": gateway.name},
    )
    session.commit()
    session.refresh(gateway)
    return gateway, token


def _visible_gateway(session: Session, scope: Scope | None, gateway_id: str) -> Gateway:
    gateway = session.get(Gateway, gateway_id)
    if gateway is None or (scope is not None and not scope.allows_school(gateway.school_code)):
        raise NotFound(f"gateway {gateway_id} not found")
    return gateway


def rotate_gateway_token(session: Session, *, actor: Actor, gateway_id: str) -> tuple[Gateway, str]:
    """Give a gateway a new token; the old one stops working at once."""
    begin_write(session)
    gateway = _visible_gateway(session, actor_scope(session, actor), gateway_id)
    school = session.get(School, gateway.school_code)
    require_district_write(actor, school.district_code if school else None)
    token = security.new_token()
    gateway.token_hash = security.hash_token(token)
    session.add(gateway)
    audit.record(
        session,
        actor=actor,
        action="rotate_token",
        entity="gateway",
        entity_id=gateway_id,
        school_code=gateway.school_code,
    )
    session.commit()
    session.refresh(gateway)
    return gateway, token


def _gateway_view(gateway: Gateway, *, now: datetime, stale_after: timedelta) -> GatewayPublic:
    view = GatewayPublic.model_validate(gateway)
    view.stale = gateway.last_sync_at is None or now - gateway.last_sync_at > stale_after
    return view


def list_gateways(
    session: Session,
    *,
    user: User,
    school_code: str | None = None,
    stale_after: timedelta = DEFAULT_GATEWAY_STALE,
    now: datetime | None = None,
) -> list[GatewayPublic]:
    """The gateways of the schools `user` may see, each marked stale if it has stopped syncing."""
    scope = read_scope(session, user).narrowed(school_code)
    statement = select(Gateway).order_by(Gateway.id)
    condition = scope.school_condition(Gateway.school_code)
    if condition is not None:
        statement = statement.where(condition)
    now = now or utcnow()
    return [_gateway_view(g, now=now, stale_after=stale_after) for g in session.exec(statement)]


def read_gateway(
    session: Session,
    *,
    user: User,
    gateway_id: str,
    stale_after: timedelta = DEFAULT_GATEWAY_STALE,
    now: datetime | None = None,
) -> GatewayPublic:
    """One gateway."""
    gateway = _visible_gateway(session, read_scope(session, user), gateway_id)
    return _gateway_view(gateway, now=now or utcnow(), stale_after=stale_after)
