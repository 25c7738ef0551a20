"""Cloud ingest: batches of gateway records -> the real cloud (`classops cloud serve`) -> its database.

Prints `records_per_s=<n> batch_p99_ms=<n> api_cpu_us_per_record=<n> db_cpu_us_per_record=<n>`.

- The database is a throwaway one: `CREATE DATABASE classops_bench_<random>` on the local PostgreSQL
  (dropped at the end), or a SQLite file in a temporary directory.
- The cloud runs as its own process, started the way an operator starts it; schools and gateways are
  registered through the `classops cloud` administration commands.
- Client processes post batches over keep-alive HTTP connections, each gateway one batch at a time, as
  a real gateway's bulk lane does. The batches' bodies are made and encoded before the clock starts, so
  that the clients take little of the machine's CPU from the cloud and its database. The load is a
  morning peak: mostly attendance taps, with health and telemetry samples, a little presence and a few
  alarms raised and cleared. Every device's first records are its birth.
- records_per_s is the records confirmed by the cloud over the time from the first post to the last
  answer; batch_p99_ms is the 99th percentile of the batch requests' latency.
- api_cpu_us_per_record is the CPU time (user and system, from /proc) of the cloud's processes per
  record, db_cpu_us_per_record that of the PostgreSQL backends serving it (0 on SQLite, whose work is the
  cloud's own): on a machine that other work shares these say more about the code than the rate does.
- At the end the bench checks that the database holds exactly what was sent (attendance taps, samples,
  the sync ledger) and that the cloud rejected nothing: a benchmark that loses data is worthless.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import math
import multiprocessing
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
SYNC_PATH = "/api/v1/gateway/sync"
# A classroom's devices: a third are attendance terminals, a third environment sensors, a third blackboards.
ROLES = ("attendance", "sensor", "blackboard")
# The morning peak, per record: (kind, share).
MIX = (("attendance", 0.88), ("health", 0.06), ("telemetry", 0.05), ("presence", 0.008), ("alarm", 0.002))
TS0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
MAX_RETRY_WAIT_S = 5.0
# Bodies made ahead per gateway: enough for the run at this many records a second over all gateways;
# past that, a client makes the next ones as it goes.
PREPARED_RATE = 70_000


# ---- the load -------------------------------------------------------------------------------------


class GatewayLoad:
    """One school's gateway: its devices' boots and sequence numbers, and its own gateway sequence."""

    def __init__(self, index: int, gateway_id: str, token: str, devices: int, seed: int) -> None:
        self.gateway_id = gateway_id
        self.auth = f"Bearer {token}"
        self.rng = random.Random(seed)
        self.devices = [f"esp32-{index:06x}{n:06x}" for n in range(devices)]
        self.roles = {device: ROLES[n % len(ROLES)] for n, device in enumerate(self.devices)}
        self.by_role = {role: [d for d in self.devices if self.roles[d] == role] for role in ROLES}
        self.boots = {device: f"{self.rng.getrandbits(32):08x}" for device in self.devices}
        self.seqs = dict.fromkeys(self.devices, 0)
        self.unborn = list(self.devices)
        self.raised: list[tuple[str, str]] = []
        self.gseq = 0
        self.ts = TS0
        kinds, shares = zip(*MIX, strict=True)
        self.kinds = self.rng.choices(kinds, shares, k=4096)
        self.pick = 0
        self.prepared: list[tuple[bytes, Counter[str]]] = []

    def _record(self, kind: str, device: str, body: dict[str, Any], keyed: bool = True) -> dict[str, Any]:
        self.gseq += 1
        self.ts += 0.01
        record: dict[str, Any] = {"gseq": self.gseq, "kind": kind, "device": device, "ts": round(self.ts, 3)}
        if keyed:
            self.seqs[device] += 1
            record["boot"] = self.boots[device]
            record["seq"] = self.seqs[device]
        else:
            record["boot"] = None
            record["seq"] = None
        record["body"] = body
        return record

    def _next(self) -> dict[str, Any]:
        if self.unborn:
            device = self.unborn.pop()
            body = {"role": self.roles[device], "fw": "1.4.2", "app": "0.9.0", "reset": "power_on", "health_s": 60}
            return self._record("birth", device, body)
        kind = self.kinds[self.pick % len(self.kinds)]
        self.pick += 1
        rng = self.rng
        if kind == "attendance":
            device = rng.choice(self.by_role["attendance"])
            return self._record(kind, device, {"card": f"{rng.getrandbits(128):032x}", "hist": False})
        if kind == "health":
            device = rng.choice(self.devices)
            body = {
                "uptime_s": int(self.ts - TS0) + 600,
                "heap_free": rng.randrange(60_000, 110_000),
                "heap_max_block": rng.randrange(30_000, 60_000),
                "rssi": rng.randrange(-80, -40),
                "buffered": rng.randrange(0, 5),
                "errors": {"mqtt": rng.randrange(0, 3)},
            }
            return self._record(kind, device, body)
        if kind == "telemetry":
            device = rng.choice(self.by_role["sensor"])
            readings = {
                "temp_c": round(rng.uniform(16, 26), 1),
                "rh_pct": round(rng.uniform(30, 60), 1),
                "co2_ppm": rng.randrange(420, 1800),
                "pm25_ugm3": rng.randrange(3, 80),
                "lux": rng.randrange(100, 900),
                "noise_db": round(rng.uniform(35, 70), 1),
            }
            return self._record(kind, device, {"readings": readings, "faults": None})
        if kind == "presence":
            device = rng.choice(self.devices)
            return self._record(kind, device, {"state": rng.choice(("online", "online", "offline"))}, keyed=False)
        # Alarms come as a raise and, some time later, its clear.
        if self.raised and rng.random() < 0.5:
            device, code = self.raised.pop(0)
            return self._record("alarm", device, {"code": code, "state": "clear", "hist": False})
        device = rng.choice(self.by_role["sensor"])
        code = rng.choice(("sensor_fault:co2", "sensor_fault:pm25", "heap_low"))
        self.raised.append((device, code))
        return self._record("alarm", device, {"code": code, "state": "raise", "detail": "bench", "hist": False})

    def batch(self, size: int) -> tuple[bytes, Counter[str]]:
        """The next batch as the request body, and how many records of each kind it holds."""
        records = [self._next() for _ in range(size)]
        kinds = Counter(record["kind"] for record in records)
        return orjson.dumps({"records": records, "sent_at": time.time()}), kinds

    def prepare(self, batches: int, size: int) -> None:
        """Make and encode the next `batches` batches now; next_batch hands them out in order."""
        self.prepared = [self.batch(size) for _ in range(batches)]
        self.prepared.reverse()

    def next_batch(self, size: int) -> tuple[bytes, Counter[str]]:
        return self.prepared.pop() if self.prepared else self.batch(size)


# ---- the clients ----------------------------------------------------------------------------------


def _post(
    conn_box: list[http.client.HTTPConnection | None], port: int, body: bytes, auth: str
) -> tuple[int, bytes, str | None]:
    """POST a batch on the thread's keep-alive connection; reconnect and send again if it broke."""
    for attempt in range(5):
        if conn_box[0] is None:
            conn_box[0] = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn = conn_box[0]
        try:
            conn.request(
                "POST", SYNC_PATH, body=body, headers={"Content-Type": "application/json", "Authorization": auth}
            )
            response = conn.getresponse()
            return response.status, response.read(), response.getheader("Retry-After")
        except (OSError, http.client.HTTPException):
            conn.close()
            conn_box[0] = None
            if attempt == 4:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def _drive(loads: list[GatewayLoad], port: int, batch: int, deadline: float, out: dict[str, Any]) -> None:
    """Post batches of `loads` in turn, one at a time, until `deadline`."""
    conn_box: list[http.client.HTTPConnection | None] = [None]
    latencies: list[float] = out["latencies"]
    sent: Counter[str] = out["sent"]
    turn = 0
    while time.time() < deadline:
        load = loads[turn % len(loads)]
        turn += 1
        body, kinds = load.next_batch(batch)
        while True:
            started = time.perf_counter()
            status, answer, retry_after = _post(conn_box, port, body, load.auth)
            if status != 429:
                break
            # Rate limited, as a real gateway would be: wait as told and send the same batch again.
            out["throttled"] += 1
            time.sleep(min(MAX_RETRY_WAIT_S, float(retry_after or 1)))
        latencies.append(time.perf_counter() - started)
        out["last_answer"] = time.time()
        if status != 200:
            out["errors"].append(f"{load.gateway_id}: HTTP {status}: {answer[:300]!r}")
            return
        result = orjson.loads(answer)
        if result["rejected"] or len(result["confirmed"]) != sum(kinds.values()):
            out["errors"].append(
                f"{load.gateway_id}: {len(result['confirmed'])} confirmed of {sum(kinds.values())}, "
                f"rejected {result['rejected'][:3]}"
            )
            return
        sent.update(kinds)
    if conn_box[0] is not None:
        conn_box[0].close()


def client_process(gateways: list[tuple[int, str, str]], args: dict[str, Any], ready, go, results) -> None:
    """One client process: `threads` connections, each driving its share of `gateways`."""
    loads = [
        GatewayLoad(index, gateway_id, token, args["devices"], seed=args["seed"] * 100_003 + index)
        for index, gateway_id, token in gateways
    ]
    per_gateway = args["duration"] * PREPARED_RATE / args["gateways"]
    for load in loads:
        load.prepare(math.ceil(per_gateway / args["batch"]), args["batch"])
    threads = max(1, min(args["threads"], len(loads)))
    shares = [loads[n::threads] for n in range(threads)]
    outs = [
        {"latencies": [], "sent": Counter(), "throttled": 0, "errors": [], "last_answer": 0.0} for _ in shares
    ]
    ready.put(os.getpid())
    go.wait()
    deadline = args["start"].value + args["duration"]
    workers = [
        threading.Thread(target=_drive, args=(share, args["port"], args["batch"], deadline, out), daemon=True)
        for share, out in zip(shares, outs, strict=True)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    merged: dict[str, Any] = {"latencies": [], "sent": Counter(), "throttled": 0, "errors": [], "last_answer": 0.0}
    for out in outs:
        merged["latencies"].extend(out["latencies"])
        merged["sent"].update(out["sent"])
        merged["throttled"] += out["throttled"]
        merged["errors"].extend(out["errors"])
        merged["last_answer"] = max(merged["last_answer"], out["last_answer"])
    results.put(merged)


# ---- the database and the server ------------------------------------------------------------------


class Database:
    """A throwaway database: PostgreSQL on the local server, or a SQLite file."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        if kind == "postgresql":
            import psycopg

            self.name = f"classops_bench_{secrets.token_hex(5)}"
            with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as admin:
                admin.execute(f'CREATE DATABASE "{self.name}"')
            self.url = f"postgresql+psycopg://{POSTGRES['user']}@{POSTGRES['host']}:{POSTGRES['port']}/{self.name}"
        else:
            self.path = workdir / "cloud.db"
            self.url = f"sqlite:///{self.path}"

    def counts(self, tables: list[str]) -> dict[str, int]:
        """Rows in each table."""
        if self.kind == "postgresql":
            import psycopg

            with psycopg.connect(dbname=self.name, **POSTGRES) as conn:
                return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in tables}
        import sqlite3

        with contextlib.closing(sqlite3.connect(self.path)) as conn:
            return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in tables}

    def size(self) -> str:
        if self.kind == "postgresql":
            import psycopg

            with psycopg.connect(dbname=self.name, **POSTGRES) as conn:
                return conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]
        return f"{self.path.stat().st_size // 2**20} MB"

    def drop(self) -> None:
        if self.kind == "postgresql":
            import psycopg

            with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def admin(database_url: str, *argv: str) -> str:
    """Run a `classops cloud` administration command and return what it printed.

    The commands run in this process through the CLI's own entry point: a new interpreter for each of a
    hundred registrations would spend minutes importing the same modules.
    """
    import classops_cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = classops_cli.main(["--log-level", "WARNING", "cloud", *argv, "--database-url", database_url])
    if code != 0:
        raise RuntimeError(f"classops cloud {' '.join(argv)} failed ({code}): {out.getvalue()}")
    return out.getvalue()


def register(database_url: str, gateways: int) -> list[tuple[int, str, str]]:
    """A city, a district, and `gateways` schools with a gateway each: [(index, gateway_id, token)]."""
    admin(database_url, "migrate")
    admin(database_url, "add-city", "--code", "bc", "--name", "Bench City")
    admin(database_url, "add-district", "--code", "bd", "--city", "bc", "--name", "Bench County")
    out = []
    for index in range(1, gateways + 1):
        code = f"b{index:04d}"
        admin(database_url, "add-school", "--code", code, "--name", f"Bench school {index}", "--district", "bd")
        credentials = orjson.loads(admin(database_url, "add-gateway", "--school", code).strip().splitlines()[-1])
        out.append((index, credentials["gateway_id"], credentials["token"]))
    return out


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cloud:
    """`classops cloud serve` as a process of its own."""

    def __init__(self, database_url: str, workers: int, workdir: Path) -> None:
        self.port = free_port()
        self.log_path = workdir / "cloud.log"
        argv = [sys.executable, "-m", "classops_cli", "--log-level", "WARNING", "cloud", "serve",
                "--host", "127.0.0.1", "--port", str(self.port), "--database-url", database_url]
        if workers > 1:
            argv += ["--workers", str(workers)]
        self.log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        while not self._healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the cloud did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)

    def _healthy(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
            conn.request("GET", "/api/v1/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False

    def profile(self, path: str, seconds: float) -> subprocess.Popen[bytes]:
        """py-spy sampling the cloud's processes for `seconds` into `path` (.svg, .json, .txt: collapsed)."""
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        formats = {".json": "speedscope", ".txt": "raw"}
        return subprocess.Popen(
            [py_spy, "record", "--pid", str(self.proc.pid), "--subprocesses", "--gil", "--rate", "100", "--duration",
             str(math.ceil(seconds)), "--format", formats.get(Path(path).suffix, "flamegraph"), "-o", path],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ---- the run --------------------------------------------------------------------------------------


def _cpu_s(pid: int, fields_wanted: tuple[int, ...] = (11, 12)) -> float:
    """CPU seconds (by default user and system, all threads) a live process has used; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(fields[index]) for index in fields_wanted) / os.sysconf("SC_CLK_TCK")


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_use(cloud: Cloud, database: Database) -> tuple[float, float, float]:
    """CPU seconds so far of the cloud's processes, of the database server's work for it, and of the
    cloud's time in the kernel.

    On a machine that other work shares, CPU per record says more about the code than records a second do.
    """
    server_pids = _descendants(cloud.proc.pid)
    server = sum(_cpu_s(pid) for pid in server_pids)
    kernel = sum(_cpu_s(pid, (12,)) for pid in server_pids)
    if database.kind != "postgresql":
        return server, 0.0, kernel
    import psycopg

    with psycopg.connect(dbname="postgres", **POSTGRES) as conn:
        pids = [row[0] for row in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (database.name,))]
    return server, sum(_cpu_s(pid) for pid in pids), kernel


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="classops-bench-"))
    database = Database(args.db, workdir)
    cloud = None
    try:
        started = time.monotonic()
        gateways = register(database.url, args.gateways)
        cloud = Cloud(database.url, args.workers, workdir)
        print(f"# {args.db}: {args.gateways} gateways x {args.devices} devices, batches of {args.batch}, "
              f"{args.clients} client processes x {args.threads} connections, {args.workers} API workers, "
              f"{args.duration:.0f} s (set up in {time.monotonic() - started:.1f} s)", file=sys.stderr)

        ctx = multiprocessing.get_context("spawn")
        ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        start = ctx.Value("d", 0.0)
        shared = {"devices": args.devices, "gateways": len(gateways), "threads": args.threads, "port": cloud.port,
                  "batch": args.batch,
                  "duration": args.duration, "seed": args.seed, "start": start}
        clients = [
            ctx.Process(target=client_process, args=(gateways[n::args.clients], shared, ready, go, results))
            for n in range(min(args.clients, len(gateways)))
        ]
        for client in clients:
            client.start()
        for _ in clients:
            ready.get(timeout=300)
        profiler = cloud.profile(args.profile, args.duration) if args.profile else None
        cpu_before = cpu_use(cloud, database)
        start.value = time.time()
        go.set()
        answers = [results.get(timeout=args.duration + 300) for _ in clients]
        for client in clients:
            client.join()
        elapsed = max(answer["last_answer"] for answer in answers) - start.value
        cpu_after = cpu_use(cloud, database)
        if profiler is not None:
            profiler.wait()

        latencies = [latency for answer in answers for latency in answer["latencies"]]
        sent: Counter[str] = Counter()
        for answer in answers:
            sent.update(answer["sent"])
        errors = [error for answer in answers for error in answer["errors"]]
        throttled = sum(answer["throttled"] for answer in answers)
        total = sum(sent.values())

        tables = {"attendance_event": sent["attendance"], "health_sample": sent["health"],
                  "telemetry_sample": sent["telemetry"], "alarm": sent["alarm"], "ingested_record": total}
        stored = database.counts(list(tables))
        print(f"# sent {dict(sent)}; stored {stored}; {len(latencies)} batches, {throttled} throttled (429); "
              f"database {database.size()}", file=sys.stderr)
        if total:
            server_us, database_us, kernel_us = (
                (after - before) / total * 1e6 for before, after in zip(cpu_before, cpu_after, strict=True)
            )
            print(f"# CPU per record: cloud {server_us:.1f} us (system {kernel_us:.1f}), database backends "
                  f"{database_us:.1f} us; "
                  f"machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", file=sys.stderr)
        lost = {table: (want, stored[table]) for table, want in tables.items() if stored[table] != want}
        for error in errors[:10]:
            print(f"error: {error}", file=sys.stderr)
        if lost:
            print(f"error: the database does not hold what was sent: {lost} (table: (sent, stored))", file=sys.stderr)
        if errors or lost:
            return 1
        api_us, db_us = (
            ((after - before) / total * 1e6 if total else 0.0)
            for before, after in list(zip(cpu_before, cpu_after, strict=True))[:2]
        )
        print(f"records_per_s={total / elapsed:.0f} batch_p99_ms={percentile(latencies, 0.99) * 1000:.1f} "
              f"api_cpu_us_per_record={api_us:.1f} db_cpu_us_per_record={db_us:.1f}")
        return 0
    finally:
        if cloud is not None:
            cloud.stop()
            if args.keep_log:
                print(f"# cloud log: {cloud.log_path}", file=sys.stderr)
        database.drop()
        if not args.keep_log:
            shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql", help="the cloud's database")
    parser.add_argument("--gateways", type=int, default=60, help="schools, one gateway each (default 60)")
    parser.add_argument("--devices", type=int, default=60, help="devices per school (default 60)")
    parser.add_argument("--batch", type=int, default=1000, help="records per batch (default 1000)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    parser.add_argument("--clients", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--threads", type=int, default=4, help="connections per client process (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="API worker processes (default 2)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--profile", help="sample the cloud with py-spy during the load into this file (.svg, .json, .txt: collapsed)"
    )
    parser.add_argument("--keep-log", action="store_true", help="keep the cloud's log and say where it is")
    parser.add_argument("--small", action="store_true", help="a quick run (under a minute) that shows the bench works")
    args = parser.parse_args()
    if args.small:
        args.gateways = min(args.gateways, 12)
        args.duration = min(args.duration, 8.0)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
