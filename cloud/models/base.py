"""What every table and shape of the cloud shares: the naming convention of constraints, row ids,
UTC timestamps, and the constrained strings of codes and names."""

from datetime import UTC, datetime
from typing import Annotated

from pydantic import Field as PydanticField
from pydantic import StringConstraints
from sqlalchemy import BigInteger, DateTime, Integer
from sqlalchemy.types import TypeDecorator
from sqlmodel import SQLModel

# Deterministic constraint names, so later migrations (and SQLite batch mode) can address them.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Row ids that outgrow 32 bits at province scale; SQLite only autoincrements an INTEGER primary key.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# The largest id of an INTEGER key on PostgreSQL, and the largest BIGINT: bounds for ids and counters
# that callers send, so that a huge number is refused up front instead of overflowing the database.
MAX_ROW_ID = 2**31 - 1
MAX_BIGINT = 2**63 - 1
RowRef = Annotated[int, PydanticField(ge=1, le=MAX_ROW_ID)]


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timestamp stored in UTC and always read back timezone-aware, SQLite included."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; ClassOps stores aware UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Code = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
# Names and asset data end up in exported spreadsheets and printed labels, which cannot hold control characters.
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=PRINTABLE)]
