"""Every operation of the served OpenAPI, fuzzed by schemathesis against a real server on a seeded database,
as a county admin, a school admin and a gateway: no answer is a 5xx, and every answer has a status and a
body that the OpenAPI documents for that operation. A failure prints the request that reproduces it.

schemathesis runs as its command-line runner (its pytest plugin does not run under this pytest), with all
its phases but the stateful one: the schema's examples, the coverage phase's boundary values and random
cases, positive and negative."""

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from cloud import crud, registry
from cloud.core import security
from cloud.core.db import create_db_engine
from simulator.stack import CloudServer, http_json
from tests.cloud.helpers import CLI, PASSWORD, record, seed_places, tap

# Fixed: the same cases every run, so that a failure reproduces and the time taken stays the same.
SEED = 20261206
CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"
LOGOUT = "/api/v1/auth/logout"
RUN_TIMEOUT_S = 300


@dataclass
class LiveCloud:
    """A running cloud, its database, and a bearer token per role."""

    url: str
    engine: Engine
    tokens: dict[str, str]

    def fresh_token(self, role: str) -> str:
        """A new login token of the role's user (for /auth/logout, which ends the one it is sent with)."""
        with Session(self.engine) as session:
            user = crud.get_user_by_username(session, username=role)
            assert user is not None
            token, _ = crud.create_auth_token(session, user=user, ttl=timedelta(hours=1))
        return token


def _seed(engine: Engine) -> dict[str, str]:
    tokens = {}
    with Session(engine) as session:
        seed_places(session)
        for code in ("s1", "s2"):
            registry.create_school(session, actor=CLI, code=code, name=f"School {code}", district_code="d1")
        gateway, tokens["gateway"] = registry.create_gateway(session, actor=CLI, school_code="s1")
        building = registry.create_building(session, actor=CLI, school_code="s1", name="Main")
        assert building.id is not None
        registry.create_classroom(session, actor=CLI, building_id=building.id, name="101", grade=1, class_label="1-1")
        for username, role, school in (("county", "county_admin", None), ("admin1", "school_admin", "s1")):
            user = crud.create_user(
                session, actor=CLI, username=username, password=PASSWORD, role=role, school_code=school
            )
            tokens[username], _ = crud.create_auth_token(session, user=user, ttl=timedelta(hours=2))
    return tokens


@pytest.fixture(scope="module")
def live_cloud(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[LiveCloud]:
    """uvicorn on a free port, on a SQLite database with two schools, their people, a gateway and reports."""
    workdir = tmp_path_factory.mktemp("schema-cloud")
    database = workdir / "cloud.db"
    shutil.copyfile(sqlite_template, database)
    url = f"sqlite:///{database}"
    engine = create_db_engine(url)
    with pytest.MonkeyPatch.context() as patch:
        # Cheap password hashes for the seeded people; the cost factor is not what this test is about.
        patch.setattr(security, "BCRYPT_ROUNDS", 4)
        tokens = _seed(engine)
    server = CloudServer(
        workdir,
        database_url=url,
        env={
            "CLASSOPS_CLOUD_MEDIA_DIR": str(workdir / "media"),
            "CLASSOPS_CLOUD_MAINTENANCE_INTERVAL_S": "0",
            "CLASSOPS_CLOUD_OPERATIONS_INTERVAL_S": "0",
            # A fuzzed wait must not hold a request open for half a minute.
            "CLASSOPS_CLOUD_DOWNLINK_MAX_WAIT_S": "0",
            # Fuzzing syncs far faster than a gateway would.
            "CLASSOPS_CLOUD_SYNC_RATE_PER_S": "100000",
            "CLASSOPS_CLOUD_SYNC_BURST": "100000",
        },
    )
    server.start()
    try:
        now = time.time()
        reports = [
            record(1, "health", ts=now, uptime_s=60, heap_free=50_000, rssi=-60, fw="1.0.0"),
            record(2, "alarm", ts=now, code="offline", state="raise"),
            tap(3, ts=now),
            record(4, "telemetry", ts=now, readings={"co2": 800, "temp_c": 21.5}),
        ]
        status, answer = http_json(
            "POST", server.url + "/api/v1/gateway/sync", {"records": reports, "sent_at": now}, token=tokens["gateway"]
        )
        assert status == 200 and not answer["rejected"], answer
        yield LiveCloud(url=server.url, engine=engine, tokens=tokens)
    finally:
        server.stop()
        engine.dispose()


# What each role runs, within the time the whole test may take (two minutes on two cores). The county admin,
# who reaches every operation, also runs the coverage phase: each parameter's boundary values, valid and
# invalid (wrong types, out of range, missing, malformed), which is where bad input used to meet a 5xx.
# Nearly every operation refuses a gateway's token before reading anything else, so fewer random cases
# tell as much there.
PLANS = {
    "county": {"max_examples": 5, "coverage": "all"},
    "admin1": {"max_examples": 5, "coverage": None},
    "gateway": {"max_examples": 3, "coverage": None},
}


def _config(path: Path, role: str, token: str, logout_token: str) -> Path:
    """A schemathesis.toml for the role: its token on every request but /auth/logout, which gets one of its
    own (the first call ends it; the later ones are answered 401, as documented)."""
    plan = PLANS[role]
    coverage = (
        f'[phases.coverage.generation]\nmode = "{plan["coverage"]}"'
        if plan["coverage"]
        else "[phases.coverage]\nenabled = false"
    )
    path.write_text(
        f"""seed = {SEED}
headers = {{ Authorization = "Bearer {token}" }}

[generation]
max-examples = {plan["max_examples"]}
deterministic = true
# The token is sent by the headers above; made-up credentials would only test the 401.
with-security-parameters = false
database = "none"

{coverage}

[phases.stateful]
enabled = false

[[operations]]
include-path = "{LOGOUT}"
headers = {{ Authorization = "Bearer {logout_token}" }}
"""
    )
    return path


@pytest.mark.slow
@pytest.mark.parametrize("role", ["county", "admin1", "gateway"], ids=["county_admin", "school_admin", "gateway"])
def test_every_operation_answers_as_documented(live_cloud: LiveCloud, tmp_path: Path, role: str) -> None:
    logout_token = live_cloud.fresh_token(role) if role != "gateway" else live_cloud.tokens[role]
    config = _config(tmp_path / "schemathesis.toml", role, live_cloud.tokens[role], logout_token)
    argv = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--no-color",
        "--config-file",
        str(config),
        "run",
        f"{live_cloud.url}/openapi.json",
        "--checks",
        CHECKS,
        "--workers",
        "2",
        "--request-timeout",
        "30",
        "--report-dir",
        str(tmp_path / "report"),
        # The tokens are this run's own: show them, so that a failure's curl command is the request as sent.
        "--output-sanitize",
        "false",
    ]

    done = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=tmp_path)

    # The runner's own report: each failure with its check, the response, and a curl command reproducing it.
    assert done.returncode == 0, done.stdout[-20_000:] + done.stderr[-2_000:]
    tested = re.search(r"Selected: (\d+)/\1\s+Tested: \1\b", done.stdout)
    assert tested and int(tested.group(1)) >= 80, done.stdout[-5_000:]
