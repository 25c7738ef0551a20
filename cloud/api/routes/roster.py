"""A school's roster (card pseudonym to person): personal data, for that school's own admins only."""

from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile, status

from cloud import crud
from cloud.api.deps import CurrentActor, CurrentUser, RowId, SessionDep, SettingsDep
from cloud.api.uploads import read_upload
from cloud.models import ImportReport, RosterEntryIn, RosterEntryPublic

router = APIRouter(prefix="/schools/{school_code}/roster", tags=["attendance"])

ROSTER_IMPORT_HELP = (
    "A CSV or XLSX file whose first row names the columns: card_pseudonym (as the school's gateway makes it) "
    "and person_name are required; person_no, class_label, building and classroom are optional."
)


@router.get("")
def list_roster(school_code: str, user: CurrentUser, session: SessionDep) -> list[RosterEntryPublic]:
    """The school's roster."""
    entries = crud.list_roster(session, user=user, school_code=school_code)
    return [RosterEntryPublic.model_validate(entry) for entry in entries]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_roster_entry(
    school_code: str, body: RosterEntryIn, actor: CurrentActor, session: SessionDep
) -> RosterEntryPublic:
    """Add a person's card to the roster."""
    entry = crud.create_roster_entry(session, actor=actor, school_code=school_code, fields=body.model_dump())
    return RosterEntryPublic.model_validate(entry)


@router.put("/{entry_id}")
def update_roster_entry(
    school_code: str, entry_id: RowId, body: RosterEntryIn, actor: CurrentActor, session: SessionDep
) -> RosterEntryPublic:
    """Replace a roster entry."""
    entry = crud.update_roster_entry(
        session, actor=actor, school_code=school_code, entry_id=entry_id, changes=body.model_dump()
    )
    return RosterEntryPublic.model_validate(entry)


@router.delete("/{entry_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_roster_entry(school_code: str, entry_id: RowId, actor: CurrentActor, session: SessionDep) -> None:
    """Remove a person from the roster."""
    crud.delete_roster_entry(session, actor=actor, school_code=school_code, entry_id=entry_id)


@router.post("/import", description=ROSTER_IMPORT_HELP)
def import_roster(
    school_code: str,
    file: Annotated[UploadFile, File(description="the CSV or XLSX file")],
    actor: CurrentActor,
    session: SessionDep,
    settings: SettingsDep,
    dry_run: Annotated[bool, Query(description="check every row and change nothing")] = False,
) -> ImportReport:
    """Add or update roster entries by card pseudonym; rows with errors are listed in the report."""
    table = read_upload(file, settings)
    return crud.import_roster(session, actor=actor, school_code=school_code, table=table, dry_run=dry_run)
