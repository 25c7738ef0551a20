"""A virtual smart display on a pseudo-terminal, speaking protocol/display.py.

The controlling side opens `display.port` (the pty's slave path) as its serial port: the firmware's
host hardware layer opens it as a file, the gateway's pyserial connector with `serial.Serial(port)`.
The display answers on the master side from a background thread.

State: mains (the controller's relay feeds it), power, input source, hours on. Without mains the display
is dark and silent. Faults, switched on and off at run time:

    no_answer      the display reads requests and answers nothing (a dead control board or cable)
    no_power_on    POWER_SET on is answered REFUSED and the display stays in standby
"""

from __future__ import annotations

import logging
import os
import pty
import select
import threading
import time
import tty
from collections.abc import Callable
from typing import Self

from protocol import display as proto

log = logging.getLogger(__name__)

POLL_S = 0.1
FAULTS = ("no_answer", "no_power_on")


class VirtualDisplay:
    """One smart display. `on_change(display)` is called (from its thread) after every state change."""

    def __init__(self, *, addr: int = proto.DEFAULT_ADDR, mains: bool = True, power: bool = False,
                 source: str = "hdmi1", hours_on: float = 0.0,
                 on_change: Callable[[VirtualDisplay], None] | None = None) -> None:
        proto.source_code(source)
        self.addr = addr
        self.source = source
        self.on_change = on_change
        self.faults: set[str] = set()
        self.requests: list[tuple[int, bytes]] = []
        self._mains = mains
        self._power = power and mains
        self._hours_s = hours_on * 3600.0
        self._on_since = time.monotonic() if self._power else None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._master: int | None = None
        self._slave: int | None = None
        self._thread: threading.Thread | None = None
        self.port = ""

    def start(self) -> None:
        """Open the pty and serve requests in a background thread."""
        if self._thread is not None:
            return
        master, slave = pty.openpty()
        # Raw mode on the line discipline: no echo, no line buffering, no CR/LF translation. The slave
        # end stays open here so that the pty survives the controller closing and reopening it.
        tty.setraw(slave)
        self._master, self._slave = master, slave
        self.port = os.ttyname(slave)
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name=f"display-{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the pty."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def power(self) -> bool:
        """True while the panel is on."""
        with self._lock:
            return self._power

    @property
    def mains(self) -> bool:
        """True while the display has mains power (the controller's relay is closed)."""
        with self._lock:
            return self._mains

    @property
    def hours_on(self) -> float:
        """Hours the panel has been on, the running stretch included."""
        with self._lock:
            return self._hours_locked() / 3600.0

    def _hours_locked(self) -> float:
        total = self._hours_s
        if self._on_since is not None:
            total += time.monotonic() - self._on_since
        return total

    def _set_power_locked(self, on: bool) -> bool:
        if on == self._power:
            return False
        now = time.monotonic()
        if on:
            self._on_since = now
        elif self._on_since is not None:
            self._hours_s += now - self._on_since
            self._on_since = None
        self._power = on
        return True

    def set_mains(self, on: bool) -> None:
        """Feed or cut mains power; cutting it turns the panel off."""
        with self._lock:
            changed = on != self._mains
            self._mains = on
            if not on:
                changed = self._set_power_locked(False) or changed
        if changed:
            self._changed()

    def press_power(self, on: bool) -> None:
        """Someone used the panel's own power button (or its remote)."""
        with self._lock:
            changed = self._mains and self._set_power_locked(on)
        if changed:
            self._changed()

    def inject(self, fault: str) -> None:
        """Switch a fault on (one of FAULTS)."""
        if fault not in FAULTS:
            raise ValueError(f"unknown display fault {fault!r}; known: {', '.join(FAULTS)}")
        self.faults.add(fault)

    def heal(self, fault: str | None = None) -> None:
        """Switch one fault off, or all of them."""
        if fault is None:
            self.faults.clear()
        else:
            self.faults.discard(fault)

    def wait(self, condition: Callable[[VirtualDisplay], bool], timeout: float) -> bool:
        """Poll until `condition(self)` holds; False on timeout."""
        deadline = time.monotonic() + timeout
        while not condition(self):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change(self)
            except Exception:
                log.exception("display on_change callback failed")

    def _serve(self) -> None:
        parser = proto.Parser()
        master = self._master
        assert master is not None
        while not self._stop.is_set():
            ready, _, _ = select.select([master], [], [], POLL_S)
            if not ready:
                continue
            try:
                data = os.read(master, 256)
            except OSError:
                # EIO while no process holds the slave open besides us is not an error: wait.
                time.sleep(POLL_S)
                continue
            for addr, cmd, payload in parser.feed(data):
                answer = self._handle(addr, cmd, payload)
                if answer is not None:
                    os.write(master, answer)

    def _handle(self, addr: int, cmd: int, data: bytes) -> bytes | None:
        with self._lock:
            self.requests.append((cmd, data))
            if not self._mains or "no_answer" in self.faults:
                return None
        if addr not in (self.addr, proto.BROADCAST):
            return None
        changed = False
        with self._lock:
            if cmd == proto.POWER_SET and len(data) == 1 and data[0] in (0, 1):
                if data[0] == 1 and "no_power_on" in self.faults:
                    return proto.reply(self.addr, cmd, proto.REFUSED)
                changed = self._set_power_locked(data[0] == 1)
                answer = proto.reply(self.addr, cmd)
            elif cmd == proto.POWER_GET and not data:
                answer = proto.reply(self.addr, cmd, proto.ACK, b"\x01" if self._power else b"\x00")
            elif cmd == proto.INPUT_SET and len(data) == 1 and proto.source_name(data[0]):
                changed = self.source != proto.source_name(data[0])
                self.source = proto.source_name(data[0]) or self.source
                answer = proto.reply(self.addr, cmd)
            elif cmd == proto.INPUT_GET and not data:
                answer = proto.reply(self.addr, cmd, proto.ACK, bytes((proto.source_code(self.source),)))
            elif cmd == proto.HOURS_GET and not data:
                answer = proto.reply(self.addr, cmd, proto.ACK,
                                     proto.encode_hours(self._hours_locked() / 3600.0))
            else:
                answer = proto.reply(self.addr, cmd & 0x7F, proto.NAK)
        if changed:
            self._changed()
        return None if addr == proto.BROADCAST else answer
