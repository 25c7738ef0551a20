"""Each school's internet link to the cloud, as a TCP relay on 127.0.0.1 that the simulator can cut.

A school's gateway reaches the cloud only through its link, so cutting the link is a school's internet
outage seen from both ends exactly as in the field: the gateway's requests fail while the cloud and every
other school carry on. All links share one asyncio loop on one thread, so hundreds of schools cost one
thread, not hundreds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)

CHUNK = 65536


class SchoolLink:
    """One school's link: listens on `port` and relays to the cloud while it is up."""

    def __init__(self, hub: LinkHub, school: str, target: tuple[str, int]) -> None:
        self.hub = hub
        self.school = school
        self.target = target
        self.port = 0
        self.up = True
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def _open(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(OSError):
                writer.close()

    async def _cut(self) -> None:
        self.up = False
        for writer in list(self._writers):
            # An abort (RST), as when the line goes dead, rather than a polite close.
            writer.transport.abort()
        self._writers.clear()

    def cut(self) -> None:
        """The school loses its internet: open connections die, new ones are refused."""
        self.hub.call(self._cut())

    def restore(self) -> None:
        """The school's internet is back."""
        self.up = True

    async def _close(self) -> None:
        await self._cut()
        if self._server is not None:
            self._server.close()


class LinkHub:
    """The event loop thread that runs every school's link."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="school-links", daemon=True)
        self._links: list[SchoolLink] = []

    def start(self) -> None:
        """Start the loop thread."""
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        """Run a coroutine on the links' loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def add(self, school: str, target: tuple[str, int]) -> SchoolLink:
        """A new link for `school` relaying to `target`; its `port` is where the gateway connects."""
        link = SchoolLink(self, school, target)
        self.call(link._open())
        self._links.append(link)
        return link

    def stop(self) -> None:
        """Close every link and stop the loop."""
        if not self._thread.is_alive():
            return

        async def close_all() -> None:
            for link in self._links:
                await link._close()

        with contextlib.suppress(Exception):
            self.call(close_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
