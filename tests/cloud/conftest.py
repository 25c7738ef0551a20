"""Fixtures of the cloud tests: an app on a throwaway SQLite (or PostgreSQL) database, and its people."""

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from cloud import crud
from cloud.core import security
from cloud.core.config import Settings
from cloud.main import create_app

POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432
POSTGRES_USERS = ("postgres", "root")
PASSWORD = "correct-horse-battery"
DEVICE_A = "esp32-aabbccddee01"
DEVICE_B = "esp32-aabbccddee02"
DEVICE_C = "esp32-aabbccddee03"
BOOT = "0badf00d"
TS = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.fixture(autouse=True)
def fast_bcrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap password hashes; the cost factor is not what these tests are about."""
    monkeypatch.setattr(security, "BCRYPT_ROUNDS", 4)


def _postgres_admin() -> tuple[psycopg.Connection, str]:
    errors = []
    for user in POSTGRES_USERS:
        try:
            connection = psycopg.connect(
                host=POSTGRES_HOST,
                port=POSTGRES_PORT,
                user=user,
                dbname="postgres",
                autocommit=True,
                connect_timeout=3,
            )
        except psycopg.OperationalError as exc:
            errors.append(f"{user}: {exc}")
            continue
        return connection, user
    pytest.skip(f"no PostgreSQL server at {POSTGRES_HOST}:{POSTGRES_PORT} ({'; '.join(errors)})")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a PostgreSQL database made for one test and dropped after it."""
    admin, user = _postgres_admin()
    name = f"classops_test_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://{user}@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """The URL of a SQLite file in the test's own directory."""
    return f"sqlite:///{tmp_path / 'var' / 'cloud.db'}"


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """The database the app runs on; SQLite unless a test module overrides this fixture."""
    return sqlite_url


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Settings for an app on the test's database."""
    return Settings(database_url=database_url)


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
    """Two schools, a gateway each, and one person of each kind, with their bearer tokens."""

    gateway_tokens: dict[str, str]
    gateway_ids: dict[str, str]
    user_tokens: dict[str, str]

    def gateway(self, school: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.gateway_tokens[school]}"}

    def user(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.user_tokens[name]}"}


USERS = (
    ("county", "county_admin", None),
    ("admin1", "school_admin", "s1"),
    ("admin2", "school_admin", "s2"),
    ("tech", "technician", None),
    ("auditor", "auditor", None),
)


@pytest.fixture
def world(client: TestClient, session: Session) -> World:
    """Schools s1 and s2 with gateways, and signed-in users."""
    gateway_tokens, gateway_ids = {}, {}
    for code in ("s1", "s2"):
        crud.create_school(session, code=code, name=f"School {code}")
        gateway, token = crud.create_gateway(session, school_code=code)
        gateway_tokens[code], gateway_ids[code] = token, gateway.id
    user_tokens = {}
    for username, role, school in USERS:
        crud.create_user(session, username=username, password=PASSWORD, role=role, school_code=school)
        response = client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        user_tokens[username] = response.json()["access_token"]
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
