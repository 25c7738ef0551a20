"""Fixtures of the cloud tests: an app on a throwaway SQLite (or PostgreSQL) database, and its people."""

import shutil
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from cloud import crud, registry
from cloud.core import security
from cloud.core.config import Settings
from cloud.core.db import create_db_engine, upgrade_database
from cloud.main import create_app
from cloud.workorders import teams
from tests.cloud.helpers import (
    CLI,
    PASSWORD,
    TS,
    USERS,
    Crew,
    DatabasePool,
    World,
    postgres_user,
    seed_places,
)


@pytest.fixture(autouse=True)
def fast_bcrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap password hashes; the cost factor is not what these tests are about."""
    monkeypatch.setattr(security, "BCRYPT_ROUNDS", 4)


@pytest.fixture(scope="session")
def postgres_pool() -> Iterator[DatabasePool]:
    """Databases at the newest schema, copied from a template migrated once per run."""
    user = postgres_user()
    template = DatabasePool(user, None)
    name = template.take()
    engine = create_db_engine(template.url(name))
    try:
        upgrade_database(engine)
    finally:
        engine.dispose()
    pool = DatabasePool(user, name)
    try:
        yield pool
    finally:
        pool.close()
        template.give_back(name)
        template.close()


@pytest.fixture(scope="session")
def postgres_empty_pool() -> Iterator[DatabasePool]:
    """Empty databases, for the migrations' own tests."""
    pool = DatabasePool(postgres_user(), None)
    try:
        yield pool
    finally:
        pool.close()


def _from_pool(pool: DatabasePool) -> Iterator[str]:
    name = pool.take()
    try:
        yield pool.url(name)
    finally:
        pool.give_back(name)


@pytest.fixture
def postgres_url(postgres_pool: DatabasePool) -> Iterator[str]:
    """The URL of a PostgreSQL database at the newest schema, for one test."""
    yield from _from_pool(postgres_pool)


@pytest.fixture
def postgres_empty_url(postgres_empty_pool: DatabasePool) -> Iterator[str]:
    """The URL of an empty PostgreSQL database, for one test."""
    yield from _from_pool(postgres_empty_pool)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per run, which each test's database is copied from."""
    path = tmp_path_factory.mktemp("template") / "cloud.db"
    engine = create_db_engine(f"sqlite:///{path}")
    try:
        upgrade_database(engine)
    finally:
        engine.dispose()
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """The URL of a SQLite file at the newest schema in the test's own directory."""
    path = tmp_path / "var" / "cloud.db"
    path.parent.mkdir(parents=True)
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def sqlite_empty_url(tmp_path: Path) -> str:
    """The URL of a SQLite file not created yet, for the migrations' own tests."""
    return f"sqlite:///{tmp_path / 'var' / 'cloud.db'}"


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """The database the app runs on; SQLite unless a test module overrides this fixture."""
    return sqlite_url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings for an app on the test's database, its periodic jobs off (tests call them)."""
    return Settings(
        database_url=database_url,
        maintenance_interval_s=0,
        operations_interval_s=0,
        media_dir=str(tmp_path / "media"),
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """A client of a started app (migrations run)."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def engine(client: TestClient) -> Engine:
    """The engine the app uses."""
    return client.app.state.engine


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session on the app's database, for seeding and checking."""
    with Session(engine) as db_session:
        yield db_session


@pytest.fixture
def world(client: TestClient, session: Session) -> World:
    """Schools s1 and s2 with gateways, and signed-in users."""
    seed_places(session)
    gateway_tokens, gateway_ids = {}, {}
    for code in ("s1", "s2"):
        registry.create_school(session, actor=CLI, code=code, name=f"School {code}", district_code="d1")
        gateway, token = registry.create_gateway(session, actor=CLI, school_code=code)
        gateway_tokens[code], gateway_ids[code] = token, gateway.id
    user_tokens = {}
    for username, role, school, district in USERS:
        user = crud.create_user(
            session,
            actor=CLI,
            username=username,
            password=PASSWORD,
            role=role,
            school_code=school,
            district_code=district,
        )
        user_tokens[username], _ = crud.create_auth_token(session, user=user, ttl=timedelta(hours=1))
    return World(gateway_tokens=gateway_tokens, gateway_ids=gateway_ids, user_tokens=user_tokens)


@pytest.fixture
def sync(client: TestClient, world: World) -> Callable[..., Any]:
    """POST a batch as a school's gateway; return the response."""

    def post(records: list[dict[str, Any]], school: str = "s1"):
        return client.post(
            "/api/v1/gateway/sync",
            json={"records": records, "sent_at": TS},
            headers=world.gateway(school),
        )

    return post


@pytest.fixture
def crew(world: World, session: Session) -> Crew:
    """The contractor team of district d1, on top of `world`."""
    tokens = {}
    for username, role in (("tech2", "technician"), ("boss", "contractor_manager")):
        user = crud.create_user(session, actor=CLI, username=username, password=PASSWORD, role=role)
        tokens[username], _ = crud.create_auth_token(session, user=user, ttl=timedelta(hours=1))
    team = teams.create_team(
        session,
        actor=CLI,
        name="Fixers",
        districts=["d1"],
        device_roles=["sensor", "attendance", "blackboard", "gateway"],
    )
    assert team.id is not None
    for username in ("tech", "tech2", "boss"):
        teams.add_team_member(session, actor=CLI, team_id=team.id, username=username)
    return Crew(team_id=team.id, tokens={**world.user_tokens, **tokens})
