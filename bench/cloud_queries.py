"""County queries: the county dashboard and the work-order list through the cloud's HTTP API, at county size.

Prints `dashboard_p95_ms=<n> order_list_p95_ms=<n>` (target: under 200 ms each), after a line of what was
loaded and how long the load took.

- The database is a throwaway one (`CREATE DATABASE classops_bench_<random>` on the local PostgreSQL,
  dropped at the end, or a SQLite file), brought to the newest schema by `classops cloud migrate`.
- The county is loaded straight into the cloud's tables (COPY on PostgreSQL, executemany on SQLite): a
  city of a few districts, each with its own service calendar (holidays, make-up school days); 500
  schools of 20 classrooms, each classroom with an attendance terminal, a sensor node and a smart
  blackboard (30,000 devices); a gateway per school; contractor teams with technicians covering the
  districts; a year of work orders (about two device faults per device and year, plus gateway outages)
  in every state, with their SLA deadlines and whether they were met, and the alarms behind them plus as
  many that cleared before they became orders. For the dashboard's default period (the last 30 days) the
  devices' hourly health roll-ups during service hours and the blackboards' usage counters are loaded too,
  so that online rate and blackboard usage have their real inputs.
- The cloud's maintenance job (`cloud.main.maintenance_once`, what the app runs on its timer) then runs
  once, as it would after the loaded history had arrived: it builds the daily summaries the figures read
  for closed days. Its time is printed as `summary_build_s`.
- The cloud then runs as its own process (`classops cloud serve`, its periodic jobs off so that nothing
  changes the data under the measurement). People log in through the API: a county admin (every school)
  asks for the dashboard (`GET /api/v1/figures?scope=county`, the default 30 days) and pages through the
  work orders (page 1, the open ones, one school's, a later page); a technician pages through their own.
  Each request is made `--requests` times after a warm-up, one at a time; the figures are the 95th
  percentiles of their latencies.
- The answers are checked against what was loaded (devices, schools, orders, a technician's orders): a
  benchmark that measures a wrong answer is worthless.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson

from cloud.servicetime import Calendar
from cloud.workorders import SLA_HOURS, fault_levels, priority_of

from cloud_ingest import POSTGRES, Cloud, Database, admin

PASSWORD = "bench-password-1"
ROLES = ("attendance", "sensor", "blackboard")
FAULTS = {
    "attendance": ("reader_fault", "device_offline", "safe_mode"),
    "sensor": ("sensor_fault:co2", "sensor_fault:pm25", "device_offline", "config_invalid"),
    "blackboard": ("display_power_fault", "display_no_answer", "display_power_mismatch", "device_offline"),
}
OPEN = ("new", "assigned", "accepted", "in_progress", "pending")
ZONE = "Asia/Shanghai"


# ---- the county -----------------------------------------------------------------------------------


@dataclass
class Size:
    schools: int
    districts: int
    classrooms: int  # per school; three devices each
    days: int  # of work orders and alarms
    window_days: int  # of health roll-ups and blackboard usage: the dashboard's default period
    technicians: int  # per team
    faults_per_device_year: float = 2.0


FULL = Size(schools=500, districts=4, classrooms=20, days=365, window_days=30, technicians=10)
SMALL = Size(schools=10, districts=2, classrooms=20, days=30, window_days=30, technicians=3)


def _holidays(first: date, last: date) -> tuple[list[str], list[str]]:
    """China's public holidays between two days, and a make-up school day for each long one."""
    holidays, makeups = [], []
    for year in range(first.year, last.year + 1):
        spans = ((date(year, 1, 1), 1), (date(year, 2, 16), 7), (date(year, 4, 5), 1), (date(year, 5, 1), 5),
                 (date(year, 6, 19), 1), (date(year, 10, 1), 7))
        for start, length in spans:
            holidays += [(start + timedelta(days=n)).isoformat() for n in range(length)]
            if length >= 5:
                makeups.append((start - timedelta(days=start.isoweekday() % 7 + 1)).isoformat())
    return holidays, makeups


@dataclass
class County:
    """What was loaded, for checking the answers and choosing what to ask."""

    schools: list[str] = field(default_factory=list)
    devices: int = 0
    orders: int = 0
    open_orders: int = 0
    alarms: int = 0
    health_hourly: int = 0
    telemetry: int = 0
    technician_orders: dict[str, int] = field(default_factory=dict)
    technician_open: dict[str, int] = field(default_factory=dict)


class Loader:
    """Rows into the cloud's tables: COPY on PostgreSQL, executemany through the SQLModel tables on SQLite."""

    def __init__(self, database: Database) -> None:
        self.database = database
        if database.kind == "postgresql":
            import psycopg

            self.pg = psycopg.connect(dbname=database.name, **POSTGRES)
            # The rows are consistent by construction: checking millions of foreign keys one by one would
            # take most of the load's time.
            self.pg.execute("SET session_replication_role = replica")
        else:
            from sqlalchemy import create_engine

            self.engine = create_engine(database.url)
            self.sqlite = self.engine.connect()

    @staticmethod
    def _text(value: Any) -> str:
        if value is None:
            return "\\N"
        if isinstance(value, bool):
            return "t" if value else "f"
        if isinstance(value, datetime | date):
            return value.isoformat()
        if isinstance(value, dict | list):
            value = orjson.dumps(value).decode()
        return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """Insert rows (tuples in the order of `columns`); returns how many."""
        count = 0
        if self.database.kind == "postgresql":
            text = self._text
            with self.pg.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                chunk: list[str] = []
                for row in rows:
                    chunk.append("\t".join(map(text, row)))
                    count += 1
                    if len(chunk) >= 20_000:
                        copy.write("\n".join(chunk) + "\n")
                        chunk = []
                if chunk:
                    copy.write("\n".join(chunk) + "\n")
            self.pg.commit()
            return count
        from sqlmodel import SQLModel

        import cloud.models  # noqa: F401  (the tables)

        statement = SQLModel.metadata.tables[table].insert()
        batch: list[dict[str, Any]] = []
        for row in rows:
            batch.append(dict(zip(columns, row, strict=True)))
            count += 1
            if len(batch) >= 20_000:
                self.sqlite.execute(statement, batch)
                batch = []
        if batch:
            self.sqlite.execute(statement, batch)
        self.sqlite.commit()
        return count

    def finish(self, tables: Sequence[str]) -> None:
        """Move id sequences past the loaded ids and refresh the planner's statistics."""
        if self.database.kind == "postgresql":
            with self.pg.cursor() as cursor:
                for table in tables:
                    cursor.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                    )
            self.pg.commit()
            self.pg.autocommit = True
            self.pg.execute("VACUUM ANALYZE")
            self.pg.close()
        else:
            from sqlalchemy import text

            self.sqlite.execute(text("ANALYZE"))
            self.sqlite.commit()
            self.sqlite.close()
            self.engine.dispose()


def load(database: Database, size: Size, seed: int) -> County:
    """The county, loaded directly into the tables of a migrated database."""
    rng = random.Random(seed)
    county = County()
    loader = Loader(database)
    now = datetime.now(UTC).replace(microsecond=0)
    epoch = now - timedelta(days=size.days)
    from zoneinfo import ZoneInfo

    today = now.astimezone(ZoneInfo(ZONE)).date()

    # Districts, each with its service calendar.
    districts = [f"d{n + 1}" for n in range(size.districts)]
    loader.insert("city", ("code", "name"), [("bc", "Bench City")])
    loader.insert("district", ("code", "city_code", "name"), [(d, "bc", f"District {d}") for d in districts])
    holidays, makeups = _holidays(epoch.date() - timedelta(days=7), today + timedelta(days=30))
    calendars: dict[str, Calendar] = {}
    rows = []
    for index, district in enumerate(districts):
        start = clock(7, 30) if index % 2 else clock(8, 0)
        calendars[district] = Calendar(
            timezone=ZONE, day_start=start, day_end=clock(18, 0), weekdays=frozenset({1, 2, 3, 4, 5}),
            holidays=frozenset(date.fromisoformat(d) for d in holidays),
            school_days=frozenset(date.fromisoformat(d) for d in makeups),
        )
        rows.append((district, start.strftime("%H:%M"), "18:00", [1, 2, 3, 4, 5], holidays, makeups, now))
    loader.insert("service_calendar", ("scope", "day_start", "day_end", "weekdays", "holidays", "school_days",
                                       "updated_at"), rows)

    # Schools, buildings, classrooms, gateways, devices.
    school_district: dict[str, str] = {}
    for n in range(size.schools):
        code = f"s{n + 1:04d}"
        county.schools.append(code)
        school_district[code] = districts[n % len(districts)]
    loader.insert("school", ("code", "name", "timezone", "district_code", "created_at"),
                  [(code, f"School {code}", ZONE, school_district[code], epoch) for code in county.schools])
    buildings, classrooms, gateways = [], [], []
    devices: list[tuple[str, str, str, int]] = []  # id, school, role, classroom
    for n, code in enumerate(county.schools):
        for b in range(2):
            building_id = n * 2 + b + 1
            buildings.append((building_id, code, f"Building {b + 1}"))
        for c in range(size.classrooms):
            classroom_id = n * size.classrooms + c + 1
            classrooms.append((classroom_id, code, n * 2 + c % 2 + 1, f"Room {c + 1}", c % 12 + 1, f"{c + 1}"))
            for r, role in enumerate(ROLES):
                # A classroom in a hundred has no blackboard yet: coverage stays below its target.
                if role == "blackboard" and rng.random() < 0.01:
                    continue
                devices.append((f"esp32-{n:06x}{c * 4 + r:06x}", code, role, classroom_id))
        gateways.append((f"gw-{code}", code, f"Gateway {code}", secrets.token_hex(32), epoch, now, 0))
    loader.insert("building", ("id", "school_code", "name"), buildings)
    loader.insert("classroom", ("id", "school_code", "building_id", "name", "grade", "class_label"), classrooms)
    loader.insert("gateway", ("id", "school_code", "name", "token_hash", "created_at", "last_sync_at",
                              "last_gateway_seq"), gateways)
    # Some devices went quiet for good some time ago; the rest report.
    dead = {device[0] for device in devices if rng.random() < 0.02}
    seen = {device[0]: now - timedelta(days=rng.uniform(1, 60)) if device[0] in dead
            else now - timedelta(seconds=rng.uniform(0, 300)) for device in devices}
    county.devices = loader.insert(
        "device",
        ("id", "school_code", "classroom_id", "role", "fw", "app", "presence", "presence_since", "last_seen_at",
         "boot_id", "first_seen_at", "model", "vendor", "asset_tag"),
        [(device_id, school, classroom_id, role, "1.4.2", "0.9.0", "offline" if device_id in dead else "online",
          seen[device_id], seen[device_id], f"{n:08x}", epoch, f"CO-{role[:2].upper()}-1", "ClassOps",
          f"AT{n:07d}")
         for n, (device_id, school, role, classroom_id) in enumerate(devices)],
    )

    # People: a city-wide county admin, and a team of technicians per district (plus one for gateways).
    from cloud.core.security import hash_password

    password_hash = hash_password(PASSWORD)
    users = [(1, "county", "county_admin", None, None, True, password_hash, epoch)]
    teams, members, coverage = [], [], []
    technicians: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for t, district in enumerate(districts):
        team_id = t + 1
        teams.append((team_id, f"Contractor {district}", epoch))
        coverage += [(team_id, district, role) for role in ROLES]
        technicians[team_id] = []
        for k in range(size.technicians):
            user_id = len(users) + 1
            username = f"tech-{district}-{k + 1}"
            users.append((user_id, username, "technician", None, None, True, password_hash, epoch))
            members.append((user_id, team_id))
            technicians[team_id].append(user_id)
            names[user_id] = username
    gateway_team = len(districts) + 1
    teams.append((gateway_team, "Network contractor", epoch))
    coverage += [(gateway_team, district, "gateway") for district in districts]
    technicians[gateway_team] = []
    for k in range(max(1, size.technicians // 2)):
        user_id = len(users) + 1
        users.append((user_id, f"tech-net-{k + 1}", "technician", None, None, True, password_hash, epoch))
        members.append((user_id, gateway_team))
        technicians[gateway_team].append(user_id)
        names[user_id] = f"tech-net-{k + 1}"
    loader.insert("user_account", ("id", "username", "role", "school_code", "district_code", "is_active",
                                   "password_hash", "created_at"), users)
    loader.insert("contractor_team", ("id", "name", "created_at"), teams)
    loader.insert("team_member", ("user_id", "team_id"), members)
    loader.insert("team_coverage", ("team_id", "district_code", "device_role"), coverage)

    # A year of work orders, and the alarms behind them.
    team_of_district = {district: t + 1 for t, district in enumerate(districts)}
    seqs: dict[str, int] = {}
    orders: list[tuple[Any, ...]] = []
    alarms: list[tuple[Any, ...]] = []
    open_keys: set[str] = set()
    per_tech: dict[str, int] = {}
    per_tech_open: dict[str, int] = {}

    def alarm(device_id: str, school: str, n: int, code: str, state: str, at: datetime) -> None:
        seqs[device_id] = seqs.get(device_id, 0) + 1
        alarms.append((device_id, f"{n:08x}", seqs[device_id], at, school, at + timedelta(seconds=2), code, state,
                       "bench" if state == "raise" else None, False, "device", f"gw-{school}"))

    device_years = len(devices) * size.days / 365
    faults = int(device_years * size.faults_per_device_year)
    gateway_faults = max(1, int(size.schools * size.days / 365 * 6))
    span_s = (now - epoch).total_seconds()
    # Ids grow with time, as they do when orders are opened one after another.
    openings = sorted((epoch + timedelta(seconds=rng.uniform(0, span_s)), k >= faults)
                      for k in range(faults + gateway_faults))
    for k, (created, is_gateway) in enumerate(openings):
        if is_gateway:
            school = rng.choice(county.schools)
            device_id, role, n, code = None, "gateway", 0, "gateway_offline"
            subject = f"g:gw-{school}"
            team_id = gateway_team
        else:
            n = rng.randrange(len(devices))
            device_id, school, role, _ = devices[n]
            code = rng.choice(FAULTS[role])
            subject = f"d:{device_id}"
            team_id = team_of_district[school_district[school]]
        impact, urgency = fault_levels(code)
        priority = priority_of(impact, urgency)
        calendar = calendars[school_district[school]]
        age_days = (now - created).total_seconds() / 86400
        roll = rng.random()
        if age_days < 3:
            status = rng.choice(OPEN) if roll < 0.6 else "resolved"
        elif age_days < 21:
            status = rng.choice(OPEN) if roll < 0.15 else "resolved" if roll < 0.35 else "closed"
        else:
            status = ("pending" if roll < 0.01 else "cancelled" if roll < 0.04 else "resolved" if roll < 0.06
                      else "closed")
        key = f"{subject}:{code}"
        if status in OPEN:
            if key in open_keys:
                status = "closed"
            else:
                open_keys.add(key)
        own_h, resolve_h = SLA_HOURS[priority]
        own_due = calendar.add_service(created, own_h * 3600)
        resolve_due = calendar.add_service(created, resolve_h * 3600)
        assigned = status != "new" and status != "cancelled"
        assignee = rng.choice(technicians[team_id]) if assigned and technicians[team_id] else None
        assigned_at = created + timedelta(seconds=rng.uniform(5, 120)) if assignee else None
        accepted_at = resolved_at = closed_at = pending_since = None
        if assignee and status != "assigned":
            accepted_at = min(now, created + timedelta(hours=rng.lognormvariate(0.3, 1.0)))
        if status in ("resolved", "closed"):
            resolved_at = min(now, (accepted_at or created) + timedelta(hours=rng.lognormvariate(1.2, 1.1)))
        if status == "closed" and resolved_at is not None:
            closed_at = min(now, resolved_at + timedelta(hours=rng.uniform(1, 72)))
        if status == "pending":
            pending_since = min(now, (accepted_at or created) + timedelta(hours=1))
        own_met = None if accepted_at is None else accepted_at <= own_due
        resolve_met = None if resolved_at is None else resolved_at <= resolve_due
        cancelled = status == "cancelled"
        if assignee:
            per_tech[names[assignee]] = per_tech.get(names[assignee], 0) + 1
            if status in OPEN:
                per_tech_open[names[assignee]] = per_tech_open.get(names[assignee], 0) + 1
        updated = max(t for t in (created, assigned_at, accepted_at, resolved_at, closed_at, pending_since) if t)
        orders.append((
            k + 1, "gateway" if is_gateway else "device", device_id, f"gw-{school}" if is_gateway else None, school,
            code, "gateway" if is_gateway else "alarm", f"{code} at {school}", None, status, impact, urgency, priority,
            team_id, assignee, None, created, updated, created, own_due,
            resolve_due, calendar.add_service(created, own_h * 3600 * 0.8),
            calendar.add_service(created, resolve_h * 3600 * 0.8), False, False, own_met, resolve_met,
            "waiting for a spare part" if pending_since else None, pending_since, 0.0, assigned_at, accepted_at,
            resolved_at, closed_at, "replaced" if resolved_at else None, 0, status in OPEN and not cancelled,
            created, None, None, 0, False, key if status in OPEN else None, [],
        ))
        if not is_gateway:
            assert device_id is not None
            alarm(device_id, school, n, code, "raise", created - timedelta(seconds=rng.uniform(10, 300)))
            if resolved_at is not None or cancelled:
                alarm(device_id, school, n, code, "clear", resolved_at or created + timedelta(hours=1))
            # As many alarms again cleared by themselves before they became orders.
            blip = epoch + timedelta(seconds=rng.uniform(0, span_s))
            alarm(device_id, school, n, code, "raise", blip)
            alarm(device_id, school, n, code, "clear", blip + timedelta(seconds=rng.uniform(30, 240)))
    order_columns = (
        "id", "kind", "device_id", "gateway_id", "school_code", "fault_code", "source", "title", "description",
        "status", "impact", "urgency", "priority", "team_id", "assignee_id", "reporter_id", "created_at",
        "updated_at", "sla_started_at", "own_due_at", "resolve_due_at", "own_warn_at", "resolve_warn_at",
        "own_warned", "resolve_warned", "own_met", "resolve_met", "pending_reason", "pending_since",
        "pending_service_s", "assigned_at", "accepted_at", "resolved_at", "closed_at", "resolution", "reopen_count",
        "alarm_active", "alarm_at", "clear_since", "verified_by_device_at", "flap_count", "flapping", "open_key",
        "raise_times",
    )
    county.orders = loader.insert("work_order", order_columns, orders)
    county.open_orders = sum(1 for order in orders if order[9] in OPEN)
    county.technician_orders, county.technician_open = per_tech, per_tech_open
    alarms.sort(key=lambda row: row[3])
    county.alarms = loader.insert(
        "alarm",
        ("device_id", "boot_id", "seq", "ts", "school_code", "received_at", "code", "state", "detail", "historical",
         "source", "gateway_id"),
        alarms,
    )

    # The dashboard's period: hourly health in service hours, and the blackboards' usage counters.
    window = [today - timedelta(days=d) for d in range(size.window_days - 1, -1, -1)]
    spans = {district: [calendar.window(day) for day in window] for district, calendar in calendars.items()}

    def health_rows() -> Iterator[tuple[Any, ...]]:
        hour = timedelta(hours=1)
        for device_id, school, _role, _ in devices:
            if device_id in dead:
                continue
            # A device in twenty is unplugged for a few days of the period.
            gap = (rng.randrange(len(window)), rng.randrange(1, 5)) if rng.random() < 0.05 else (-1, 0)
            for index, span in enumerate(spans[school_district[school]]):
                if span is None or gap[0] <= index < gap[0] + gap[1]:
                    continue
                moment = span[0].replace(minute=0)
                while moment + hour <= span[1] and moment + hour <= now:
                    if rng.random() < 0.985:
                        yield (device_id, moment, school, 60, 1, 72_000, 81_000.5, 40_000, -71, -62.5, 86_400)
                    moment += hour

    county.health_hourly = loader.insert(
        "health_hourly",
        ("device_id", "hour", "school_code", "samples", "boots", "heap_free_min", "heap_free_avg",
         "heap_max_block_min", "rssi_min", "rssi_avg", "uptime_max"),
        health_rows(),
    )

    def usage_rows() -> Iterator[tuple[Any, ...]]:
        for n, (device_id, school, role, _) in enumerate(devices):
            if role != "blackboard" or device_id in dead:
                continue
            counter = rng.uniform(100, 2000)
            seq = 1_000_000
            for span in spans[school_district[school]]:
                if span is None or span[0] > now:
                    continue
                used = rng.choice((0.0, 0.2, 1.5, 3.0, 4.5, 6.0))
                for at, value in ((span[0] + timedelta(minutes=5), counter),
                                  (min(now, span[1] - timedelta(minutes=5)), counter + used)):
                    seq += 1
                    yield (device_id, f"{n:08x}", seq, at, school, at, {"usage_h": round(value, 2)}, None)
                counter += used

    county.telemetry = loader.insert(
        "telemetry_sample",
        ("device_id", "boot_id", "seq", "ts", "school_code", "received_at", "readings", "faults"),
        usage_rows(),
    )
    loader.finish(("building", "classroom", "user_account", "contractor_team", "work_order", "alarm"))
    return county


# ---- the measurement ------------------------------------------------------------------------------


class Client:
    """One person's keep-alive connection to the API."""

    def __init__(self, port: int, username: str) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        status, body = self.request("POST", "/api/v1/auth/login", {"username": username, "password": PASSWORD})
        if status != 200:
            raise RuntimeError(f"{username} could not log in: {status} {body[:300]!r}")
        self.auth = f"Bearer {orjson.loads(body)['access_token']}"

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"}
        if getattr(self, "auth", None):
            headers["Authorization"] = self.auth
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=None if body is None else orjson.dumps(body), headers=headers)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (OSError, http.client.HTTPException):
                # The server closes a keep-alive connection left idle while the other person was measured.
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str, params: Sequence[tuple[str, Any]] = ()) -> tuple[float, Any]:
        """Seconds the request took, and its JSON answer."""
        started = time.perf_counter()
        status, body = self.request("GET", f"{path}?{urlencode(params)}" if params else path)
        elapsed = time.perf_counter() - started
        if status != 200:
            raise RuntimeError(f"GET {path} {params}: {status} {body[:300]!r}")
        return elapsed, orjson.loads(body)


def measure(client: Client, path: str, params: Sequence[tuple[str, Any]], requests: int, warmup: int
            ) -> tuple[list[float], Any]:
    answer = None
    for _ in range(warmup):
        _, answer = client.get(path, params)
    latencies = []
    for _ in range(requests):
        elapsed, answer = client.get(path, params)
        latencies.append(elapsed)
    return latencies, answer


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def check(what: str, got: Any, want: Any, problems: list[str]) -> None:
    if got != want:
        problems.append(f"{what}: the API said {got}, the loaded data has {want}")


def build_summaries(url: str) -> float:
    """One run of the cloud's maintenance job on the loaded database; returns the seconds it took."""
    from cloud.core.config import Settings
    from cloud.core.db import create_db_engine
    from cloud.main import maintenance_once

    engine = create_db_engine(url)
    try:
        started = time.monotonic()
        maintenance_once(engine, Settings(database_url=url, maintenance_interval_s=0, operations_interval_s=0))
        return time.monotonic() - started
    finally:
        engine.dispose()


def run(args: argparse.Namespace) -> int:
    size = SMALL if args.small else FULL
    workdir = Path(tempfile.mkdtemp(prefix="classops-bench-"))
    database = Database(args.db, workdir)
    cloud = None
    try:
        admin(database.url, "migrate")
        started = time.monotonic()
        county = load(database, size, args.seed)
        load_s = time.monotonic() - started
        print(f"# {args.db}: loaded {county.devices} devices, {county.orders} orders, {county.alarms} alarms, "
              f"{county.health_hourly} hourly health rows, {county.telemetry} telemetry samples in {load_s:.1f} s; "
              f"database {database.size()}", file=sys.stderr)
        summary_build_s = build_summaries(database.url)
        print(f"# maintenance run (daily summaries) took {summary_build_s:.1f} s", file=sys.stderr)
        # Nothing may change the data while it is measured: no periodic jobs.
        os.environ["CLASSOPS_CLOUD_MAINTENANCE_INTERVAL_S"] = "0"
        os.environ["CLASSOPS_CLOUD_OPERATIONS_INTERVAL_S"] = "0"
        cloud = Cloud(database.url, args.workers, workdir)

        problems: list[str] = []
        county_user = Client(cloud.port, "county")
        busiest = max(county.technician_orders,
                      key=lambda name: (county.technician_open.get(name, 0), county.technician_orders[name]))
        technician = Client(cloud.port, busiest)
        open_params = [("status", status) for status in OPEN]

        dashboard, report = measure(county_user, "/api/v1/figures", [("scope", "county")], args.requests, args.warmup)
        print(f"# dashboard: p95 {percentile(dashboard, 0.95) * 1000:.1f} ms", file=sys.stderr)
        check("dashboard devices", report["figures"]["devices"], county.devices, problems)
        check("dashboard schools", len(report["schools"]), len(county.schools), problems)

        order_list: list[float] = []
        pages: list[tuple[Client, list[tuple[str, Any]], int | None]] = [
            (county_user, [("limit", 50)], county.orders),
            (county_user, [*open_params, ("limit", 50)], county.open_orders),
            (county_user, [("school", county.schools[len(county.schools) // 2]), ("limit", 50)], None),
            (county_user, [("limit", 50), ("offset", county.orders // 2)], county.orders),
            (technician, [("limit", 50)], county.technician_orders[busiest]),
            (technician, [*open_params, ("limit", 50)], county.technician_open.get(busiest, 0)),
            (technician, [("limit", 50), ("offset", 50)], county.technician_orders[busiest]),
        ]
        for client, params, total in pages:
            latencies, page = measure(client, "/api/v1/work-orders", params, args.requests, args.warmup)
            order_list += latencies
            if total is not None:
                check(f"work-order total for {params}", page["total"], total, problems)
            if not page["items"] and page["total"] > dict(params).get("offset", 0):
                problems.append(f"work-order page {params} is empty")
            print(f"# work orders {'county' if client is county_user else 'technician'} {urlencode(params)}: "
                  f"p95 {percentile(latencies, 0.95) * 1000:.1f} ms, total {page['total']}", file=sys.stderr)
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        if problems:
            return 1
        print(f"schools={len(county.schools)} devices={county.devices} work_orders={county.orders} "
              f"open_orders={county.open_orders} alarms={county.alarms} health_hourly={county.health_hourly} "
              f"load_s={load_s:.0f}")
        print(f"dashboard_p95_ms={percentile(dashboard, 0.95) * 1000:.0f} "
              f"order_list_p95_ms={percentile(order_list, 0.95) * 1000:.0f} "
              f"summary_build_s={summary_build_s:.1f}")
        return 0
    finally:
        if cloud is not None:
            cloud.stop()
            if args.keep_log:
                print(f"# cloud log: {cloud.log_path}", file=sys.stderr)
        if args.keep_db:
            print(f"# database kept: {database.url}", file=sys.stderr)
        else:
            database.drop()
        # A kept SQLite database lives in the work folder.
        if not (args.keep_log or args.keep_db):
            shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql", help="the cloud's database")
    parser.add_argument("--requests", type=int, default=20, help="measured requests of each kind (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="requests of each kind before measuring (default 2)")
    parser.add_argument("--workers", type=int, default=1, help="API worker processes (default 1)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-db", action="store_true", help="keep the loaded database and say where it is")
    parser.add_argument("--keep-log", action="store_true", help="keep the cloud's log and say where it is")
    parser.add_argument("--small", action="store_true",
                        help="10 schools, 600 devices, a month of orders: a quick run that shows the bench works")
    args = parser.parse_args()
    if args.small:
        args.requests = min(args.requests, 5)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
