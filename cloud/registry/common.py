"""Helpers shared by the registry's writers: unique-name flushes, required names and the actor's scope."""

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from cloud.crud.access import Scope, read_scope
from cloud.crud.common import Actor
from cloud.errors import AlreadyExists, InvalidInput


def flush_unique(session: Session, message: str) -> None:
    """Flush; a unique constraint that a concurrent writer won first becomes AlreadyExists."""
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise AlreadyExists(message) from exc


def require_name(changes: dict[str, Any], *fields: str) -> None:
    """Refuse a change that would empty one of the required `fields`."""
    for name in fields:
        if name in changes and changes[name] is None:
            raise InvalidInput(f"{name} cannot be removed, only changed")


def actor_scope(session: Session, actor: Actor) -> Scope | None:
    """What the acting user may see; None (everything) for gateways and the admin command line."""
    return read_scope(session, actor.user) if actor.user is not None else None
