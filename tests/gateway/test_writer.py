"""The gateway's writer: batches are sent to the store worker ahead of the last one's answer, and yet
committed in the order they were delivered, also when the worker dies with several of them unanswered."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from gateway.app import COMMITS_AHEAD, Gateway
from gateway.broker import Incoming
from protocol import messages
from tests.gateway.test_ingest import raw, settings

DEADLINE_S = 60.0


async def _until(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def _batch(seqs: range) -> list[Incoming]:
    now = time.monotonic()
    out = []
    for seq in seqs:
        topic, payload = raw(messages.BIRTH if seq == 0 else messages.ATTENDANCE, seq)
        out.append(Incoming(topic, payload, 1, seq + 1, now))
    return out


def test_batches_unanswered_when_the_worker_dies_go_in_again_in_their_order(tmp_path: Path) -> None:
    async def run() -> list[int]:
        gateway = Gateway(settings(tmp_path))
        await gateway.store.start()
        writer = asyncio.create_task(gateway._writer())
        try:
            # Stopped, the worker reads nothing: the first batches stay unanswered until it is killed.
            os.kill(gateway.store.worker._process.pid, signal.SIGSTOP)
            batches = [_batch(range(0, 5)), _batch(range(5, 10)), _batch(range(10, 15))]
            for batch in batches:
                await gateway._prepared.put((batch, gateway._prepare(batch)))
            link = gateway.store.worker._link
            await _until(lambda: len(link.waiting) == COMMITS_AHEAD, "the first batches to be sent")
            os.kill(gateway.store.worker._process.pid, signal.SIGKILL)
            await _until(lambda: gateway.metrics.get("messages_committed") == 15, "every batch to be committed")
            assert gateway.metrics.get("store_errors") >= 1
            pending = await gateway.store.pending(100)
            return [record["seq"] for record in pending]
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            gateway.store.close()

    assert asyncio.run(run()) == list(range(15))
