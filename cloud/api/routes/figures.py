"""Operating figures per county, school or contractor, as JSON, CSV or XLSX."""

import csv
import io
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from cloud.api.deps import CurrentUser, SessionDep
from cloud.api.params import From, ScopeId, To
from cloud.crud import figures as figures_crud
from cloud.crud.figures import FiguresReport

router = APIRouter(prefix="/figures", tags=["figures"])

Scope = Annotated[Literal["county", "school", "contractor"], Query(description="what the figures are of")]
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _report(session, user, scope, scope_id, date_from, date_to) -> FiguresReport:
    return figures_crud.figures(
        session, user=user, scope=scope, scope_id=scope_id, date_from=date_from, date_to=date_to
    )


def _filename(report: FiguresReport, extension: str) -> str:
    name = f"figures-{report.scope}-{report.id or 'all'}-{report.date_from}-{report.date_to}.{extension}"
    return "".join(ch if ch.isalnum() or ch in "-._" else "_" for ch in name)


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
    report = _report(session, user, scope, scope_id, date_from, date_to)
    buffer = io.StringIO()
    csv.writer(buffer).writerows(
        [["" if value is None else value for value in row] for row in figures_crud.export_rows(report)]
    )
    return Response(
        content=buffer.getvalue().encode("utf-8-sig"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{_filename(report, "csv")}"'},
    )


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
    report = _report(session, user, scope, scope_id, date_from, date_to)
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "figures"
    for row in figures_crud.export_rows(report):
        # A name stored before names were checked may hold a control character, which a workbook cannot.
        sheet.append([ILLEGAL_CHARACTERS_RE.sub("", value) if isinstance(value, str) else value for value in row])
    buffer = io.BytesIO()
    book.save(buffer)
    return Response(
        content=buffer.getvalue(),
        media_type=XLSX_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{_filename(report, "xlsx")}"'},
    )
