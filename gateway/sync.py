"""Cloud sync: pushes pending records in gseq order and marks them synced only on confirmation."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx

from gateway.config import GatewaySettings
from gateway.errors import CloudError, StoreUnwritable, StoreWorkerError
from gateway.metrics import Metrics
from gateway.store_client import StoreClient
from gateway.supervise import HELD_GSEQ_BASE, StoreHealth, backoff_delay

log = logging.getLogger(__name__)

SYNC_PATH = "/api/v1/gateway/sync"
PRIORITY_POLL_S = 5.0
# The first wait before a batch whose answer the store could not record is sent again; it grows from here.
STORE_RETRY_S = 1.0



class CloudSync:
    """Pushes the store's pending records to the cloud; a posted batch that fails is sent again.

    Two run at once: the priority lane carries alarms and command acks the moment they are committed,
    whatever backlog of samples and attendance the bulk lane is still working through; the bulk lane
    carries everything else, oldest first, and sends the heartbeat when there is nothing to send.
    The priority lane also carries the alarms `held` in memory while the store cannot write.
    """

    def __init__(self, settings: GatewaySettings, store: StoreClient,
                 metrics: Metrics, client: httpx.AsyncClient | None = None, lane: str = "bulk",
                 held: StoreHealth | None = None) -> None:
        self._settings = settings
        self._held = held
        self._store = store
        self.lane = lane
        self._metrics = metrics
        self._client = client or httpx.AsyncClient(
            base_url=settings.cloud.url, timeout=settings.cloud.timeout_s, verify=settings.cloud.tls_verify()
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
        failures = store_failures = 0
        while True:
            self.wake.clear()
            held = await self._held_records()
            try:
                records = held + await self._store.pending(cloud.batch_size, self.lane)
            except (StoreUnwritable, StoreWorkerError) as exc:
                # The held alarms, or the heartbeat, still go: the cloud must not take a gateway whose store
                # fails for one that is away.
                self._metrics.inc("sync_store_errors", label=self.lane)
                log.warning("%s sync cannot read the store: %s", self.lane, exc)
                records = held
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
            if self._held is not None and held:
                self._held.answered({*confirmed, *(g for g, _ in rejected)})
                confirmed = [g for g in confirmed if g < HELD_GSEQ_BASE]
                rejected = [(g, r) for g, r in rejected if g < HELD_GSEQ_BASE]
            try:
                await self._store.mark_synced(confirmed, rejected)
                store_failures = 0
            except (StoreUnwritable, StoreWorkerError) as exc:
                # The cloud answers a batch sent again as confirmed: nothing is lost but a round trip, made
                # less and less often while the store cannot write.
                self._metrics.inc("sync_store_errors", label=self.lane)
                store_failures += 1
                delay = backoff_delay(store_failures - 1, STORE_RETRY_S, cloud.backoff_max_s)
                log.warning("%s sync could not record the cloud's answer; the batch goes again in %.1f s: %s",
                            self.lane, delay, exc)
                await asyncio.sleep(delay)
            self._metrics.inc("records_synced", len(confirmed))
            for _, reason in rejected:
                self._metrics.inc("records_rejected_by_cloud", label=reason)
            if rejected:
                log.warning("cloud rejected %d records: %s", len(rejected), rejected[:5])
            unanswered = len(records) - len(held) - len(confirmed) - len(rejected)
            if unanswered:
                log.warning("cloud left %d records of the batch unanswered; they will be sent again",
                            unanswered)

    async def _held_records(self) -> list[dict[str, Any]]:
        # Held alarms go into the store as soon as it writes again, and from there like any record; until
        # then they are sent from memory.
        if self._held is None:
            return []
        try:
            await self._held.write_held(self._store)
        except (StoreUnwritable, StoreWorkerError) as exc:
            log.debug("held alarms not written to the store yet: %s", exc)
        return self._held.held()
