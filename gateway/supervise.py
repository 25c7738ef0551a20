"""Keeping the gateway's tasks running through failures of its store, and saying so when the store cannot
write.

A task of the gateway is a loop that asks the store worker for things. The worker may die (it is
replaced by the next request) or the store may be unable to write (a full disk, a read-only or failing
device): the task then fails one round, waits with a jittered backoff and goes on. Only a configuration
error, which no retry can mend, ends the process.

While the store cannot write, the `store_unwritable` alarm cannot be stored either: `StoreHealth` holds
it in memory, the priority sync lane sends it from there as soon as the cloud is reachable, and writes
what the cloud has not confirmed into the store once it can.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gateway.errors import ConfigError, StoreUnwritable, StoreWorkerError
from gateway.metrics import Metrics

if TYPE_CHECKING:
    from gateway.store_client import StoreClient

log = logging.getLogger(__name__)

# gseqs of records held in memory: far above any the store hands out (its row ids), below 2**63 (what the
# cloud's columns hold), and growing with the clock, so that one is never used twice across restarts.
HELD_GSEQ_BASE = 1 << 62
STORE_UNWRITABLE = "store_unwritable"
# A task that ran this long before it failed starts its backoff again from the shortest delay.
STABLE_AFTER_S = 60.0
TASK_RETRY_MIN_S = 0.5
TASK_RETRY_MAX_S = 10.0


def backoff_delay(attempt: int, low: float, high: float) -> float:
    """Exponential backoff with +-50% jitter, so that many gateways (or tasks) do not retry in step."""
    return min(high, low * (2 ** min(attempt, 30))) * random.uniform(0.5, 1.5)


class StoreHealth:
    """Whether the store can write, and the gateway alarms about it that are not in the store yet."""

    def __init__(self, metrics: Metrics, on_change: Callable[[], None] = lambda: None) -> None:
        self._metrics = metrics
        self._on_change = on_change
        self.unwritable_since: float | None = None
        self.detail = ""
        self._held: list[dict[str, Any]] = []
        self._last_gseq = 0
        metrics.set("store_writable", 1)

    @property
    def writable(self) -> bool:
        """False from a failed write until a write succeeds again."""
        return self.unwritable_since is None

    def failed(self, detail: str, now: float | None = None) -> None:
        """A write failed because the store cannot write: raise the alarm (once)."""
        self._metrics.inc("store_unwritable_errors")
        self.detail = detail
        if self.unwritable_since is not None:
            return
        now = time.time() if now is None else now
        self.unwritable_since = now
        self._metrics.set("store_writable", 0)
        log.error("the store cannot write; nothing more is acknowledged until it can: %s", detail)
        self._hold("raise", f"{detail}: new samples are refused, events wait on the devices", now)

    def recovered(self, now: float | None = None) -> None:
        """A write succeeded: clear the alarm if it was raised."""
        if self.unwritable_since is None:
            return
        now = time.time() if now is None else now
        log.warning("the store writes again after %.0f s", now - self.unwritable_since)
        self._hold("clear", f"the store writes again after {now - self.unwritable_since:.0f} s", now)
        self.unwritable_since = None
        self.detail = ""
        self._metrics.set("store_writable", 1)

    def _hold(self, state: str, detail: str, now: float) -> None:
        gseq = max(self._last_gseq + 1, HELD_GSEQ_BASE + int(now * 1000))
        self._last_gseq = gseq
        self._held.append({"gseq": gseq, "kind": "gateway_alarm", "device": None, "boot": None, "seq": None,
                           "ts": now, "body": {"code": STORE_UNWRITABLE, "state": state, "detail": detail}})
        self._on_change()

    def held(self) -> list[dict[str, Any]]:
        """The alarm records not in the store, oldest first, as sync records."""
        return list(self._held)

    def answered(self, gseqs: set[int]) -> None:
        """The cloud confirmed or rejected these records: they are done."""
        self._held = [r for r in self._held if r["gseq"] not in gseqs]

    async def write_held(self, store: StoreClient) -> None:
        """Move the held records into the store, in order, once it writes again."""
        while self._held and self.writable:
            record = self._held[0]
            body = record["body"]
            await store.gateway_alarm(body["code"], body["state"], body["detail"], record["ts"])
            self._held.pop(0)

    def snapshot(self) -> dict[str, Any]:
        """What the status page shows of the store's health."""
        return {
            "writable": self.writable,
            "unwritable_for_s": None if self.unwritable_since is None else round(time.time() - self.unwritable_since),
            "detail": self.detail,
        }


async def supervised(name: str, run: Callable[[], Awaitable[Any]], metrics: Metrics) -> None:
    """Run a task's loop for ever: after a failure, log and count it, wait a jittered backoff, and run it
    again. A ConfigError ends it, and the gateway with it: no retry can mend a configuration."""
    failures = itertools.count()
    while True:
        started = time.monotonic()
        try:
            await run()
            return
        except ConfigError:
            raise
        except Exception as exc:
            # Exception, not BaseException: cancellation (the gateway stopping) goes through.
            metrics.inc("task_failures", label=name)
            if time.monotonic() - started >= STABLE_AFTER_S:
                failures = itertools.count()
            delay = backoff_delay(next(failures), TASK_RETRY_MIN_S, TASK_RETRY_MAX_S)
            log.error("task %s failed, running it again in %.1f s: %s: %s", name, delay,
                      type(exc).__name__, exc, exc_info=not _expected(exc))
            await asyncio.sleep(delay)


def _expected(exc: BaseException) -> bool:
    # A store that failed is said in one line; anything else is a defect and gets its traceback.
    return isinstance(exc, StoreUnwritable | StoreWorkerError)
