"""What the cloud tests share: the people, devices and times they use, the records a gateway sends,
the PostgreSQL databases they run on, and the seeded schools and contractor team they check against."""

import secrets
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from sqlmodel import Session

from cloud import crud, registry

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


def _connect(user: str) -> psycopg.Connection:
    return psycopg.connect(
        host=POSTGRES_HOST,
        port=POSTGRES_PORT,
        user=user,
        dbname="postgres",
        autocommit=True,
        connect_timeout=3,
    )


def postgres_user() -> str:
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


@dataclass
class Crew:
    """Contractor team "Fixers" covering district d1 for every role: technicians tech and tech2, manager boss."""

    team_id: int
    tokens: dict[str, str]

    def user(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}
