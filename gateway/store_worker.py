"""The store, in a process of its own, and the gateway's handle on it.

Validating, pseudonymising and committing a message costs about as much Python time as paho's reading
and acknowledging it. In one process the two share one interpreter lock and each halves the other's
speed; with the store in its own process, the broker link and the store each have a core.

The gateway talks to the worker over a pipe; a request is an `Op` and its arguments: a Store method,
`ingest` (raw broker messages in, what the gateway needs to acknowledge them out) or `commit` (a batch
prepared by the gateway). The worker answers requests in order; the gateway may send the next before
the last is answered. The gateway's code calls the worker through the typed StoreClient (store_client.py).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import multiprocessing
import multiprocessing.connection
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from gateway.config import GatewaySettings
from gateway.errors import StoreUnwritable, StoreWorkerError, StoreWorkerLost
from gateway.ingest import Ingestor, tune_gc
from gateway.records import unwritable
from gateway.store import Store
from gateway.supervise import backoff_delay

log = logging.getLogger(__name__)

WORKER_START_TIMEOUT_S = 60.0
# A worker that died after it had answered requests (or lived this long) is replaced at once. After two
# or more in a row that could not open the store, or died before they answered anything, the next is not
# started before a growing, jittered delay; requests until then fail at once, so that no task waits
# behind another's retry.
WORKER_STABLE_AFTER_S = 30.0
WORKER_RESTART_MIN_S = 0.2
WORKER_RESTART_MAX_S = 10.0


class Op(enum.StrEnum):
    """What the store worker can be asked to do."""

    INGEST = "ingest"
    COMMIT = "commit"
    RESUME = "resume"
    EXIT = "exit"
    PRUNE = "prune"
    EVALUATE_RULES = "evaluate_rules"
    MARK_MISSING = "mark_missing"
    PENDING = "pending"
    MARK_SYNCED = "mark_synced"
    GATEWAY_ALARM = "gateway_alarm"
    SET_ALARM = "set_alarm"
    ACTIVE_ALARMS = "active_alarms"
    QUEUE_COMMANDS = "queue_commands"
    OPEN_COMMANDS = "open_commands"
    COMMAND_PUBLISHED = "command_published"
    SET_DESIRED_CONFIGS = "set_desired_configs"
    DESIRED_CONFIG = "desired_config"
    CONFIG_CURSOR = "config_cursor"
    PROBE_WRITE = "probe_write"
    BACKLOG = "backlog"
    DEVICES = "devices"
    QUARANTINE = "quarantine"


def _operations(ingestor: Ingestor, store: Store) -> dict[Op, Callable[..., Any]]:
    # RESUME and EXIT are the worker's own; every other Op runs one of these.
    return {
        Op.INGEST: ingestor.ingest,
        Op.COMMIT: ingestor.commit,
        Op.PRUNE: ingestor.prune,
        Op.EVALUATE_RULES: ingestor.evaluate_rules,
        Op.MARK_MISSING: store.mark_missing,
        Op.PENDING: store.pending,
        Op.MARK_SYNCED: store.mark_synced,
        Op.GATEWAY_ALARM: store.gateway_alarm,
        Op.SET_ALARM: store.set_alarm,
        Op.ACTIVE_ALARMS: store.active_alarms,
        Op.QUEUE_COMMANDS: store.queue_commands,
        Op.OPEN_COMMANDS: store.open_commands,
        Op.COMMAND_PUBLISHED: store.command_published,
        Op.SET_DESIRED_CONFIGS: store.set_desired_configs,
        Op.DESIRED_CONFIG: store.desired_config,
        Op.CONFIG_CURSOR: store.config_cursor,
        Op.PROBE_WRITE: store.probe_write,
        Op.BACKLOG: store.backlog,
        Op.DEVICES: store.devices,
        Op.QUARANTINE: store.quarantine,
    }


# Answers of the worker to requests it did not run.
SKIPPED = "skipped: an earlier commit failed; the gateway sends it again first"


def _worker_main(conn: multiprocessing.connection.Connection, settings: GatewaySettings) -> None:
    # Ctrl-C reaches the whole process group; the gateway decides when the worker stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        store = Store(settings.db_path)
    except Exception as exc:
        # Said to the gateway, which tells a store that cannot write from one that cannot be used at all.
        with contextlib.suppress(OSError):
            conn.send(("unwritable" if unwritable(exc) else "error", f"{type(exc).__name__}: {exc}"))
        return
    ingestor = Ingestor(settings, store)
    operations = _operations(ingestor, store)
    tune_gc()
    # The gateway sends the next batch's commit before the last one's answer is back. Once a commit
    # fails, the commits after it are refused until the gateway says `resume`, so that batches are
    # committed in the order they were delivered even when one has to be sent again.
    halted = False
    try:
        # A gateway killed outright leaves the pipe closed or reset: the worker then just exits.
        try:
            conn.send(("ready", None))
        except OSError:
            return
        while True:
            try:
                op, args = conn.recv()
            except (EOFError, OSError):
                return
            try:
                if op is Op.EXIT:
                    reply: tuple[str, Any] = ("ok", None)
                elif op is Op.RESUME:
                    halted = False
                    reply = ("ok", None)
                elif op is Op.COMMIT and halted:
                    reply = ("error", SKIPPED)
                else:
                    reply = ("ok", operations[op](*args))
            except Exception as exc:
                halted = halted or op is Op.COMMIT
                reply = ("unwritable" if unwritable(exc) else "error", f"{type(exc).__name__}: {exc}")
            try:
                conn.send(reply)
            except (BrokenPipeError, EOFError, OSError):
                return
            if op is Op.EXIT or store.needs_reopen:
                # A store whose memory may no longer match its database is replaced by a fresh worker.
                return
    finally:
        store.close()


class _Link:
    """One worker process, its pipe, and the requests sent to it whose answers are still to come.

    The worker answers in the order it was asked, so a reader thread hands each answer to the oldest
    waiting request; when the worker dies, every waiting request fails."""

    def __init__(self, process: Any, conn: multiprocessing.connection.Connection, generation: int) -> None:
        self.generation = generation
        self.started = time.monotonic()
        self.answered = 0
        self.process = process
        self.conn = conn
        self.waiting: deque[tuple[Op, Future[Any]]] = deque()
        self.lock = threading.Lock()
        self.lost = False
        self.reader = threading.Thread(target=self._read, name="store-answers", daemon=True)
        self.reader.start()

    def usable(self) -> bool:
        return not self.lost and self.process.is_alive()

    def _read(self) -> None:
        while True:
            try:
                status, value = self.conn.recv()
            except (EOFError, OSError):
                break
            with self.lock:
                op, future = self.waiting.popleft()
            self.answered += 1
            # A request whose asker gave up (a cancelled task) is answered all the same, to no one.
            if not future.set_running_or_notify_cancel():
                continue
            if status == "ok":
                future.set_result(value)
            elif status == "unwritable":
                future.set_exception(StoreUnwritable(f"store {op} failed: {value}"))
            else:
                future.set_exception(StoreWorkerError(f"store {op} failed: {value}"))
        with self.lock:
            self.lost = True
            waiting, self.waiting = list(self.waiting), deque()
        for op, future in waiting:
            if future.set_running_or_notify_cancel():
                future.set_exception(StoreWorkerLost(f"the store worker died during {op}"))


class StoreWorker:
    """The gateway's handle on its store process.

    `submit` sends a request and returns a future of its answer at once, so that the next batch can be
    on its way to the worker while the worker commits the one before; answers come in request order.
    `call` sends and waits. A worker that died is replaced by the next request. The gateway's tasks use
    the typed StoreClient over this."""

    def __init__(self, settings: GatewaySettings) -> None:
        self._settings = settings
        self._ctx = multiprocessing.get_context("spawn")
        self._send_lock = threading.Lock()
        self._link: _Link | None = None
        self._generation = 0
        self._chain_generation = 0
        self._quick_failures = 0
        self._start_after = 0.0
        self._start_error: StoreWorkerError | StoreUnwritable | None = None
        self.restarts = 0

    @property
    def _process(self) -> Any:
        return None if self._link is None else self._link.process

    def start(self) -> None:
        """Start the worker and wait until its store is open."""
        settings = self._settings
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise (unwritable(exc) or StoreWorkerError(f"cannot make {settings.data_dir}: {exc}")) from exc
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(target=_worker_main, args=(child, settings), name="classops-store",
                                    daemon=True)
        process.start()
        child.close()
        if not parent.poll(WORKER_START_TIMEOUT_S):
            process.kill()
            process.join()
            parent.close()
            raise StoreWorkerLost(f"the store worker did not open {settings.db_path} in time")
        try:
            status, detail = parent.recv()
        except (EOFError, OSError) as exc:
            process.join()
            parent.close()
            raise StoreWorkerLost(f"the store worker could not open {settings.db_path}") from exc
        if status != "ready":
            process.join()
            parent.close()
            error = StoreUnwritable if status == "unwritable" else StoreWorkerError
            raise error(f"the store worker could not open {settings.db_path}: {detail}")
        self._generation += 1
        self._link = _Link(process, parent, self._generation)

    def submit(self, op: Op, *args: Any, chained: bool = False) -> Future[Any]:
        """Send a request to the worker; the future holds its answer, or a StoreWorkerError. Blocks while
        the worker has not read earlier requests.

        A `chained` commit (one sent while the commit before it is unanswered) must reach the worker that
        commit went to: if that worker has died or been replaced since, it fails at once instead of
        reaching a new worker ahead of the commit before it, which is to be sent again."""
        future: Future[Any] = Future()
        with self._send_lock:
            link = self._link
            if chained and (link is None or not link.usable() or link.generation != self._chain_generation):
                future.set_running_or_notify_cancel()
                future.set_exception(StoreWorkerLost(f"the store worker was replaced before {op}"))
                return future
            if link is None or not link.usable():
                self._restart()
                link = self._link
            assert link is not None
            if op is Op.COMMIT:
                self._chain_generation = link.generation
            with link.lock:
                if link.lost:
                    future.set_running_or_notify_cancel()
                    future.set_exception(StoreWorkerLost(f"the store worker died before {op}"))
                    return future
                link.waiting.append((op, future))
            try:
                link.conn.send((op, args))
            except (BrokenPipeError, EOFError, OSError):
                # The reader sees the pipe closed too, and fails the request with the others.
                pass
        return future

    def call(self, op: Op, *args: Any) -> Any:
        """Run an operation in the worker and return its result."""
        return self.submit(op, *args).result()

    def _restart(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.process.join(1.0)
            if link.process.is_alive():
                link.process.kill()
                link.process.join()
            link.conn.close()
            self.restarts += 1
            lived = time.monotonic() - link.started
            log.error("store worker exited with %s after %.0f s; starting a new one",
                      link.process.exitcode, lived)
            if link.answered or lived >= WORKER_STABLE_AFTER_S:
                self._quick_failures = 0
            else:
                self._failed(StoreWorkerLost(f"store workers die before they answer (exit {link.process.exitcode})"))
        wait = self._start_after - time.monotonic()
        if wait > 0 and self._start_error is not None:
            raise type(self._start_error)(f"{self._start_error} (next try in {wait:.1f} s)")
        try:
            self.start()
        except (StoreWorkerError, StoreUnwritable) as exc:
            self._failed(exc)
            raise

    def _failed(self, error: StoreWorkerError | StoreUnwritable) -> None:
        # One failure may be bad luck (a worker killed as it started): the next request tries at once.
        self._quick_failures += 1
        self._start_error = error
        self._start_after = 0.0 if self._quick_failures < 2 else time.monotonic() + backoff_delay(
            self._quick_failures - 2, WORKER_RESTART_MIN_S, WORKER_RESTART_MAX_S)

    def close(self, timeout: float = 10.0) -> None:
        """Let the worker finish what it was asked and exit."""
        with self._send_lock:
            link, self._link = self._link, None
        if link is None:
            return
        if link.usable():
            with link.lock:
                link.waiting.append((Op.EXIT, Future()))
            with contextlib.suppress(BrokenPipeError, EOFError, OSError):
                link.conn.send((Op.EXIT, ()))
        link.process.join(timeout)
        if link.process.is_alive():
            link.process.kill()
            link.process.join()
        link.reader.join(timeout)
        link.conn.close()
