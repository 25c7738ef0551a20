"""A smart blackboard whose RS-232 control port is wired to the gateway itself.

Some classrooms near the network closet have no ESP32 controller: the display's serial cable runs to
the gateway. The connector speaks the same display command set (protocol/display.py) over pyserial and
makes the display a device like any other: it has a device id, a birth, health, blackboard telemetry
(power, input, usage hours), alarms, and it obeys the same commands (power_on, power_off, set_input,
ping) with acks. Its messages are validated and committed through the store like a device's, so they
are de-duplicated, synced and evaluated by the edge rules the same way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import serial

from gateway.config import DisplaySettings
from gateway.metrics import Metrics
from protocol import display as proto
from protocol import messages, topics

log = logging.getLogger(__name__)

REPLY_TIMEOUT_S = 1.0
TRIES = 3
FIRMWARE = "gateway-serial"

Ingest = Callable[[list[tuple[str, bytes]]], Awaitable[Any]]


class DisplayError(Exception):
    """The display did not answer, or answered with a refusal."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class SerialLink:
    """Blocking request/reply over one serial port; one request at a time."""

    def __init__(self, port: str, addr: int, baudrate: int) -> None:
        self._port_name = port
        self._addr = addr
        self._baudrate = baudrate
        self._port: serial.Serial | None = None
        self._parser = proto.Parser()

    def _open(self) -> serial.Serial:
        if self._port is None:
            self._port = serial.Serial(self._port_name, self._baudrate, timeout=0.05, write_timeout=1.0)
        return self._port

    def close(self) -> None:
        """Close the port; the next request opens it again."""
        if self._port is not None:
            try:
                self._port.close()
            finally:
                self._port = None

    def request(self, frame: bytes, cmd: int) -> bytes:
        """Send one request and return the reply's data after an ACK status; DisplayError otherwise."""
        for _ in range(TRIES):
            try:
                port = self._open()
                port.reset_input_buffer()
                port.write(frame)
                deadline = time.monotonic() + REPLY_TIMEOUT_S
                while time.monotonic() < deadline:
                    for addr, got, data in self._parser.feed(port.read(64)):
                        if addr != self._addr or got != cmd | proto.REPLY:
                            continue
                        status, rest = proto.parse_reply((addr, got, data), cmd)
                        if status == proto.ACK:
                            return bytes(rest)
                        if status == proto.BUSY:
                            break
                        raise DisplayError(proto.STATUS_NAMES.get(status, "bad_status"))
            except (serial.SerialException, OSError) as exc:
                log.warning("display port %s: %s", self._port_name, exc)
                self.close()
        raise DisplayError("no_answer")


class SerialDisplay:
    """One serial-wired display, shown to the rest of ClassOps as a blackboard device."""

    def __init__(self, settings: DisplaySettings, school: str, ingest: Ingest, metrics: Metrics) -> None:
        self.settings = settings
        self.device = settings.device_id
        self._school = school
        self._ingest = ingest
        self._metrics = metrics
        self._link = SerialLink(settings.port, settings.addr, settings.baudrate)
        self._lock = asyncio.Lock()
        self._boot = os.urandom(4).hex()
        self._seq = 0
        self._started = time.monotonic()
        self._usage_s = 0.0
        self._on_since: float | None = None
        self._faults: dict[str, int] = {"display_no_answer": 0, "bad_commands": 0}
        self._alarms: set[str] = set()
        self.power: bool | None = None
        self.source: str | None = None

    async def _send(self, kind: str, fields: dict[str, Any]) -> None:
        self._seq += 1
        msg = messages.message(kind, self.device, self._boot, self._seq, int(time.time()), fields)
        await self._ingest([(topics.up(self._school, self.device, messages.leaf_of(kind)), messages.encode(msg))])

    async def _ask(self, frame: bytes, cmd: int) -> bytes:
        async with self._lock:
            return await asyncio.to_thread(self._link.request, frame, cmd)

    async def _alarm(self, code: str, active: bool, detail: str = "") -> None:
        if active == (code in self._alarms):
            return
        if active:
            self._alarms.add(code)
        else:
            self._alarms.discard(code)
        fields: dict[str, Any] = {"code": code, "state": "raise" if active else "clear"}
        if detail:
            fields["detail"] = detail
        await self._send(messages.ALARM, fields)

    async def poll(self) -> None:
        """Read the display's state and report it as telemetry; raise or clear `display_no_answer`."""
        addr = self.settings.addr
        try:
            power = proto.decode_power(await self._ask(proto.power_get(addr), proto.POWER_GET))
            source = proto.decode_input(await self._ask(proto.input_get(addr), proto.INPUT_GET)) if power else None
        except (DisplayError, proto.DisplayProtocolError) as exc:
            self._faults["display_no_answer"] += 1
            await self._alarm(messages.DISPLAY_NO_ANSWER, True, f"serial port {self.settings.port}: {exc}")
            return
        await self._alarm(messages.DISPLAY_NO_ANSWER, False)
        self._track_power(power)
        self.source = source
        readings: dict[str, float] = {"power": 1 if power else 0, "usage_h": round(self.usage_hours(), 3)}
        if source is not None:
            readings["input"] = proto.SOURCES[source]
        await self._send(messages.TELEMETRY, {"readings": readings})

    def _track_power(self, power: bool) -> None:
        now = time.monotonic()
        if self._on_since is not None:
            self._usage_s += now - self._on_since
        self._on_since = now if power else None
        self.power = power

    def usage_hours(self) -> float:
        """Hours the display has been on since the gateway started watching it."""
        extra = time.monotonic() - self._on_since if self._on_since is not None else 0.0
        return (self._usage_s + extra) / 3600

    async def execute(self, cid: str, name: str, args: dict[str, Any], exp: float) -> tuple[str, str | None]:
        """Carry out a command and report its result as an ack event; return (result, detail)."""
        result, detail = await self._carry_out(name, args, exp)
        fields: dict[str, Any] = {"cid": cid, "result": result}
        if detail:
            fields["detail"] = detail
        await self._send(messages.ACK, fields)
        return result, detail

    async def _carry_out(self, name: str, args: dict[str, Any], exp: float) -> tuple[str, str | None]:
        if exp < time.time():
            return "expired", None
        addr = self.settings.addr
        try:
            if name == messages.PING:
                return "ok", None
            if name in (messages.POWER_ON, messages.POWER_OFF):
                on = name == messages.POWER_ON
                try:
                    await self._ask(proto.power_set(on, addr), proto.POWER_SET)
                except DisplayError as exc:
                    if exc.kind == "refused":
                        await self._alarm(messages.DISPLAY_POWER_FAULT, True, f"the display refused power {name}")
                    raise
                power = proto.decode_power(await self._ask(proto.power_get(addr), proto.POWER_GET))
                self._track_power(power)
                if power != on:
                    await self._alarm(messages.DISPLAY_POWER_MISMATCH, True, f"asked {name}, display reports {power}")
                    return "error", "display did not change power"
                await self._alarm(messages.DISPLAY_POWER_FAULT, False)
                await self._alarm(messages.DISPLAY_POWER_MISMATCH, False)
                return "ok", None
            if name == messages.SET_INPUT:
                source = args.get("source")
                if source not in proto.SOURCES:
                    return "rejected", "source must be one of " + ", ".join(proto.SOURCES)
                await self._ask(proto.input_set(source, addr), proto.INPUT_SET)
                self.source = source
                return "ok", None
        except DisplayError as exc:
            return "error", f"display {exc.kind}"
        except proto.DisplayProtocolError as exc:
            return "error", str(exc)
        return "rejected", f"{name} is not a command for a serial-wired display"

    async def birth(self) -> None:
        """Announce the display as a device."""
        await self._send(messages.BIRTH, {"role": "blackboard", "fw": FIRMWARE, "app": FIRMWARE,
                                          "reset": "power_on", "health_s": int(self.settings.poll_s)})

    async def health(self) -> None:
        """Health like a device's, from the connector's point of view."""
        await self._send(messages.HEALTH, {
            "uptime_s": int(time.monotonic() - self._started), "heap_free": 0, "heap_max_block": 0,
            "errors": dict(self._faults), "buffered": 0,
        })

    async def run(self) -> None:
        """Announce, then poll the display and report health every period, for ever."""
        await self.birth()
        try:
            while True:
                await self.poll()
                await self.health()
                await asyncio.sleep(self.settings.poll_s)
        finally:
            await asyncio.to_thread(self._link.close)
