"""Bulk import of devices from CSV and XLSX: good rows taken, bad rows reported by row and column."""

import argparse
import io
import json
from datetime import date

import openpyxl
import pytest
from sqlmodel import Session, select

from cloud import cli, crud, registry
from cloud.core.db import create_db_engine
from cloud.models import AuditEntry, Device
from tests.cloud.helpers import CLI, DEVICE_A, DEVICE_B, DEVICE_C

API = "/api/v1/imports/devices"
HEADER = "Device ID,School,Building,Classroom,Model,Vendor,Serial,Asset Tag,Purchase Date,Warranty End,Firmware\n"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def rooms(session, world):
    building = registry.create_building(session, actor=CLI, school_code="s1", name="Main")
    return registry.create_classroom(session, actor=CLI, building_id=building.id, name="101")


def _upload(client, world, data: bytes, user="county", name="devices.csv", **params):
    return client.post(API, params=params, files={"file": (name, data)}, headers=world.user(user))


def test_good_rows_are_imported_and_bad_rows_reported(client, world, rooms, session):
    csv = (
        HEADER
        + f"{DEVICE_A},s1,Main,101,CO-2,Acme,SN1,A-1,2025-09-01,2028-08-31,1.2.0\n"
        + "esp32-BAD,s1,,,,,,,,,\n"
        + f"{DEVICE_B},s1,Main,999,,,,,,,\n"
        + f"{DEVICE_C},s1,,,,,,A-1,2025/13/01,,\n"
        + f"{DEVICE_A},s1,,,,,,,,,\n"
        + "esp32-aabbccddee09,nowhere,,,,,,,,,\n"
    )

    response = _upload(client, world, csv.encode())

    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["rows"], report["created"], report["updated"], report["dry_run"]) == (6, 1, 0, False)
    problems = {(p["row"], p["column"]) for p in report["errors"]}
    assert problems == {
        (3, "device_id"),
        (4, "classroom"),
        (5, "purchase_date"),
        (6, "device_id"),
        (7, "school"),
    }
    assert all(p["message"] for p in report["errors"])
    session.rollback()
    device = session.get(Device, DEVICE_A)
    assert (device.classroom_id, device.model, device.asset_tag, device.fw) == (
        rooms.id,
        "CO-2",
        "A-1",
        "1.2.0",
    )
    assert device.purchase_date == date(2025, 9, 1)
    entries = session.exec(select(AuditEntry).where(AuditEntry.action == "import")).all()
    assert [(e.entity, e.entity_id, e.actor) for e in entries] == [("device", DEVICE_A, "county")]


def test_dry_run_changes_nothing_and_a_second_import_updates(client, world, rooms, session):
    csv = HEADER + f"{DEVICE_A},s1,Main,101,CO-2,,,,,,\n"

    dry = _upload(client, world, csv.encode(), dry_run=True).json()
    session.rollback()
    assert (dry["created"], dry["dry_run"]) == (1, True)
    assert session.get(Device, DEVICE_A) is None

    assert _upload(client, world, csv.encode()).json()["created"] == 1
    again = _upload(client, world, (HEADER + f"{DEVICE_A},s1,,,CO-3,,,,,,\n").encode()).json()
    assert (again["created"], again["updated"], again["errors"]) == (0, 1, [])
    session.rollback()
    assert session.get(Device, DEVICE_A).classroom_id == rooms.id


def test_xlsx_with_dates_numbers_and_new_rooms(client, world, session):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["device_id", "school", "building", "classroom", "serial", "purchase_date"])
    sheet.append([DEVICE_A, "s1", "North", "201", 12345, date(2025, 3, 1)])
    sheet.append([DEVICE_B, "s1", "North", "202", 777.0, None])
    buffer = io.BytesIO()
    book.save(buffer)

    report = _upload(client, world, buffer.getvalue(), user="admin1", name="x.xlsx", create_rooms=True).json()

    assert (report["created"], report["errors"]) == (2, [])
    session.rollback()
    a, b = session.get(Device, DEVICE_A), session.get(Device, DEVICE_B)
    assert (a.serial, a.purchase_date, b.serial) == ("12345", date(2025, 3, 1), "777")
    rooms = registry.list_classrooms(session, user=crud.get_user_by_username(session, username="admin1"))
    assert sorted(room.name for room in rooms) == ["201", "202"]


def test_rows_of_another_school_are_refused_to_a_school_admin(client, world):
    report = _upload(client, world, (HEADER + f"{DEVICE_A},s2,,,,,,,,,\n").encode(), user="admin1").json()

    assert report["created"] == 0
    assert [(p["row"], p["column"]) for p in report["errors"]] == [(2, "school")]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"model,vendor\nx,y\n", "device_id"),
        (b"PK\x03\x04not really a zip", "XLSX"),
        (b"\xff\xfe\x00bad", "neither UTF-8"),
        (b"device_id,device_id,school\n", "more than once"),
    ],
)
def test_unreadable_files_get_a_clear_422(client, world, data, words):
    response = _upload(client, world, data)

    assert response.status_code == 422
    assert words in response.json()["detail"][0]["msg"]


def test_auditors_and_technicians_cannot_import(client, world):
    for user in ("auditor", "tech"):
        assert (
            _upload(client, world, (HEADER + f"{DEVICE_A},s1,,,,,,,,,\n").encode(), user=user).json()["errors"][0][
                "column"
            ]
            == "school"
        )


def test_file_larger_than_the_limit_is_refused(client, world, settings):
    settings.max_import_bytes = 10

    response = _upload(client, world, (HEADER * 2).encode())

    assert response.status_code == 413


def test_cli_import_assets(sqlite_url, tmp_path, capsys):
    engine = create_db_engine(sqlite_url)
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="part"))
    url = ["--database-url", sqlite_url]
    args = parser.parse_args(["cloud", "add-school", "--code", "s1", "--name", "S1", *url])
    assert args.func(args) == 0
    path = tmp_path / "devices.csv"
    path.write_text(HEADER + f"{DEVICE_A},s1,,,,,,,,,\nesp32-x,s1,,,,,,,,,\n", encoding="utf-8")
    capsys.readouterr()

    args = parser.parse_args(["cloud", "import-assets", str(path), "--json", *url])
    status = args.func(args)

    assert status == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["created"], [p["row"] for p in report["errors"]]) == (1, [3])
    with Session(engine) as session:
        assert session.get(Device, DEVICE_A).school_code == "s1"
        actors = session.exec(select(AuditEntry.actor_kind).where(AuditEntry.entity == "device")).all()
        assert actors == ["cli"]
    engine.dispose()
    missing = parser.parse_args(["cloud", "import-assets", str(tmp_path / "nope.csv"), *url])
    assert missing.func(missing) == 2
