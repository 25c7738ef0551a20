"""Fixtures of the cloud tests: an app on a throwaway SQLite (or PostgreSQL) database, and its people."""

import secrets
import shutil
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
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

POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432
POSTGRES_USERS = ("postgres", "root")
# Databases made ahead of the tests that will use them.
AHEAD = 3
PASSWORD = "correct-horse-battery"
DEVICE_A = "esp32-aabbccddee01"
DEVICE_B = "esp32-aabbccddee02"
DEVICE_C = "esp32-aabbccddee03"
BOOT = "0badf00d"
TS = 1_767_225_600.0  # 2026-01-01T00:00:00Z
CLI = crud.Actor.cli("test")


@pytest.fixture(autouse=True)
def fast_bcrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap password hashes; the cost factor is not what these tests are about."""
    monkeypatch.setattr(security, "BCRYPT_ROUNDS", 4)


def _connect(user: str) -> psycopg.Connection:
    return psycopg.connect(
        host=POSTGRES_HOST,
        port=POSTGRES_PORT,
        user=user,
        dbname="postgres",
        autocommit=True,
        connect_timeout=3,
    )


def _postgres_user() -> str:
    """A superuser name the local server lets in, or skip the test with the reason."""
    errors = []
    for user in POSTGRES_USERS:
        try:
            _connect(user).close()
        except psycopg.OperationalError as exc:
            errors.append(f"{user}: {exc}")
            continue
        return user
    pytest.skip(f"no PostgreSQL server at {POSTGRES_HOST}:{POSTGRES_PORT} ({'; '.join(errors)})")


class DatabasePool:
    """Throwaway databases copied from a migrated template, made one ahead and dropped in the background,
    so that a test waits for neither."""

    def __init__(self, user: str, template: str | None) -> None:
        self._user = user
        self._template = template
        self._workers = ThreadPoolExecutor(max_workers=AHEAD + 1, thread_name_prefix="pgpool")
        self._ahead: deque[Future[str]] = deque()
        self._drops: list[Future[None]] = []

    def url(self, name: str) -> str:
        return f"postgresql+psycopg://{self._user}@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"

    def _create(self) -> str:
        name = f"classops_test_{secrets.token_hex(6)}"
        with _connect(self._user) as admin:
            admin.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{self._template}"' if self._template else ""))
            # A throwaway database need not wait for each commit to reach the disk.
            admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit TO off')
        return name

    def _drop(self, name: str) -> None:
        with _connect(self._user) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def take(self) -> str:
        """The name of a fresh database."""
        future = self._ahead.popleft() if self._ahead else self._workers.submit(self._create)
        while len(self._ahead) < AHEAD:
            self._ahead.append(self._workers.submit(self._create))
        return future.result()

    def give_back(self, name: str) -> None:
        """Drop a database once its test is done."""
        self._drops.append(self._workers.submit(self._drop, name))

    def close(self) -> None:
        """Drop what is left and wait for every drop."""
        while self._ahead:
            self.give_back(self._ahead.popleft().result())
        for drop in self._drops:
            drop.result()
        self._workers.shutdown(wait=True)


@pytest.fixture(scope="session")
def postgres_pool() -> Iterator[DatabasePool]:
    """Databases at the newest schema, copied from a template migrated once per run."""
    user = _postgres_user()
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
    pool = DatabasePool(_postgres_user(), None)
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


@dataclass
class World:
    """Two schools of district d1, a gateway each, and one person of each kind, with bearer tokens."""

    gateway_tokens: dict[str, str]
    gateway_ids: dict[str, str]
    user_tokens: dict[str, str]

    def gateway(self, school: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.gateway_tokens[school]}"}

    def user(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.user_tokens[name]}"}


# (username, role, school, district); "county" has no district and so reaches every school.
USERS = (
    ("county", "county_admin", None, None),
    ("admin1", "school_admin", "s1", None),
    ("admin2", "school_admin", "s2", None),
    ("tech", "technician", None, None),
    ("auditor", "auditor", None, None),
)


def seed_places(session: Session) -> None:
    """City c1 with district d1; schools s1 and s2 in d1."""
    registry.create_city(session, actor=CLI, code="c1", name="City 1")
    registry.create_district(session, actor=CLI, code="d1", city_code="c1", name="District 1")


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


def record(
    gseq: int,
    kind: str,
    device: str = DEVICE_A,
    *,
    boot: str | None = BOOT,
    seq: int | None = None,
    ts: float = TS,
    **body: Any,
) -> dict[str, Any]:
    """A sync record as a gateway sends it."""
    return {
        "gseq": gseq,
        "kind": kind,
        "device": device,
        "boot": boot,
        "seq": gseq if seq is None and kind != "presence" and kind != "will" else seq,
        "ts": ts,
        "body": body,
    }


def tap(gseq: int, device: str = DEVICE_A, *, seq: int | None = None, card: str = "p-1", **kw) -> dict:
    """An attendance record."""
    return record(gseq, "attendance", device, seq=seq, card=card, hist=False, **kw)


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


@dataclass
class Crew:
    """Contractor team "Fixers" covering district d1 for every role: technicians tech and tech2, manager boss."""

    team_id: int
    tokens: dict[str, str]

    def user(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}


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
