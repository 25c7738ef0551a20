"""The gateway's typed, asynchronous handle on its store worker: one method per store operation."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gateway.config import GatewaySettings
from gateway.errors import StoreUnwritable
from gateway.ingest import IngestResult, Prepared
from gateway.store_worker import Op, StoreWorker
from gateway.supervise import StoreHealth


class StoreClient:
    """Runs store operations in the store worker, off the event loop, and keeps `health` up to date.

    Requests are sent from one thread, in the order asked: sending blocks while the worker is busy.
    A StoreUnwritable answer marks the store unwritable; only a write that wrote something (a commit
    with new records, or the probe) marks it writable again: a batch of copies writes nothing.
    """

    def __init__(self, settings: GatewaySettings, health: StoreHealth) -> None:
        self.worker = StoreWorker(settings)
        self.health = health
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")

    @property
    def restarts(self) -> int:
        """How many times the worker process has been replaced."""
        return self.worker.restarts

    async def start(self) -> None:
        """Start the worker and wait until its store is open."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self.worker.start)

    def close(self) -> None:
        """Send what was asked, then let the worker finish it and exit."""
        self._executor.shutdown(wait=True)
        self.worker.close()

    async def _request(self, op: Op, *args: Any, chained: bool = False) -> Any:
        loop = asyncio.get_running_loop()
        try:
            answer = await loop.run_in_executor(
                self._executor, functools.partial(self.worker.submit, op, *args, chained=chained))
            return await asyncio.wrap_future(answer)
        except StoreUnwritable as exc:
            self.health.failed(str(exc))
            raise

    async def commit(self, prepared: Prepared, chained: bool = False) -> IngestResult:
        """Commit a prepared batch in one transaction (see Ingestor.commit).

        A `chained` commit is one sent while the commit before it is unanswered (see StoreWorker.submit).
        """
        result: IngestResult = await self._request(Op.COMMIT, prepared, chained=chained)
        if result.new and not self.health.writable:
            self.health.recovered()
        return result

    async def resume(self) -> None:
        """Let the worker take commits again after one failed."""
        await self._request(Op.RESUME)

    async def probe_write(self) -> None:
        """A small write that tells whether the store writes again."""
        await self._request(Op.PROBE_WRITE)
        if not self.health.writable:
            self.health.recovered()

    async def prune(self) -> int:
        """Delete synced records past their retention; return how many."""
        deleted: int = await self._request(Op.PRUNE)
        return deleted

    async def evaluate_rules(self) -> int:
        """Run the time-driven edge rules; return how many alarms were raised or cleared."""
        changed: int = await self._request(Op.EVALUATE_RULES)
        return changed

    async def mark_missing(self, missed_periods: int) -> list[str]:
        """Mark devices silent for `missed_periods` health periods offline; return them."""
        gone: list[str] = await self._request(Op.MARK_MISSING, missed_periods)
        return gone

    async def pending(self, limit: int, lane: str = "all") -> list[dict[str, Any]]:
        """Records not yet synced to the cloud, oldest first, of one sync lane."""
        records: list[dict[str, Any]] = await self._request(Op.PENDING, limit, lane)
        return records

    async def mark_synced(self, confirmed: Iterable[int], rejected: Iterable[tuple[int, str]]) -> None:
        """Record the cloud's answer: confirmed gseqs and rejected (gseq, reason) pairs."""
        await self._request(Op.MARK_SYNCED, confirmed, rejected)

    async def gateway_alarm(self, code: str, state: str, detail: str, now: float | None = None) -> None:
        """Record an alarm the gateway raised or cleared about itself, for the cloud."""
        await self._request(Op.GATEWAY_ALARM, code, state, detail, now)

    async def set_alarm(self, device: str, code: str, active: bool, detail: str) -> bool:
        """Raise or clear an edge alarm on a device; True if that changed anything."""
        changed: bool = await self._request(Op.SET_ALARM, device, code, active, detail)
        return changed

    async def active_alarms(self, device: str | None = None, prefix: str = "") -> list[str]:
        """Codes of the active edge alarms (of one device; `device/code` for all), starting with `prefix`."""
        names: list[str] = await self._request(Op.ACTIVE_ALARMS, device, prefix)
        return names

    async def queue_commands(self, commands: list[dict[str, Any]]) -> list[str]:
        """Keep commands pulled from the cloud until their device is there; return the new cids."""
        cids: list[str] = await self._request(Op.QUEUE_COMMANDS, commands)
        return cids

    async def open_commands(self, device: str | None = None, unpublished_only: bool = False) -> list[dict[str, Any]]:
        """Commands not yet answered by their device and not expired (of one device, or all)."""
        commands: list[dict[str, Any]] = await self._request(Op.OPEN_COMMANDS, device, unpublished_only)
        return commands

    async def command_published(self, cid: str) -> None:
        """The command went to the device's broker: tell the cloud it is delivered (once)."""
        await self._request(Op.COMMAND_PUBLISHED, cid)

    async def set_desired_configs(self, configs: list[dict[str, Any]], cursor: int | None) -> list[dict[str, Any]]:
        """Keep each device's latest desired config; return the ones newer than what was kept."""
        changed: list[dict[str, Any]] = await self._request(Op.SET_DESIRED_CONFIGS, configs, cursor)
        return changed

    async def desired_config(self, device: str) -> dict[str, Any] | None:
        """The latest desired config of a device, if the cloud has set one."""
        config: dict[str, Any] | None = await self._request(Op.DESIRED_CONFIG, device)
        return config

    async def config_cursor(self) -> int:
        """How far the gateway has read the cloud's config changes."""
        cursor: int = await self._request(Op.CONFIG_CURSOR)
        return cursor

    async def backlog(self) -> tuple[int, float]:
        """How many records wait for the cloud, and the oldest one's age in seconds."""
        count, age = await self._request(Op.BACKLOG)
        return count, age

    async def devices(self) -> list[dict[str, Any]]:
        """Every known device's row: id, role, presence, last seen..."""
        devices: list[dict[str, Any]] = await self._request(Op.DEVICES)
        return devices

    async def quarantine(self, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent rejected messages."""
        rows: list[dict[str, Any]] = await self._request(Op.QUARANTINE, limit)
        return rows
