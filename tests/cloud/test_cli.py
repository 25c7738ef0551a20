"""`classops cloud ...` and `python -m cloud ...`."""

import argparse
import json
import subprocess
import sys

import pytest
from sqlmodel import Session

from cloud import cli, crud, registry
from cloud.core.db import create_db_engine


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="classops")
    cli.register(parser.add_subparsers(dest="part", required=True))
    args = parser.parse_args(["cloud", *argv])
    return args.func(args)


@pytest.fixture
def url(sqlite_url: str) -> list[str]:
    return ["--database-url", sqlite_url]


def test_admin_commands_set_up_a_school(url, sqlite_url, capsys, monkeypatch):
    assert _run(["add-school", "--code", "s9", "--name", "No. 9 Primary", *url]) == 0
    assert _run(["add-school", "--code", "s9", "--name", "again", *url]) == 0
    assert "already exists" in capsys.readouterr().out

    assert _run(["add-gateway", "--school", "s9", *url]) == 0
    credentials = json.loads(capsys.readouterr().out)

    monkeypatch.setenv(cli.NEW_PASSWORD_ENV, "from-the-environment")
    assert _run(["add-user", "--username", "head9", "--role", "school_admin", "--school", "s9", *url]) == 0

    engine = create_db_engine(sqlite_url)
    try:
        with Session(engine) as session:
            assert registry.get_school(session, code="s9").name == "No. 9 Primary"
            assert registry.gateway_for_token(session, token=credentials["token"]).id == credentials["gateway_id"]
            user = crud.authenticate(session, username="head9", password="from-the-environment")
            assert (user.role, user.school_code) == ("school_admin", "s9")
    finally:
        engine.dispose()


def test_errors_are_reported_without_a_traceback(url, capsys, monkeypatch):
    monkeypatch.delenv(cli.NEW_PASSWORD_ENV, raising=False)

    assert _run(["add-gateway", "--school", "missing", *url]) == 1
    assert "school missing does not exist" in capsys.readouterr().err
    assert _run(["add-user", "--username", "x", "--role", "auditor", *url]) == 2
    assert cli.NEW_PASSWORD_ENV in capsys.readouterr().err


def test_python_dash_m_cloud_migrates(sqlite_empty_url, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cloud", "migrate", "--database-url", sqlite_empty_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
    assert (tmp_path / "var" / "cloud.db").exists()


def test_places_and_people_of_a_district(url, sqlite_url, capsys):
    assert _run(["add-city", "--code", "c1", "--name", "Chuzhou", *url]) == 0
    assert _run(["add-district", "--code", "d1", "--city", "c1", "--name", "Nanqiao", *url]) == 0
    assert _run(["add-district", "--code", "d1", "--city", "c1", "--name", "again", *url]) == 0
    assert _run(["add-school", "--code", "S001", "--name", "No. 1", "--district", "d1", *url]) == 0
    for argv in (
        ["--username", "bureau", "--role", "county_admin", "--district", "d1"],
        ["--username", "city", "--role", "county_admin"],
        ["--username", "head", "--role", "school_admin", "--school", "S001"],
    ):
        assert _run(["add-user", "--password", "long-enough-pw", *argv, *url]) == 0
    assert _run(["add-user", "--password", "long-enough-pw", "--username", "x", "--role", "school_admin", *url]) == 1
    assert "needs a school" in capsys.readouterr().err

    engine = create_db_engine(sqlite_url)
    try:
        with Session(engine) as session:
            assert registry.get_school(session, code="S001").district_code == "d1"
            bureau = crud.get_user_by_username(session, username="bureau")
            assert (bureau.role, bureau.district_code, bureau.school_code) == ("county_admin", "d1", None)
            assert crud.get_user_by_username(session, username="head").school_code == "S001"
    finally:
        engine.dispose()
