"""The gateway process: broker link, store writer, cloud sync and presence, one task per concern."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson

from gateway.broker import BrokerLink, Incoming
from gateway.config import GatewaySettings
from gateway.metrics import Metrics
from gateway.privacy import card_pseudonym
from gateway.store import Accepted, Rejected, Store
from gateway.sync import CloudSync
from protocol import messages, topics

log = logging.getLogger(__name__)

WRITE_BATCH = 2000
STORE_RETRY_S = 1.0
EACK_KEYS_PER_MESSAGE = 100

T = TypeVar("T")


@functools.lru_cache(maxsize=65536)
def _parse_topic(topic: str) -> tuple[str, str, str, str]:
    # A school's devices publish on a few hundred topics all day; parse each once.
    return topics.parse(topic)  # type: ignore[no-any-return]


class Inbox:
    """Hands messages from the broker's network thread to the store writer.

    The broker thread only appends; it wakes the event loop once, when the writer is waiting, instead of
    once per message: under load the writer finds a whole batch waiting each time it looks.
    """

    def __init__(self) -> None:
        self._items: deque[Incoming] = deque()
        self._lock = threading.Lock()
        self._waiting = False
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to the event loop the writer runs on."""
        self._loop = loop

    def put(self, item: Incoming) -> None:
        """Add a message; called from the broker's thread."""
        self._items.append(item)
        if self._waiting:
            with self._lock:
                if self._waiting and self._loop is not None:
                    self._waiting = False
                    self._loop.call_soon_threadsafe(self._event.set)

    def __len__(self) -> int:
        return len(self._items)

    async def take(self, limit: int) -> list[Incoming]:
        """Wait for at least one message and return up to `limit` of them, oldest first."""
        while True:
            if self._items:
                items = self._items
                return [items.popleft() for _ in range(min(limit, len(items)))]
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
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self.store = Store(settings.db_path)
        self._inbox = Inbox()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.broker = BrokerLink(settings, self._inbox.put, self.metrics)
        self.sync: CloudSync | None = None
        self._stopping = asyncio.Event()
        self._status: Any = None
        self.status_port: int | None = None

    async def in_store(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store call on the store's own thread, off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    def prepare(self, incoming: Incoming) -> Accepted:
        """Validate a delivered message and make it storable; raise ProtocolError if it is bad."""
        school, _device, msg = messages.decode_uplink(incoming.topic, incoming.payload, orjson.loads,
                                                      _parse_topic)
        if school != self.settings.school:
            raise messages.ProtocolError(messages.BAD_TOPIC, f"message for school {school}")
        if msg["kind"] == messages.ATTENDANCE:
            msg["card"] = card_pseudonym(self.settings.school_secret, msg["card"])
        return Accepted.from_message(msg)

    async def _write_batch(self, batch: list[Incoming]) -> None:
        accepted: list[Accepted] = []
        rejected: list[Rejected] = []
        for incoming in batch:
            if not incoming.payload:
                # An empty retained message is how an admin clears a topic; it carries no data.
                self.metrics.inc("messages_empty")
                continue
            try:
                accepted.append(self.prepare(incoming))
            except messages.ProtocolError as exc:
                self.metrics.inc("messages_rejected", label=exc.reason)
                rejected.append(Rejected(incoming.topic, exc.reason, exc.detail, incoming.payload))
                log.warning("rejected message on %s: %s", incoming.topic, exc)
        attempt = 0
        while True:
            try:
                began = time.monotonic()
                result = await self.in_store(self.store.commit, accepted, rejected)
                self.metrics.observe("store_commit_seconds", time.monotonic() - began)
                self.metrics.observe("write_batch_messages", len(batch))
                break
            except Exception:
                attempt += 1
                self.metrics.inc("store_errors")
                log.exception("store commit failed (attempt %d); nothing acknowledged, retrying", attempt)
                await asyncio.sleep(STORE_RETRY_S)
        done = time.monotonic()
        self.metrics.observe_many("commit_latency_seconds", [done - i.received for i in batch])
        self.metrics.inc("messages_committed", sum(result.inserted))
        self.metrics.inc("messages_duplicate", len(result.inserted) - sum(result.inserted))
        for incoming in batch:
            self.broker.ack(incoming.mid, incoming.qos)
        self._send_event_acks(accepted)
        if self.sync is not None:
            self.sync.wake.set()

    def _send_event_acks(self, accepted: list[Accepted]) -> None:
        by_device: dict[str, list[list[Any]]] = {}
        for acc in accepted:
            if messages.is_event(acc.kind):
                by_device.setdefault(acc.device, []).append([acc.boot, acc.seq])
        for device, keys in by_device.items():
            topic = topics.down(self.settings.school, device, topics.EVENT_ACK)
            for i in range(0, len(keys), EACK_KEYS_PER_MESSAGE):
                # Built from keys the store just validated; no need to check them again.
                payload = orjson.dumps(messages.event_ack(keys[i:i + EACK_KEYS_PER_MESSAGE]))
                # QoS 0: a lost ack only makes the device send the event again, and the store drops
                # the copy by its key.
                self.broker.publish(topic, payload, qos=0)
            self.metrics.inc("event_acks_sent", len(keys))

    async def _writer(self) -> None:
        while True:
            await self._write_batch(await self._inbox.take(WRITE_BATCH))

    async def _presence(self) -> None:
        while True:
            await asyncio.sleep(self.settings.presence_check_s)
            gone = await self.in_store(self.store.mark_missing, self.settings.missed_health_periods)
            for device in gone:
                log.warning("device %s missed %d health periods: offline",
                            device, self.settings.missed_health_periods)
            if gone and self.sync is not None:
                self.sync.wake.set()

    async def _gauges(self) -> None:
        while True:
            count, age = await self.in_store(self.store.backlog)
            self.metrics.set("backlog_records", count)
            self.metrics.set("backlog_age_seconds", round(age, 3))
            self.metrics.set("broker_connected", 1 if self.broker.connected.is_set() else 0)
            devices = await self.in_store(self.store.devices)
            self.metrics.set("devices_known", len(devices))
            self.metrics.set("devices_online", sum(1 for d in devices if d["presence"] == "online"))
            await asyncio.sleep(1.0)

    async def _status_server(self) -> None:
        import uvicorn

        from gateway.status import create_status_app

        class StatusServer(uvicorn.Server):
            def capture_signals(self) -> contextlib.AbstractContextManager[None]:
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
        config = uvicorn.Config(create_status_app(self), log_config=None, access_log=False, lifespan="off")
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
        self.sync = CloudSync(self.settings, self.store, self.in_store, self.metrics)
        log.info("gateway for school %s starting; store %s", self.settings.school, self.settings.db_path)
        self.broker.start()
        started = time.monotonic()
        try:
            async with asyncio.TaskGroup() as tasks:
                workers = [
                    tasks.create_task(self._writer(), name="store-writer"),
                    tasks.create_task(self.sync.run(), name="cloud-sync"),
                    tasks.create_task(self._presence(), name="presence"),
                    tasks.create_task(self._gauges(), name="gauges"),
                ]
                if self.settings.status.enabled:
                    workers.append(tasks.create_task(self._status_server(), name="status-server"))
                await self._stopping.wait()
                if self._status is not None:
                    self._status.should_exit = True
                for task in workers:
                    if task.get_name() != "status-server":
                        task.cancel()
        finally:
            self.broker.stop()
            await self.sync.aclose()
            self._executor.shutdown(wait=True)
            self.store.close()
            log.info("gateway stopped after %.0fs", time.monotonic() - started)
