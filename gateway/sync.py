"""Cloud sync: pushes pending records in gseq order and marks them synced only on confirmation."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from gateway.config import GatewaySettings
from gateway.errors import CloudError
from gateway.metrics import Metrics

log = logging.getLogger(__name__)

SYNC_PATH = "/api/v1/gateway/sync"
PRIORITY_POLL_S = 5.0

StoreCall = Callable[..., Awaitable[Any]]


def backoff_delay(attempt: int, low: float, high: float) -> float:
    """Exponential backoff with +-50% jitter, so that many gateways do not retry in step."""
    return min(high, low * (2 ** min(attempt, 30))) * random.uniform(0.5, 1.5)


class CloudSync:
    """Pushes the store's pending records to the cloud; a posted batch that fails is sent again.

    Two run at once: the priority lane carries alarms and command acks the moment they are committed,
    whatever backlog of samples and attendance the bulk lane is still working through; the bulk lane
    carries everything else, oldest first, and sends the heartbeat when there is nothing to send.
    """

    def __init__(self, settings: GatewaySettings, run_in_store: StoreCall,
                 metrics: Metrics, client: httpx.AsyncClient | None = None, lane: str = "bulk") -> None:
        self._settings = settings
        self._run = run_in_store
        self.lane = lane
        self._metrics = metrics
        self._client = client or httpx.AsyncClient(
            base_url=settings.cloud.url, timeout=settings.cloud.timeout_s
        )
        self.wake = asyncio.Event()
        self.gateway_id: str | None = None
        self.last_ok: float | None = None

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def push(self, records: list[dict[str, Any]]) -> tuple[list[int], list[tuple[int, str]]]:
        """Post one batch (empty = heartbeat) and return the cloud's (confirmed, rejected)."""
        cloud = self._settings.cloud
        try:
            resp = await self._client.post(
                SYNC_PATH,
                json={"records": records, "sent_at": time.time()},
                headers={"Authorization": f"Bearer {cloud.token}"},
            )
        except httpx.HTTPError as exc:
            raise CloudError(f"cloud unreachable at {cloud.url}: {exc!r}") from exc
        if resp.status_code in (401, 403):
            raise CloudError(f"cloud refused the gateway token ({resp.status_code}): check [cloud] token")
        if resp.status_code != 200:
            raise CloudError(f"cloud answered {resp.status_code}: {resp.text[:200]}")
        try:
            answer = resp.json()
            confirmed = [int(g) for g in answer["confirmed"]]
            rejected = [(int(r["gseq"]), str(r["reason"])) for r in answer.get("rejected", [])]
        except (ValueError, KeyError, TypeError) as exc:
            raise CloudError(f"cloud answered with an unreadable body: {resp.text[:200]}") from exc
        self.gateway_id = answer.get("gateway_id", self.gateway_id)
        return confirmed, rejected

    async def run(self) -> None:
        """Sync for ever: batches while there is a backlog, a heartbeat when idle, backoff on failure."""
        cloud = self._settings.cloud
        failures = 0
        while True:
            self.wake.clear()
            records = await self._run("pending", cloud.batch_size, self.lane)
            idle_for = time.monotonic() - self.last_ok if self.last_ok is not None else None
            heartbeat_due = idle_for is None or idle_for >= cloud.heartbeat_s
            if not records and (self.lane == "priority" or not heartbeat_due):
                wait = PRIORITY_POLL_S if self.lane == "priority" else cloud.heartbeat_s - (idle_for or 0.0)
                try:
                    await asyncio.wait_for(self.wake.wait(), wait)
                except TimeoutError:
                    pass
                continue
            try:
                confirmed, rejected = await self.push(records)
            except CloudError as exc:
                failures += 1
                self._metrics.inc("sync_failures", label=self.lane)
                delay = backoff_delay(failures - 1, cloud.backoff_min_s, cloud.backoff_max_s)
                log.warning("%s sync failed (attempt %d, retry in %.1fs): %s",
                            self.lane, failures, delay, exc)
                await asyncio.sleep(delay)
                continue
            if failures:
                log.info("cloud reachable again after %d failed attempts", failures)
            failures = 0
            self.last_ok = time.monotonic()
            await self._run("mark_synced", confirmed, rejected)
            self._metrics.inc("records_synced", len(confirmed))
            for _, reason in rejected:
                self._metrics.inc("records_rejected_by_cloud", label=reason)
            if rejected:
                log.warning("cloud rejected %d records: %s", len(rejected), rejected[:5])
            unanswered = len(records) - len(confirmed) - len(rejected)
            if unanswered:
                log.warning("cloud left %d records of the batch unanswered; they will be sent again",
                            unanswered)
