"""Login guessing: how many of a run of guesses against one account are checked against its password, and
whether the account's owner still signs in.

Two runs go through the cloud's sign-in function (`cloud.crud.sign_in`, what the API and the console call)
on a throwaway database, with the clock the function is given advancing one second per try, so that a run
of 1,000 tries spans 1,000 s of locks lifting and growing without the bench waiting for them:

- `one_address`: every guess from one address;
- `many_addresses`: every guess from an address of its own (only the per-account count can stop these).

Before each run the owner has signed in from their usual address; after it they sign in again from there,
and a newcomer (the owner on an address the account never used) tries too. Each run prints
`scenario=<name> tries=<n> password_checks=<n> lockout_after=<n> min_gap_after_lockout_s=<s>
rightful_signin=ok|refused newcomer_signin=ok|refused`: password checks are bcrypt runs, counted where the
password is verified; `lockout_after` is how many tries were answered before the first refusal; the gap is
the shortest time between two checked tries once the lock has begun (60 or more: at most one a minute).

A last run sends 50 wrong passwords through the HTTP API (the app in-process, real time) and prints the
answers and their median latencies: `http_401=<n> http_429=<n> retry_after_s=<n> checked_ms_p50=<ms>
refused_ms_p50=<ms>` (a refused try costs no bcrypt time).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from cloud import crud
from cloud.core import security
from cloud.core.config import Settings
from cloud.core.db import create_db_engine, upgrade_database
from cloud.models import utcnow

from cloud_ingest import Database

PASSWORD = "owner-password-1"
OWNER = "203.0.113.20"
NEWCOMER = "203.0.113.99"
GUESSER = "198.51.100.7"
HTTP_GUESSER = "198.51.100.50"
HTTP_TRIES = 50


class CountingChecks:
    """Counts the password checks (bcrypt runs) made while it is installed."""

    def __init__(self) -> None:
        self.count = 0
        self._real = security.verify_password

    def __enter__(self) -> CountingChecks:
        def counting(password: str, password_hash: str) -> bool:
            self.count += 1
            return self._real(password, password_hash)

        security.verify_password = counting
        return self

    def __exit__(self, *_exc: object) -> None:
        security.verify_password = self._real


def guessing_run(engine, *, username: str, tries: int, address_of: Callable[[int], str]) -> dict[str, str]:
    """One run of `tries` guesses, one a second, from the addresses `address_of` gives per try."""
    from sqlmodel import Session

    start = utcnow()
    with Session(engine) as session:
        crud.create_user(session, actor=crud.Actor.cli("bench"), username=username, password=PASSWORD, role="auditor")
        owner = crud.sign_in(session, username=username, password=PASSWORD, client_ip=OWNER, now=start)
        assert owner.user is not None, "the owner could not sign in before the run"
        checked_at: list[int] = []
        lockout_after = None
        with CountingChecks() as checks:
            for n in range(tries):
                result = crud.sign_in(
                    session,
                    username=username,
                    password=f"guess-{n}",
                    client_ip=address_of(n),
                    now=start + timedelta(seconds=n),
                )
                assert result.user is None
                if result.checked:
                    checked_at.append(n)
                elif lockout_after is None:
                    lockout_after = n
        end = start + timedelta(seconds=tries)
        rightful = crud.sign_in(session, username=username, password=PASSWORD, client_ip=OWNER, now=end)
        newcomer = crud.sign_in(session, username=username, password=PASSWORD, client_ip=NEWCOMER, now=end)
    after_lock = [n for n in checked_at if lockout_after is not None and n > lockout_after]
    gaps = [b - a for a, b in zip(after_lock, after_lock[1:], strict=False)]
    return {
        "tries": str(tries),
        "password_checks": str(checks.count),
        "lockout_after": str(lockout_after if lockout_after is not None else tries),
        "min_gap_after_lockout_s": str(min(gaps)) if gaps else "none",
        "rightful_signin": "ok" if rightful.user is not None else "refused",
        "newcomer_signin": "ok" if newcomer.user is not None else "refused",
    }


def http_run(database_url: str) -> dict[str, str]:
    """Wrong passwords through POST /api/v1/auth/login, timed."""
    from fastapi.testclient import TestClient

    from cloud.main import create_app

    settings = Settings(database_url=database_url, maintenance_interval_s=0, operations_interval_s=0)
    latencies: dict[int, list[float]] = {}
    retry_after = "none"
    with TestClient(create_app(settings), client=(HTTP_GUESSER, 40000)) as client:
        for n in range(HTTP_TRIES):
            began = time.perf_counter()
            response = client.post("/api/v1/auth/login", json={"username": "http-owner", "password": f"guess-{n}"})
            latencies.setdefault(response.status_code, []).append((time.perf_counter() - began) * 1000)
            retry_after = response.headers.get("retry-after", retry_after)

    def p50(code: int) -> str:
        return f"{statistics.median(latencies[code]):.1f}" if code in latencies else "none"

    return {
        "http_tries": str(HTTP_TRIES),
        "http_401": str(len(latencies.get(401, []))),
        "http_429": str(len(latencies.get(429, []))),
        "retry_after_s": retry_after,
        "checked_ms_p50": p50(401),
        "refused_ms_p50": p50(429),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite", help="the cloud's database")
    parser.add_argument("--tries", type=int, default=1000, help="guesses per run (default 1000)")
    parser.add_argument("--small", action="store_true", help="200 guesses per run, to show the bench works")
    args = parser.parse_args()
    tries = 200 if args.small else args.tries

    with tempfile.TemporaryDirectory(prefix="classops-login-bench-") as workdir:
        database = Database(args.db, Path(workdir))
        engine = create_db_engine(database.url)
        try:
            upgrade_database(engine)
            runs = {
                "one_address": guessing_run(engine, username="one-owner", tries=tries, address_of=lambda n: GUESSER),
                "many_addresses": guessing_run(
                    engine,
                    username="many-owner",
                    tries=tries,
                    address_of=lambda n: f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}",
                ),
            }
            for name, figures in runs.items():
                print(f"scenario={name} " + " ".join(f"{key}={value}" for key, value in figures.items()), flush=True)
            from sqlmodel import Session

            with Session(engine) as session:
                crud.create_user(
                    session, actor=crud.Actor.cli("bench"), username="http-owner", password=PASSWORD, role="auditor"
                )
            print("scenario=http " + " ".join(f"{k}={v}" for k, v in http_run(database.url).items()), flush=True)
        finally:
            engine.dispose()
            database.drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
