"""Operating figures per county, school or contractor, as JSON, CSV or XLSX."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from cloud.api.deps import CurrentUser, SessionDep
from cloud.api.exports import XLSX_TYPE, figures_csv, figures_xlsx
from cloud.api.params import From, ScopeId, To
from cloud.figures import report as figures_report
from cloud.figures.report import FiguresReport

router = APIRouter(prefix="/figures", tags=["figures"])

Scope = Annotated[Literal["county", "school", "contractor"], Query(description="what the figures are of")]


def _report(session, user, scope, scope_id, date_from, date_to) -> FiguresReport:
    return figures_report.figures(
        session, user=user, scope=scope, scope_id=scope_id, date_from=date_from, date_to=date_to
    )


@router.get("")
def get_figures(
    user: CurrentUser,
    session: SessionDep,
    scope: Scope,
    scope_id: ScopeId = None,
    date_from: From = None,
    date_to: To = None,
) -> FiguresReport:
    """Online rate, fault rate, MTTR, MTBF, SLA compliance, blackboard coverage and usage (docs/figures.md)."""
    return _report(session, user, scope, scope_id, date_from, date_to)


@router.get("/export.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def export_csv(
    user: CurrentUser,
    session: SessionDep,
    scope: Scope,
    scope_id: ScopeId = None,
    date_from: From = None,
    date_to: To = None,
) -> Response:
    """The figures as CSV: a row per school and a TOTAL row."""
    return figures_csv(_report(session, user, scope, scope_id, date_from, date_to))


@router.get("/export.xlsx", response_class=Response, responses={200: {"content": {XLSX_TYPE: {}}}})
def export_xlsx(
    user: CurrentUser,
    session: SessionDep,
    scope: Scope,
    scope_id: ScopeId = None,
    date_from: From = None,
    date_to: To = None,
) -> Response:
    """The figures as an XLSX workbook: a row per school and a TOTAL row."""
    return figures_xlsx(_report(session, user, scope, scope_id, date_from, date_to))
