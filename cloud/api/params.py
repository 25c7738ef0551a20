"""Query and path parameter types shared by the API and the console.

Each refuses, with a 422 that names the parameter, what the code behind it cannot handle: a time near the
ends of the calendar, a number written as a date-time, an id past what its database column holds, a
control character bound for a file.
"""

from typing import Annotated

from fastapi import Path, Query

from cloud.bounds import Day, Moment
from cloud.models import MAX_BIGINT

# District and school codes and team numbers: what a report's id can be, and what goes into its file name.
CODE_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"

Since = Annotated[Moment | None, Query(description="from this time on (ISO 8601; UTC if no zone)")]
Until = Annotated[Moment | None, Query(description="before this time (ISO 8601; UTC if no zone)")]
From = Annotated[Day | None, Query(alias="from", description="first day, included (default: 30 days to `to`)")]
To = Annotated[Day | None, Query(alias="to", description="last day, included (default: today)")]
# Ids of rows whose key is BIGINT on PostgreSQL (deps.RowId is for those whose key is INTEGER).
BigRowId = Annotated[int, Path(ge=1, le=MAX_BIGINT, description="the row's id")]
ScopeId = Annotated[
    str | None,
    Query(
        alias="id",
        pattern=CODE_PATTERN,
        description="district code (county; none = all you reach), school code, or team id (contractor)",
    ),
]
