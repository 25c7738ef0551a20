"""The hardware bus: virtual hardware for firmware on the MicroPython unix port, driven from CPython.

Each device's host hardware layer connects over TCP, sends `hello <device_id>` and then takes line
commands; today `tap <uid>`, answered with `ok tap <uid>` once the event is in the device's flash ring
buffer, or `ignored tap <uid> <reason>` (debounce, full, bad_uid).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from typing import Self

log = logging.getLogger(__name__)

ACCEPT_POLL_S = 0.2
HELLO_TIMEOUT_S = 5.0


class HardwareBusError(TimeoutError):
    """A tap that could not be delivered or was not answered in time."""


class _Waiter:
    __slots__ = ("uid", "answer", "done")

    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.answer: str | None = None
        self.done = threading.Event()


class _Link:
    """One device's connection: the socket, a send lock and the taps waiting for their answers."""

    def __init__(self, device_id: str, sock: socket.socket) -> None:
        self.device_id = device_id
        self.sock = sock
        self.send_lock = threading.Lock()
        self.wait_lock = threading.Lock()
        self.waiting: deque[_Waiter] = deque()
        self.closed = False

    def send(self, line: str) -> None:
        with self.send_lock:
            self.sock.sendall(line.encode() + b"\n")


class HardwareBus:
    """Threaded TCP server on 127.0.0.1 that the virtual devices' hardware layers connect to.

    `taps` is the ledger of every answered tap: (device_id, uid, result, unix time).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._bind = (host, port)
        self._server: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._cond = threading.Condition()
        self._links: dict[str, _Link] = {}
        self._threads: list[threading.Thread] = []
        self.taps: list[tuple[str, str, str, float]] = []

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the bus listens on; valid after start()."""
        if self._server is None:
            raise HardwareBusError("hardware bus is not started")
        host, port = self._server.getsockname()[:2]
        return host, port

    def start(self) -> None:
        """Listen and accept device connections in a background thread."""
        if self._server is not None:
            return
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(self._bind)
        server.listen(128)
        server.settimeout(ACCEPT_POLL_S)
        self._server = server
        self._stopping.clear()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="hwbus-accept", daemon=True)
        self._accept_thread.start()

    def stop(self) -> None:
        """Close the server and every device link; waiting taps fail."""
        self._stopping.set()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
            self._accept_thread = None
        if self._server is not None:
            self._server.close()
            self._server = None
        with self._cond:
            links = list(self._links.values())
            self._links.clear()
            self._cond.notify_all()
        for link in links:
            self._close_link(link)
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def connected(self) -> list[str]:
        """Ids of the devices whose hardware is connected now."""
        with self._cond:
            return sorted(self._links)

    def is_connected(self, device_id: str) -> bool:
        """True while the device's hardware layer is connected."""
        with self._cond:
            return device_id in self._links

    def wait_connected(self, device_id: str, timeout: float) -> bool:
        """Wait until the device's hardware layer is connected; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: device_id in self._links, timeout)

    def disconnect(self, device_id: str) -> None:
        """Drop a device's link, as a loose cable would; its hardware layer reconnects by itself."""
        with self._cond:
            link = self._links.pop(device_id, None)
            self._cond.notify_all()
        if link is not None:
            self._close_link(link)

    def tap(self, device_id: str, uid: str, timeout: float = 10.0) -> str:
        """Tap card `uid` on the device's reader; return "ok" or "ignored" once the device answers."""
        with self._cond:
            link = self._links.get(device_id)
        if link is None:
            raise HardwareBusError(f"device {device_id} is not connected to the hardware bus")
        waiter = _Waiter(uid)
        with link.wait_lock:
            link.waiting.append(waiter)
        try:
            link.send(f"tap {uid}")
        except OSError as exc:
            self._forget(link, waiter)
            raise HardwareBusError(f"device {device_id}: tap not delivered ({exc})") from exc
        if not waiter.done.wait(timeout):
            self._forget(link, waiter)
            raise HardwareBusError(f"device {device_id} did not answer tap {uid} within {timeout} s")
        if waiter.answer is None:
            raise HardwareBusError(f"device {device_id} went away before answering tap {uid}")
        return waiter.answer

    def _forget(self, link: _Link, waiter: _Waiter) -> None:
        with link.wait_lock:
            try:
                link.waiting.remove(waiter)
            except ValueError:
                pass

    def _accept_loop(self) -> None:
        server = self._server
        assert server is not None
        while not self._stopping.is_set():
            try:
                sock, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(sock,), name="hwbus-link", daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(HELLO_TIMEOUT_S)
        reader = sock.makefile("rb")
        try:
            hello = reader.readline().decode(errors="replace").split()
        except OSError:
            hello = []
        if len(hello) != 2 or hello[0] != "hello":
            log.warning("hardware bus: connection without hello, closed")
            reader.close()
            sock.close()
            return
        sock.settimeout(None)
        link = _Link(hello[1], sock)
        with self._cond:
            old = self._links.get(link.device_id)
            self._links[link.device_id] = link
            self._cond.notify_all()
        if old is not None:
            self._close_link(old)
        try:
            for raw in reader:
                self._answer(link, raw.decode(errors="replace").split())
        except OSError:
            pass
        finally:
            reader.close()
            with self._cond:
                if self._links.get(link.device_id) is link:
                    del self._links[link.device_id]
                    self._cond.notify_all()
            self._close_link(link)

    def _answer(self, link: _Link, words: list[str]) -> None:
        if len(words) < 3 or words[1] != "tap" or words[0] not in ("ok", "ignored"):
            log.warning("hardware bus: %s sent %r", link.device_id, " ".join(words))
            return
        result, uid = words[0], words[2]
        with link.wait_lock:
            # A device answers its taps in order; the first waiter for this uid is the one answered.
            waiter = next((w for w in link.waiting if w.uid == uid), None)
            if waiter is not None:
                link.waiting.remove(waiter)
        if waiter is None:
            return
        with self._cond:
            self.taps.append((link.device_id, uid, result, time.time()))
        waiter.answer = result
        waiter.done.set()

    def _close_link(self, link: _Link) -> None:
        if link.closed:
            return
        link.closed = True
        try:
            link.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        link.sock.close()
        with link.wait_lock:
            waiting = list(link.waiting)
            link.waiting.clear()
        for waiter in waiting:
            waiter.done.set()
