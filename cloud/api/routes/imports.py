"""Bulk imports of the asset register from CSV or XLSX files."""

from typing import Annotated

from fastapi import APIRouter, File, HTTPException, Query, UploadFile, status

from cloud import crud
from cloud.api.deps import CurrentActor, SessionDep, SettingsDep
from cloud.core.config import Settings
from cloud.models import ImportReport
from cloud.tabular import Table, read_table

router = APIRouter(prefix="/imports", tags=["registry"])

DEVICE_IMPORT_HELP = (
    "A CSV (UTF-8 or GB 18030) or XLSX file whose first row names the columns: device_id and school are "
    "required; building and classroom (names, together), model, vendor, serial, asset_tag, purchase_date "
    "and warranty_end (YYYY-MM-DD), firmware and role are optional. "
    "An empty cell leaves a stored value as it is."
)


def read_upload(upload: UploadFile, settings: Settings) -> Table:
    """The upload's rows; 413 when it is larger than the service takes."""
    data = upload.file.read(settings.max_import_bytes + 1)
    if len(data) > settings.max_import_bytes:
        raise HTTPException(
            status_code=status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"the file is larger than {settings.max_import_bytes} bytes; split it",
        )
    return read_table(data, max_rows=settings.max_import_rows)


@router.post("/devices", description=DEVICE_IMPORT_HELP)
def import_devices(
    file: Annotated[UploadFile, File(description="the CSV or XLSX file")],
    actor: CurrentActor,
    session: SessionDep,
    settings: SettingsDep,
    dry_run: Annotated[bool, Query(description="check every row and change nothing")] = False,
    create_rooms: Annotated[bool, Query(description="create missing buildings and classrooms")] = False,
) -> ImportReport:
    """Register or update a device per row; rows with errors are skipped and listed in the report."""
    table = read_upload(file, settings)
    return crud.import_devices(session, actor=actor, table=table, dry_run=dry_run, create_rooms=create_rooms)
