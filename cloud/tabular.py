"""Spreadsheets people upload (CSV or XLSX) read into numbered rows of text cells."""

import csv
import io
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime, time

from cloud.errors import InvalidInput

XLSX_MAGIC = b"PK\x03\x04"
# Spreadsheet programs in China often save CSV as GB 18030 rather than UTF-8.
CSV_ENCODINGS = ("utf-8-sig", "gb18030")


class UnreadableTable(InvalidInput):
    """The upload is not a CSV or XLSX file that can be read, or its header is unusable."""


@dataclass
class Table:
    """A header of normalised column names and the data rows, numbered as the spreadsheet shows them."""

    columns: list[str]
    rows: list[tuple[int, dict[str, str | None]]] = field(default_factory=list)


def normalise_header(name: object) -> str:
    """`Asset Tag`, `asset-tag` and ` asset_tag ` all become `asset_tag`."""
    text = "" if name is None else str(name)
    return "_".join(text.strip().lower().replace("-", " ").replace("_", " ").split())


def _cell_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None


def _build(raw_rows: list[tuple[int, list[object]]], max_rows: int) -> Table:
    if not raw_rows:
        raise UnreadableTable("the file is empty: it needs a header row and at least one data row")
    _, header = raw_rows[0]
    columns = [normalise_header(name) for name in header]
    named = [name for name in columns if name]
    if not named:
        raise UnreadableTable("the first row must name the columns")
    duplicates = sorted({name for name in named if named.count(name) > 1})
    if duplicates:
        raise UnreadableTable(f"columns named more than once: {', '.join(duplicates)}")
    table = Table(columns=named)
    for number, values in raw_rows[1:]:
        cells = {name: _cell_text(values[i]) if i < len(values) else None for i, name in enumerate(columns) if name}
        if all(value is None for value in cells.values()):
            continue
        if len(table.rows) >= max_rows:
            raise UnreadableTable(f"the file has more than {max_rows} data rows; split it")
        table.rows.append((number, cells))
    return table


def _read_csv(data: bytes, max_rows: int) -> Table:
    for encoding in CSV_ENCODINGS:
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise UnreadableTable("the CSV file is neither UTF-8 nor GB 18030 text")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        rows: list[tuple[int, list[object]]] = [(reader.line_num, list(row)) for row in reader]
    except csv.Error as exc:
        raise UnreadableTable(f"the CSV file is malformed near line {reader.line_num}: {exc}") from exc
    return _build(rows, max_rows)


def _read_xlsx(data: bytes, max_rows: int) -> Table:
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise UnreadableTable(f"the file is not a readable XLSX workbook: {exc}") from exc
    try:
        sheet = workbook.worksheets[0] if workbook.worksheets else None
        if sheet is None:
            raise UnreadableTable("the workbook has no worksheet")
        rows: list[tuple[int, list[object]]] = []
        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            rows.append((number, list(values)))
            if number > max_rows + 1 and any(value is not None for value in values):
                raise UnreadableTable(f"the file has more than {max_rows} data rows; split it")
    finally:
        workbook.close()
    return _build(rows, max_rows)


def read_table(data: bytes, *, max_rows: int) -> Table:
    """The rows of a CSV or XLSX file, told apart by content rather than by name."""
    if data.startswith(XLSX_MAGIC):
        return _read_xlsx(data, max_rows)
    return _read_csv(data, max_rows)
