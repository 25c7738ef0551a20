"""Helpers shared by the data functions: dialect-aware inserts, chunking, the acting party."""

import getpass
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select, text

from cloud.errors import InUse, UnsupportedDatabase
from cloud.models import ACTOR_KINDS, User

# Rows per multi-row INSERT: stays under SQLite's and PostgreSQL's bound-parameter limits.
INSERT_CHUNK = 500


@dataclass(frozen=True)
class Actor:
    """Who writes: a signed-in user, a school's gateway, or the operator at the admin command line."""

    kind: str
    name: str
    user: User | None = None
    client_ip: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ACTOR_KINDS:
            raise ValueError(f"actor kind must be one of {', '.join(ACTOR_KINDS)}")

    @classmethod
    def of_user(cls, user: User, client_ip: str | None = None) -> "Actor":
        """A signed-in user acting through the API."""
        return cls(kind="user", name=user.username, user=user, client_ip=client_ip)

    @classmethod
    def cli(cls, name: str | None = None) -> "Actor":
        """The operator of `classops cloud`, who holds the database credentials and so every right."""
        if name is None:
            try:
                name = getpass.getuser()
            except (KeyError, OSError):
                name = "cli"
        return cls(kind="cli", name=name[:64])


def chunks(items: Sequence[Any], size: int = INSERT_CHUNK) -> Iterable[Sequence[Any]]:
    """`items` in slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def dialect_insert(session: Session, table: type) -> postgresql.Insert | sqlite.Insert:
    """An INSERT in the session's dialect, so that ON CONFLICT is available."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise UnsupportedDatabase(f"database dialect {dialect!r} is not supported")


def jsonable(value: Any) -> Any:
    """`value` as JSON types: dates and times become ISO 8601 text."""
    return to_jsonable_python(value)


def apply_changes(target: Any, changes: dict[str, Any]) -> dict[str, list[Any]]:
    """Set `changes` on `target`; return {field: [old, new]} for the fields that really changed."""
    diff: dict[str, list[Any]] = {}
    for name, new in changes.items():
        old = getattr(target, name)
        if old != new:
            diff[name] = [jsonable(old), jsonable(new)]
            setattr(target, name, new)
    return diff


def delete_row(session: Session, row: Any, description: str) -> None:
    """Delete `row`; InUse when other records still refer to it."""
    session.delete(row)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise InUse(f"{description} is still referred to by other records; remove those first") from exc


def database_ok(session: Session) -> bool:
    """True if the database answers a trivial query."""
    return session.exec(select(text("1"))).first() is not None


def as_utc(moment: datetime | None) -> datetime | None:
    """`moment` made timezone-aware: a time given without a zone is taken as UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
