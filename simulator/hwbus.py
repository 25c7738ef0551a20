"""The hardware bus: virtual hardware for firmware on the MicroPython unix port, driven from CPython.

Each device's host hardware layer connects over TCP, sends `hello <device_id>` and then takes line
commands, answering each with `<result> <verb> <arg> [reason]`, result `ok`, `ignored` or `error`:

    tap <uid-hex>                 a card is held to the reader. `ok tap <uid>` once the event is in the
                                  device's flash ring buffer, `ignored tap <uid> <reason>` (debounce,
                                  full, bad_uid, no_reader)
    sensor <name> <value>         what the named sensor measures from now on (sht4x: "temp_c,rh_pct";
                                  scd4x: ppm; pms5003: ug/m3 of PM2.5; bh1750: lux; mic: dBA)
    sensor_fault <name> <kind>    the sensor starts failing: no_answer, crc, stuck; `none` heals it
    reader_fault <kind>           the card reader: no_answer, or none
    power_sense <0|1>             the blackboard's power-sense input (current sensor on the display)
    wifi <0|1>                    Wi-Fi drops (0: the link goes down and cannot come back) or returns

and sends, unasked, `out <name> <value>` when an output changes:

    out relay <0|1>               the blackboard controller's relay (the display's mains)
    out feedback <ok|dup|error>   the attendance terminal's LED and buzzer after a tap

Sensor, fault, power-sense and Wi-Fi settings are remembered per device and sent again whenever the
device connects, as real hardware keeps its state across the firmware's reboots.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Self

log = logging.getLogger(__name__)

ACCEPT_POLL_S = 0.2
HELLO_TIMEOUT_S = 5.0


class HardwareBusError(TimeoutError):
    """A tap that could not be delivered or was not answered in time."""


# Settings that real hardware keeps while the firmware reboots; replayed to a device on connect.
STICKY_VERBS = ("sensor", "sensor_fault", "reader_fault", "power_sense", "wifi")
SENSOR_FAULTS = ("none", "no_answer", "crc", "stuck")


class _Waiter:
    __slots__ = ("verb", "uid", "answer", "detail", "done")

    def __init__(self, verb: str, uid: str) -> None:
        self.verb = verb
        self.uid = uid
        self.answer: str | None = None
        self.detail = ""
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

    `taps` is the ledger of every answered tap: (device_id, uid, result, unix time); `outs` the ledger
    of every output change the devices reported: (device_id, name, value, unix time). `on_output`, if
    set, is called as on_output(device_id, name, value) from the link's thread, e.g. to feed a virtual
    display's mains from the controller's relay.
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
        self.outs: list[tuple[str, str, str, float]] = []
        self.on_output: Callable[[str, str, str], None] | None = None
        self._outputs: dict[str, dict[str, str]] = {}
        self._sticky: dict[str, dict[tuple[str, str], str]] = {}

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
        return self.command(device_id, "tap", uid, timeout=timeout)

    def command(self, device_id: str, verb: str, arg: str, *rest: str, timeout: float = 10.0) -> str:
        """Send one bus command line and wait for its answer: "ok", "ignored" or "error"."""
        line = " ".join((verb, arg, *rest))
        if verb in STICKY_VERBS:
            with self._cond:
                self._sticky.setdefault(device_id, {})[(verb, arg if verb.startswith("sensor") else "")] = line
        with self._cond:
            link = self._links.get(device_id)
        if link is None:
            raise HardwareBusError(f"device {device_id} is not connected to the hardware bus")
        waiter = _Waiter(verb, arg)
        with link.wait_lock:
            link.waiting.append(waiter)
        try:
            link.send(line)
        except OSError as exc:
            self._forget(link, waiter)
            raise HardwareBusError(f"device {device_id}: {verb} not delivered ({exc})") from exc
        if not waiter.done.wait(timeout):
            self._forget(link, waiter)
            raise HardwareBusError(f"device {device_id} did not answer {verb} {arg} within {timeout} s")
        if waiter.answer is None:
            raise HardwareBusError(f"device {device_id} went away before answering {verb} {arg}")
        if waiter.answer == "error":
            raise HardwareBusError(f"device {device_id} refused {line!r}: {waiter.detail}")
        return waiter.answer

    def set_sensor(self, device_id: str, name: str, value: float | str, timeout: float = 10.0) -> None:
        """Set what sensor `name` (sht4x, scd4x, pms5003, bh1750, mic) measures from now on."""
        self.command(device_id, "sensor", name, str(value), timeout=timeout)

    def sensor_fault(self, device_id: str, name: str, kind: str, timeout: float = 10.0) -> None:
        """Make sensor `name` fail: no_answer, crc or stuck; `none` heals it."""
        if kind not in SENSOR_FAULTS:
            raise ValueError(f"unknown sensor fault {kind!r}; known: {', '.join(SENSOR_FAULTS)}")
        self.command(device_id, "sensor_fault", name, kind, timeout=timeout)

    def reader_fault(self, device_id: str, kind: str, timeout: float = 10.0) -> None:
        """Make the card reader stop answering (no_answer), or heal it (none)."""
        self.command(device_id, "reader_fault", kind, timeout=timeout)

    def set_power_sense(self, device_id: str, on: bool, timeout: float = 10.0) -> None:
        """Set the blackboard controller's power-sense input."""
        self.command(device_id, "power_sense", "1" if on else "0", timeout=timeout)

    def set_wifi(self, device_id: str, up: bool, timeout: float = 10.0) -> None:
        """Drop (False) or restore (True) the device's Wi-Fi."""
        self.command(device_id, "wifi", "1" if up else "0", timeout=timeout)

    def output(self, device_id: str, name: str) -> str | None:
        """Latest value the device reported for output `name`, or None."""
        with self._cond:
            return self._outputs.get(device_id, {}).get(name)

    def wait_output(self, device_id: str, name: str, value: str, timeout: float) -> bool:
        """Wait until the device reports output `name` at `value`; False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._outputs.get(device_id, {}).get(name) == value, timeout)

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
        with self._cond:
            replay = list(self._sticky.get(link.device_id, {}).values())
        try:
            for line in replay:
                link.send(line)
        except OSError:
            pass
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
        if len(words) == 3 and words[0] == "out":
            self._output(link.device_id, words[1], words[2])
            return
        if len(words) < 3 or words[0] not in ("ok", "ignored", "error"):
            log.warning("hardware bus: %s sent %r", link.device_id, " ".join(words))
            return
        result, verb, arg = words[0], words[1], words[2]
        with link.wait_lock:
            # A device answers its commands in order; the first waiter for this one is the one answered.
            waiter = next((w for w in link.waiting if w.verb == verb and w.uid == arg), None)
            if waiter is not None:
                link.waiting.remove(waiter)
        if waiter is None:
            return
        if verb == "tap":
            with self._cond:
                self.taps.append((link.device_id, arg, result, time.time()))
        waiter.detail = " ".join(words[3:])
        waiter.answer = result
        waiter.done.set()

    def _output(self, device_id: str, name: str, value: str) -> None:
        with self._cond:
            self._outputs.setdefault(device_id, {})[name] = value
            self.outs.append((device_id, name, value, time.time()))
            self._cond.notify_all()
        callback = self.on_output
        if callback is not None:
            try:
                callback(device_id, name, value)
            except Exception:
                log.exception("hardware bus: on_output callback failed")

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
