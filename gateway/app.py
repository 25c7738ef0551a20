"""The gateway process: broker link, store writer, cloud sync and presence, one task per concern."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import socket
import threading
import time
from collections import deque
from typing import Any

import orjson

from gateway.broker import BrokerLink, Incoming
from gateway.config import GatewaySettings
from gateway.downlink import DownlinkRelay
from gateway.errors import StoreUnwritable, StoreWorkerError
from gateway.flood import DEVICE_FLOOD, FloodGuard
from gateway.ingest import IngestResult, Prepared, prepare, tune_gc
from gateway.metrics import Metrics
from gateway.serial_display import SerialDisplay
from gateway.status import GatewayStatus
from gateway.store import PRUNE_CHUNK
from gateway.store_client import StoreClient
from gateway.supervise import StoreHealth, backoff_delay, supervised
from gateway.sync import CloudSync
from protocol import messages, topics

log = logging.getLogger(__name__)

WRITE_BATCH = 2000
# Prepared batches sent to the store worker ahead of the oldest one's answer.
COMMITS_AHEAD = 2
INBOX_HIGH_WATER = 5 * WRITE_BATCH
# A failed commit is sent again after a jittered delay growing from STORE_RETRY_S to STORE_RETRY_MAX_S.
STORE_RETRY_S = 0.5
STORE_RETRY_MAX_S = 10.0
# While the store cannot write and no commit is being retried, a small write tries it this often.
STORE_PROBE_S = 2.0
EACK_KEYS_PER_MESSAGE = 32
PRUNE_EVERY_S = 60.0
# Rejection reason of the messages a flooding device sends beyond its rate.
FLOOD_REASON = "flood"
FLOOD_CHECK_S = 1.0
# The device gauges read every device's row from the store worker; the backlog gauges are one cheap query.
DEVICE_GAUGES_EVERY_S = 10.0
# How long the status page waits for the store's answer before it shows the page without it.
STORE_ANSWER_S = 2.0



class Inbox:
    """Hands messages from the broker's network thread to the store writer.

    The broker thread adds whole reads at a time; it wakes the event loop once, when the writer is
    waiting, instead of once per message: under load the writer finds a whole batch waiting each time.
    """

    def __init__(self, high_water: int = 0) -> None:
        self._items: deque[Incoming] = deque()
        self._lock = threading.Lock()
        # Above high_water messages the broker link stops reading until the writer has taken half:
        # the rest waits in the broker (which keeps QoS 1 messages for the gateway's session), memory
        # stays bounded, and a message's time here stays short.
        self._high_water = high_water
        self._room = threading.Event()
        self._room.set()
        self._waiting = False
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to the event loop the writer runs on."""
        self._loop = loop

    def put_many(self, items: list[Incoming]) -> None:
        """Add messages; called from the broker's thread."""
        self._items.extend(items)
        if self._high_water and len(self._items) >= self._high_water:
            self._room.clear()
            if len(self._items) < self._high_water:
                self._room.set()
        if self._waiting:
            with self._lock:
                if self._waiting and self._loop is not None:
                    self._waiting = False
                    self._loop.call_soon_threadsafe(self._event.set)

    def __len__(self) -> int:
        return len(self._items)

    def wait_room(self, timeout: float) -> bool:
        """Block the broker's thread until there is room for more messages; False on timeout."""
        return self._room.wait(timeout)

    async def take(self, limit: int) -> list[Incoming]:
        """Wait for at least one message and return up to `limit` of them, oldest first."""
        while True:
            if self._items:
                items = self._items
                taken = [items.popleft() for _ in range(min(limit, len(items)))]
                if not self._room.is_set() and len(items) <= self._high_water // 2:
                    self._room.set()
                return taken
            with self._lock:
                self._waiting = True
                self._event.clear()
                if self._items:
                    self._waiting = False
                    continue
            await self._event.wait()


class Gateway:
    """One school's gateway."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.store_health = StoreHealth(self.metrics, on_change=self._wake_sync)
        self.store = StoreClient(settings, self.store_health)
        self._inbox = Inbox(INBOX_HIGH_WATER)
        self._prepared: asyncio.Queue[tuple[list[Incoming], Prepared]] = asyncio.Queue(maxsize=1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flood = FloodGuard(settings.broker.device_rate_per_s, settings.broker.device_burst)
        self.broker = BrokerLink(settings, self._intake, self.metrics, read_gate=self._inbox.wait_room)
        self.sync: CloudSync | None = None
        self.priority_sync: CloudSync | None = None
        self.downlink: DownlinkRelay | None = None
        self.displays = {
            d.device_id: SerialDisplay(d, settings.school, self._ingest_local, self.metrics) for d in settings.displays
        }
        self._commit_retrying = False
        self._stopping = asyncio.Event()
        self._status: Any = None
        self.status_port: int | None = None

    def _intake(self, batch: list[Incoming]) -> None:
        """One read's messages, in the broker link's thread: a flooding device's excess is acknowledged
        at once and dropped (see flood.py), the rest goes to the store writer."""
        kept, flood = self._flood.admit(batch)
        if flood:
            # Counted in like every delivered message, so that in = committed + duplicate + rejected.
            self.metrics.inc("messages_in", len(flood))
            self.metrics.inc("messages_rejected", len(flood), label=FLOOD_REASON)
            self.broker.ack(flood)
        if kept:
            self._inbox.put_many(kept)

    async def _flood_alarms(self) -> None:
        # Raised devices are taken from the store, so that an alarm raised before a restart is cleared.
        raised = await self.store.active_alarms(None, DEVICE_FLOOD)
        self._flood.flooding([name.split("/", 1)[0] for name in raised], time.monotonic())
        while True:
            await asyncio.sleep(FLOOD_CHECK_S)
            for change in self._flood.changes(time.monotonic()):
                if change.flooding:
                    log.warning("device %s floods: over %s messages a second; %d dropped", change.device,
                                self.settings.broker.device_rate_per_s, change.dropped)
                    detail = (f"over {self.settings.broker.device_rate_per_s:g} messages a second for "
                              f"{self.settings.broker.device_burst / self.settings.broker.device_rate_per_s:g}"
                              f" s: {change.dropped} dropped")
                else:
                    log.info("device %s calm again; %d messages dropped in all", change.device, change.dropped)
                    detail = f"calm again; {change.dropped} messages dropped in all"
                if await self.store.set_alarm(change.device, DEVICE_FLOOD, change.flooding, detail):
                    self.metrics.inc("alarms_changed")
                    self._wake_sync()

    def _refuse_samples(self, prepared: Prepared) -> Prepared:
        """The batch without its samples, while the store cannot write: events go in first when it can."""
        if self.store_health.writable:
            return prepared
        kept = [acc for acc in prepared.accepted if acc.kind not in messages.SAMPLE_KINDS]
        if len(kept) == len(prepared.accepted):
            return prepared
        self.metrics.inc("samples_refused", len(prepared.accepted) - len(kept))
        return dataclasses.replace(prepared, accepted=kept)

    def _prepare(self, batch: list[Incoming]) -> Prepared:
        self.metrics.inc("messages_in", len(batch))
        return prepare(self.settings.school, self.settings.school_secret, [(i.topic, i.payload) for i in batch])

    async def _commit(self, batch: list[Incoming], prepared: Prepared,
                      answer: asyncio.Future[Any] | None = None) -> IngestResult:
        """A prepared batch's commit in the store worker, retried until it succeeds; nothing is acked before.

        `answer` is the first attempt's, when the batch has been sent already. A failed commit makes the
        worker refuse the commits sent after it until `resume`, so batches go in in their order."""
        attempt = 0
        try:
            while True:
                try:
                    began = time.monotonic()
                    if answer is None:
                        # Stripped once: samples refused are counted once, however often the batch goes in.
                        prepared = self._refuse_samples(prepared)
                    result: IngestResult = await (
                        answer if answer is not None else self.store.commit(prepared))
                    if answer is None:
                        self.metrics.observe("store_commit_seconds", time.monotonic() - began)
                    self.metrics.observe("write_batch_messages", len(batch))
                    return result
                except (StoreWorkerError, StoreUnwritable) as exc:
                    answer = None
                    attempt += 1
                    self._commit_retrying = True
                    self.metrics.inc("store_errors")
                    delay = backoff_delay(attempt - 1, STORE_RETRY_S, STORE_RETRY_MAX_S)
                    log.error("store commit failed (attempt %d), nothing acknowledged, retrying in %.1f s: %s",
                              attempt, delay, exc)
                    await asyncio.sleep(delay)
                    with contextlib.suppress(StoreWorkerError, StoreUnwritable):
                        await self.store.resume()
        finally:
            self._commit_retrying = False

    async def _committed(self, batch: list[Incoming], prepared: Prepared, result: IngestResult) -> None:
        """What follows a batch's commit: metrics, the broker's acks and the devices' eacks, sync, configs."""
        done = time.monotonic()
        self.metrics.observe_many("commit_latency_seconds", [done - i.received for i in batch])
        self.metrics.set("store_last_commit_timestamp_seconds", round(time.time(), 3))
        self.metrics.inc("messages_committed", result.new)
        self.metrics.inc("messages_duplicate", result.duplicate)
        if result.empty:
            self.metrics.inc("messages_empty", result.empty)
        if result.alarms_changed:
            self.metrics.inc("alarms_changed", result.alarms_changed)
        if result.samples_downsampled:
            self.metrics.inc("samples_downsampled", result.samples_downsampled)
        if result.samples_refused:
            self.metrics.inc("samples_refused", result.samples_refused)
        self.metrics.set("store_quota_used_ratio", round(result.store_usage, 4))
        for reason, count in result.rejected.items():
            self.metrics.inc("messages_rejected", count, label=reason)
        for topic, problem in result.rejected_examples:
            log.warning("rejected message on %s: %s", topic, problem)
        self.broker.ack(batch, self._event_acks(prepared.event_keys(result.unstored)))
        self._wake_sync()
        if self.downlink is not None:
            for device, config_version in result.births:
                try:
                    await self.downlink.device_online(device, config_version)
                except (StoreWorkerError, StoreUnwritable) as exc:
                    # The batch is in and acknowledged; what waited for the device goes at the next poll.
                    log.warning("commands for %s not relayed at its birth: %s", device, exc)

    async def _write_batch(self, batch: list[Incoming], prepared: Prepared | None = None) -> None:
        if prepared is None:
            prepared = self._prepare(batch)
        await self._committed(batch, prepared, await self._commit(batch, prepared))

    async def _ingest_local(self, raw: list[tuple[str, bytes]]) -> None:
        """Messages the gateway makes itself on behalf of a device (a serial-wired display)."""
        now = time.monotonic()
        await self._write_batch([Incoming(topic, payload, 0, 0, now) for topic, payload in raw])

    def _event_acks(self, by_device: dict[str, list[list[Any]]]) -> list[tuple[str, bytes]]:
        """The eack messages for committed events, as (topic, payload); sent at QoS 0 with the acks.

        A lost eack only makes the device send the event again, and the store drops the copy by its key.
        """
        out = []
        for device, keys in by_device.items():
            if device in self.displays:
                continue
            topic = topics.down(self.settings.school, device, topics.EVENT_ACK)
            for i in range(0, len(keys), EACK_KEYS_PER_MESSAGE):
                # Built from keys the store just validated; small enough for a device to decode in its heap.
                out.append((topic, orjson.dumps(messages.event_ack(keys[i:i + EACK_KEYS_PER_MESSAGE]))))
            self.metrics.inc("event_acks_sent", len(keys))
        return out

    def _wake_sync(self) -> None:
        for lane in (self.sync, self.priority_sync):
            if lane is not None:
                lane.wake.set()

    async def _preparer(self) -> None:
        # Validation runs here while the store worker commits the batch before: the two overlap.
        while True:
            batch = await self._inbox.take(WRITE_BATCH)
            await self._prepared.put((batch, self._refuse_samples(self._prepare(batch))))

    async def _writer(self) -> None:
        # Each prepared batch is sent to the store worker at once, up to COMMITS_AHEAD batches before the
        # oldest one's answer: the worker starts the next commit as soon as it has answered one, and the
        # acks of one batch go out while the next commits.
        queue = self._prepared
        sent: deque[tuple[list[Incoming], Prepared, asyncio.Future[Any], float]] = deque()
        taking: asyncio.Future[tuple[list[Incoming], Prepared]] | None = None
        answered = time.monotonic()
        try:
            while True:
                if taking is None and len(sent) < COMMITS_AHEAD:
                    taking = asyncio.ensure_future(queue.get())
                waits: list[asyncio.Future[Any]] = [] if taking is None else [taking]
                if sent:
                    waits.append(sent[0][2])
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if taking is not None and taking.done():
                    batch, prepared = taking.result()
                    taking = None
                    prepared = self._refuse_samples(prepared)
                    commit = self.store.commit(prepared, chained=bool(sent))
                    sent.append((batch, prepared, asyncio.ensure_future(commit), time.monotonic()))
                if sent and sent[0][2].done():
                    batch, prepared, answer, began = sent.popleft()
                    if answer.exception() is None:
                        # The worker's time on this batch: from when it could start it to its answer.
                        now = time.monotonic()
                        self.metrics.observe("store_commit_seconds", now - max(began, answered))
                        self.metrics.observe("write_batch_messages", len(batch))
                        answered = now
                        await self._committed(batch, prepared, answer.result())
                        continue
                    # The batch failed, and so did every one sent after it (the worker refuses those, or
                    # died): all of them go in again, in their order, before anything new is sent.
                    again = [(batch, prepared, answer), *((b, p, a) for b, p, a, _ in sent)]
                    sent.clear()
                    for batch, prepared, answer in again:
                        await self._committed(batch, prepared, await self._commit(batch, prepared, answer))
        finally:
            for future in [taking, *(answer for _, _, answer, _ in sent)]:
                if future is not None:
                    future.cancel()

    async def _presence(self) -> None:
        while True:
            await asyncio.sleep(self.settings.presence_check_s)
            gone = await self.store.mark_missing(self.settings.missed_health_periods)
            for device in gone:
                log.warning("device %s missed %d health periods: offline",
                            device, self.settings.missed_health_periods)
            if gone:
                self._wake_sync()

    async def _rules(self) -> None:
        while True:
            await asyncio.sleep(self.settings.rules.evaluate_every_s)
            changed = await self.store.evaluate_rules()
            if changed:
                self.metrics.inc("alarms_changed", changed)
                self._wake_sync()

    async def _retention(self) -> None:
        while True:
            deleted = await self.store.prune()
            if deleted:
                self.metrics.inc("records_pruned", deleted)
            # A full chunk means more may be waiting; otherwise there is no hurry.
            await asyncio.sleep(0.5 if deleted >= PRUNE_CHUNK else PRUNE_EVERY_S)

    async def _store_watch(self) -> None:
        # A store that cannot write is tried again by the writer's commits while there is traffic; when
        # there is none, by a small write, so that the alarm clears by itself once there is room.
        while True:
            await asyncio.sleep(STORE_PROBE_S)
            if not self.store_health.writable and not self._commit_retrying:
                with contextlib.suppress(StoreUnwritable, StoreWorkerError):
                    await self.store.probe_write()

    async def _gauges(self) -> None:
        devices_at = 0.0
        while True:
            count, age = await self.store.backlog()
            # After the request: a worker that died since the last one has just been replaced.
            self.metrics.set("store_worker_restarts", self.store.restarts)
            self.metrics.set("backlog_records", count)
            self.metrics.set("backlog_age_seconds", round(age, 3))
            self.metrics.set("broker_connected", 1 if self.broker.connected.is_set() else 0)
            reads, read_bytes = self.broker.reads()
            self.metrics.set("broker_reads", reads)
            self.metrics.set("broker_read_bytes", read_bytes)
            if time.monotonic() >= devices_at:
                devices_at = time.monotonic() + DEVICE_GAUGES_EVERY_S
                devices = await self.store.devices()
                self.metrics.set("devices_known", len(devices))
                self.metrics.set("devices_online", sum(1 for d in devices if d["presence"] == "online"))
            await asyncio.sleep(1.0)

    async def status(self) -> GatewayStatus:
        """The gateway's state now, for the status page and `classops gateway status`."""
        # The page must answer while the store does not: that is when the admin needs it most.
        devices: list[dict[str, Any]] = []
        count, age, store_error = 0, 0.0, ""
        try:
            async with asyncio.timeout(STORE_ANSWER_S):
                devices = await self.store.devices()
                count, age = await self.store.backlog()
        except (StoreUnwritable, StoreWorkerError) as exc:
            devices, store_error = [], str(exc)
        except TimeoutError:
            # A store worker being replaced (after a backoff) would hold the page for seconds.
            devices, store_error = [], f"the store did not answer within {STORE_ANSWER_S:.0f} s"
        sync = self.sync
        return GatewayStatus(
            school=self.settings.school,
            store={**self.store_health.snapshot(), "error": store_error},
            gateway_id=sync.gateway_id if sync else None,
            broker_connected=self.broker.connected.is_set(),
            cloud_last_ok_s_ago=(
                round(time.monotonic() - sync.last_ok, 1) if sync and sync.last_ok is not None else None),
            backlog_records=count,
            backlog_age_s=round(age, 1),
            devices=devices,
            metrics=self.metrics.snapshot(),
        )

    async def _status_server(self) -> None:
        import uvicorn

        from gateway.status import create_status_app

        class StatusServer(uvicorn.Server):
            def capture_signals(self) -> Any:
                # The gateway owns the process's signals; the status server must not take them over.
                return contextlib.nullcontext()

        host, port = self.settings.status.host, self.settings.status.port
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            # The status page is a convenience; the gateway's real work goes on without it.
            sock.close()
            log.error("status page cannot listen on %s:%s (%s); running without it", host, port, exc)
            self.metrics.inc("status_server_failures")
            return
        self.status_port = sock.getsockname()[1]
        app = create_status_app(self.settings.school, self.status, self.metrics.render_prometheus)
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
        self._status = StatusServer(config)
        log.info("status page on http://%s:%s/", host, self.status_port)
        await self._status.serve(sockets=[sock])

    def request_stop(self) -> None:
        """Ask a running gateway to stop."""
        self._stopping.set()

    async def run(self) -> None:
        """Run until request_stop() or a signal."""
        self._loop = asyncio.get_running_loop()
        self._inbox.bind(self._loop)
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._loop.add_signal_handler(sig, self.request_stop)
            except (NotImplementedError, RuntimeError):
                pass
        try:
            await self.store.start()
        except StoreUnwritable as exc:
            # The gateway runs on without a store: it says so, acknowledges nothing, and the next request
            # opens the store once it can.
            self.store_health.failed(str(exc))
        except StoreWorkerError as exc:
            log.error("the store could not be opened; trying again with each request: %s", exc)
        self.sync = CloudSync(self.settings, self.store, self.metrics, lane="bulk")
        self.priority_sync = CloudSync(self.settings, self.store, self.metrics, lane="priority",
                                       held=self.store_health)
        self.downlink = DownlinkRelay(self.settings, self.store, self.broker, self.metrics, displays=self.displays)
        log.info("gateway for school %s starting; store %s", self.settings.school, self.settings.db_path)
        tune_gc()
        self.broker.start()
        started = time.monotonic()
        try:
            async with asyncio.TaskGroup() as tasks:
                # Each task is run again after it fails (see supervise.py): only a ConfigError ends the
                # TaskGroup, and the process, before a stop is asked.
                def start(run: Any, name: str) -> asyncio.Task[None]:
                    return tasks.create_task(supervised(name, run, self.metrics), name=name)

                workers = [
                    start(self._preparer, "store-preparer"),
                    start(self._writer, "store-writer"),
                    start(self._store_watch, "store-watch"),
                    start(self.sync.run, "cloud-sync"),
                    start(self.priority_sync.run, "cloud-sync-priority"),
                    start(self.downlink.run, "downlink"),
                    start(self._presence, "presence"),
                    start(self._gauges, "gauges"),
                    start(self._retention, "retention"),
                    start(self._rules, "edge-rules"),
                    start(self._flood_alarms, "flood-alarms"),
                ]
                for device, display in self.displays.items():
                    workers.append(start(display.run, f"display-{device}"))
                if self.settings.status.enabled:
                    workers.append(start(self._status_server, "status-server"))
                await self._stopping.wait()
                if self._status is not None:
                    self._status.should_exit = True
                for task in workers:
                    if task.get_name() != "status-server":
                        task.cancel()
        finally:
            self.broker.stop()
            await self.sync.aclose()
            await self.priority_sync.aclose()
            await self.downlink.aclose()
            self.store.close()
            log.info("gateway stopped after %.0fs", time.monotonic() - started)
