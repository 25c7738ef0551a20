"""A figures report as a CSV or XLSX download, for the API's export routes and the console's buttons."""

import csv
import io

from fastapi import Response
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from cloud.figures import report as figures_report
from cloud.figures.report import FiguresReport

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _filename(report: FiguresReport, extension: str) -> str:
    name = f"figures-{report.scope}-{report.id or 'all'}-{report.date_from}-{report.date_to}.{extension}"
    return "".join(ch if ch.isalnum() or ch in "-._" else "_" for ch in name)


def figures_csv(report: FiguresReport) -> Response:
    """The figures as CSV: a row per school and a TOTAL row."""
    buffer = io.StringIO()
    csv.writer(buffer).writerows(
        [["" if value is None else value for value in row] for row in figures_report.export_rows(report)]
    )
    return Response(
        content=buffer.getvalue().encode("utf-8-sig"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{_filename(report, "csv")}"'},
    )


def figures_xlsx(report: FiguresReport) -> Response:
    """The figures as an XLSX workbook: a row per school and a TOTAL row."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "figures"
    for row in figures_report.export_rows(report):
        # A name stored before names were checked may hold a control character, which a workbook cannot.
        sheet.append([ILLEGAL_CHARACTERS_RE.sub("", value) if isinstance(value, str) else value for value in row])
    buffer = io.BytesIO()
    book.save(buffer)
    return Response(
        content=buffer.getvalue(),
        media_type=XLSX_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{_filename(report, "xlsx")}"'},
    )
