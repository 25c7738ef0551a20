"""Bulk imports of the asset register from CSV or XLSX files."""

from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile

from cloud import registry
from cloud.api.deps import CurrentActor, SessionDep, SettingsDep
from cloud.api.uploads import read_upload
from cloud.models import ImportReport

router = APIRouter(prefix="/imports", tags=["registry"])

DEVICE_IMPORT_HELP = (
    "A CSV (UTF-8 or GB 18030) or XLSX file whose first row names the columns: device_id and school are "
    "required; building and classroom (names, together), model, vendor, serial, asset_tag, purchase_date "
    "and warranty_end (YYYY-MM-DD), firmware and role are optional. "
    "An empty cell leaves a stored value as it is."
)


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
    return registry.import_devices(session, actor=actor, table=table, dry_run=dry_run, create_rooms=create_rooms)
