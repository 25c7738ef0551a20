"""Smart-blackboard controller: the display's mains relay, its RS-232 control port, power sensing,
usage hours and a local weekly schedule that runs without the gateway.

What the board should be is decided here, in this order: a manual power_on/power_off override until
its end (by default the schedule's next switch), else the schedule (when the clock is trusted), else the
last state it was driven to. That state, the override and the usage count are kept on flash
(`blackboard.json`), so after a reboot or a power cut the controller restores the state the board
should be in, not a default; the relay is set from it before anything else runs.

The controller sleeps until its next deadline (a switch, a retry, the relay's delayed release, a
display poll, the end of the power-sense grace, a save) or until something wakes it (a command, a
power-sense change); only a power-sense input that cannot report its changes (a plain pin) or an
untrusted clock make it look every second.
"""

import asyncio
from time import ticks_add, ticks_diff, ticks_ms

from app import config
from app.drivers.display import DisplayError, DisplayLink
from app.schedule import Schedule
from app.waits import wait_event_ms
from protocol import display as proto
from protocol import messages

STATE_FILE = "blackboard.json"
# How often the controller looks when it cannot sleep until a deadline.
TICK_MS = 1000
# A switch that failed is tried again after this long.
RETRY_MS = 30000
# Usage is written to flash at most this often (and at every switch): flash wear against lost minutes.
SAVE_EVERY_MS = 300000
BOOT_POLL_MS = 500


class BlackboardController:
    """The blackboard role."""

    def __init__(self, device):
        self.device = device
        hal = device.hal
        self.relay = hal.relay()
        self.sense = hal.power_sense()
        stream = hal.display_stream()
        self.display = DisplayLink(stream, device.cfg["display_addr"]) if stream is not None else None
        self._path = device.hal.data_dir + "/" + STATE_FILE
        self.state = {"want": 0, "ov": None, "until": 0, "secs": 0, "input": None, "schedule": None}
        try:
            saved = config.read_raw(self._path)
            for key in self.state:
                if key in saved:
                    self.state[key] = saved[key]
        except config.ConfigError:
            pass
        self.schedule = None
        self._load_schedule()
        # Restore the mains before the network or anything else: a reboot must not black the board out.
        if self.state["want"]:
            self.relay.value(1)
        self.applied = None
        self.display_on = None
        self.display_input = None
        self._retry_at = None
        self._switched_at = ticks_ms()
        self._relay_off_at = None
        self._poll_at = ticks_ms()
        self._saved_at = ticks_ms()
        self._raised = {}
        self._lock = asyncio.Lock()
        self._kick = asyncio.Event()
        # Usage is counted from one change of `powered()` to the next: every change wakes the loop or
        # is accounted where it happens, so no polling is needed to count it.
        self._acct_at = ticks_ms()
        self._powered_was = self.powered()
        on_change = getattr(self.sense, "on_change", None)
        self._sense_notifies = on_change is not None
        if on_change is not None:
            on_change(self._sense_changed)

    def _load_schedule(self):
        spec = self.state["schedule"] if self.state["schedule"] is not None else self.device.cfg["schedule"]
        self.schedule = Schedule(spec, self.device.cfg["tz_min"]) if spec else None

    def config_changed(self):
        """The device's config changed: the schedule may have."""
        try:
            self._load_schedule()
        except ValueError:
            self.schedule = None
        self._kick.set()

    def _sense_changed(self):
        self._account()
        self._kick.set()

    def _account(self):
        """Add the time since the last call to the usage count if the board was powered meanwhile."""
        now = ticks_ms()
        if self._powered_was:
            self.state["secs"] += ticks_diff(now, self._acct_at) / 1000
        self._acct_at = now
        self._powered_was = self.powered()

    def tasks(self):
        return [("blackboard", self._loop), ("telemetry", self._telemetry)]

    def _save(self):
        self._account()
        self.state["secs"] = int(self.state["secs"])
        config.write_json(self._path, self.state)
        self._saved_at = ticks_ms()

    def _alarm(self, code, detail):
        """Raise `code` with `detail`, or clear it when detail is None; only on a change."""
        if self._raised.get(code) == detail:
            return
        self._raised[code] = detail
        if detail is None:
            self.device.alarm(code, "clear")
        else:
            self.device.alarm(code, "raise", detail)

    def desired(self):
        """1 or 0: what the board should be now."""
        st = self.state
        clock_ok = self.device.hal.clock_ok()
        now = self.device.now()
        if st["ov"] is not None:
            if not st["until"] or not clock_ok or now < st["until"]:
                return st["ov"]
            st["ov"] = None
            st["until"] = 0
            self._save()
        if self.schedule is not None and clock_ok:
            return 1 if self.schedule.state(now)[0] else 0
        return st["want"]

    async def selftest(self):
        if self.display is None:
            return None
        if not self.relay.value():
            # Without mains the display cannot answer; the relay and the controller itself are fine.
            return None
        try:
            await self.display.query_power()
        except (DisplayError, ValueError) as exc:
            return "display: %s" % exc
        return None

    async def command(self, name, args):
        if name in (messages.POWER_ON, messages.POWER_OFF):
            until = args.get("until", 0)
            if isinstance(until, bool) or not isinstance(until, (int, float)):
                return "rejected", "until must be a Unix time"
            on = 1 if name == messages.POWER_ON else 0
            if not until and self.schedule is not None and self.device.hal.clock_ok():
                until = self.schedule.state(self.device.now())[1] or 0
            self.state["ov"] = on
            self.state["until"] = until
            return await self._drive(on)
        if name == messages.SET_INPUT:
            source = args.get("source")
            if source not in proto.SOURCES:
                return "rejected", "source must be one of " + ", ".join(proto.SOURCES)
            self.state["input"] = source
            self._save()
            if self.display is None:
                return "error", "no display port"
            try:
                async with self._lock:
                    await self.display.set_input(source)
            except DisplayError as exc:
                return "error", "display %s" % exc.kind
            self.display_input = source
            return "ok", None
        if name == messages.SET_SCHEDULE:
            spec = args.get("schedule")
            try:
                schedule = Schedule(spec, self.device.cfg["tz_min"]) if spec else None
            except ValueError as exc:
                return "rejected", str(exc)
            self.state["schedule"] = spec
            self.schedule = schedule
            # The new schedule decides from now on; an earlier manual override ends with it.
            self.state["ov"] = None
            self.state["until"] = 0
            self._save()
            self._kick.set()
            return "ok", None
        return None

    async def _drive(self, on):
        """Switch the board on or off and confirm; (result, detail)."""
        async with self._lock:
            try:
                return await self._switch(on)
            finally:
                # The loop's deadlines (retry, relay release, sense grace) have changed.
                self._account()
                self._kick.set()

    async def _switch(self, on):
        self.applied = on
        self.state["want"] = on
        self._switched_at = ticks_ms()
        self._save()
        try:
            if on:
                await self._power_on()
            else:
                await self._power_off()
        except DisplayError as exc:
            self._retry_at = ticks_add(ticks_ms(), RETRY_MS)
            if exc.kind == "no_answer":
                self._alarm(messages.DISPLAY_NO_ANSWER, "display does not answer on RS-232")
            else:
                self._alarm(messages.DISPLAY_POWER_FAULT, "display answered %s to power %s"
                            % (exc.kind, "on" if on else "off"))
            return "error", "display %s" % exc.kind
        self._retry_at = None
        return "ok", None

    async def _power_on(self):
        self._relay_off_at = None
        self.relay.value(1)
        display = self.display
        if display is None:
            return
        start = ticks_ms()
        boot_ms = int(self.device.cfg["display_boot_s"] * 1000)
        while True:
            try:
                await display.power(True)
                break
            except DisplayError as exc:
                # A display fresh on mains answers nothing, or busy, while it starts up.
                if exc.kind not in ("no_answer", "busy") or ticks_diff(ticks_ms(), start) >= boot_ms:
                    raise
            await asyncio.sleep_ms(BOOT_POLL_MS)
        self._alarm(messages.DISPLAY_NO_ANSWER, None)
        source = self.state["input"] or self.device.cfg["display_input"]
        if source:
            await display.set_input(source)
            self.display_input = source
        self.display_on = await display.query_power()
        if not self.display_on:
            raise DisplayError("refused")
        self._alarm(messages.DISPLAY_POWER_FAULT, None)

    async def _power_off(self):
        display = self.display
        if display is not None and self.relay.value():
            await display.power(False)
            self._alarm(messages.DISPLAY_NO_ANSWER, None)
            self.display_on = await display.query_power()
        self._alarm(messages.DISPLAY_POWER_FAULT, None)
        self._relay_off_at = ticks_add(ticks_ms(), int(self.device.cfg["relay_off_delay_s"] * 1000))

    def powered(self):
        """1 if the board is using power now: the sense input if fitted, else the display's answer."""
        sensed = self.sense.value()
        if sensed is not None:
            return sensed
        if self.display is not None and self.display_on is not None:
            return 1 if self.display_on and self.relay.value() else 0
        return 1 if self.relay.value() and self.applied else 0

    async def _poll_display(self):
        if self.display is None or not self.relay.value():
            self.display_on = False if self.display is not None else None
            return
        try:
            async with self._lock:
                self.display_on = await self.display.query_power()
                self.display_input = await self.display.query_input()
            self._alarm(messages.DISPLAY_NO_ANSWER, None)
        except DisplayError as exc:
            if exc.kind == "no_answer":
                self._alarm(messages.DISPLAY_NO_ANSWER, "display does not answer on RS-232")
        except ValueError:
            pass

    def _check_sense(self):
        sensed = self.sense.value()
        grace = int(self.device.cfg["sense_grace_s"] * 1000)
        if sensed is None or self.applied is None or ticks_diff(ticks_ms(), self._switched_at) < grace:
            return
        if sensed != self.applied:
            self._alarm(messages.DISPLAY_POWER_MISMATCH, "commanded %s, power sense reads %s"
                        % ("on" if self.applied else "off", "on" if sensed else "off"))
        else:
            self._alarm(messages.DISPLAY_POWER_MISMATCH, None)

    def _next_ms(self):
        """Milliseconds until the loop has something to do, unless it is woken first."""
        now = ticks_ms()
        wait = ticks_diff(self._saved_at, now) + SAVE_EVERY_MS
        if not self._sense_notifies:
            wait = min(wait, TICK_MS)
        for at in (self._retry_at, self._relay_off_at):
            if at is not None:
                wait = min(wait, ticks_diff(at, now))
        if self.display is not None and self.relay.value():
            # Without mains there is nothing to poll; switching the relay on wakes the loop.
            wait = min(wait, ticks_diff(self._poll_at, now))
        if self.sense.value() is not None and self.applied is not None:
            grace = int(self.device.cfg["sense_grace_s"] * 1000) - ticks_diff(now, self._switched_at)
            if grace > 0:
                wait = min(wait, grace)
        if not self.device.hal.clock_ok():
            # The clock may be set at any moment, and the schedule take over.
            return max(0, min(wait, TICK_MS))
        st = self.state
        t = self.device.now()
        switch = None
        if st["ov"] is not None:
            switch = st["until"] or None
        elif self.schedule is not None:
            switch = self.schedule.state(t)[1]
        if switch is not None:
            # A millisecond past the switch, so that the second it names has begun.
            wait = min(wait, int((switch - t) * 1000) + 1)
        return max(0, wait)

    async def _loop(self):
        while True:
            self._kick.clear()
            self._account()
            want = self.desired()
            now = ticks_ms()
            if want != self.applied or (self._retry_at is not None and ticks_diff(now, self._retry_at) >= 0):
                await self._drive(want)
            if self._relay_off_at is not None and ticks_diff(ticks_ms(), self._relay_off_at) >= 0:
                self._relay_off_at = None
                if not self.applied:
                    self.relay.value(0)
                    self.display_on = False
                    self._account()
            if ticks_diff(ticks_ms(), self._poll_at) >= 0:
                self._poll_at = ticks_add(ticks_ms(), int(self.device.cfg["display_poll_s"] * 1000))
                await self._poll_display()
                self._account()
            self._check_sense()
            if ticks_diff(ticks_ms(), self._saved_at) >= SAVE_EVERY_MS:
                self._save()
            wait = self._next_ms()
            if wait > 0 and not self._kick.is_set():
                await wait_event_ms(self._kick, wait)
            else:
                await asyncio.sleep_ms(0)

    async def _telemetry(self):
        while True:
            self._account()
            readings = {
                "power": self.powered(),
                "relay": self.relay.value(),
                "want": self.applied if self.applied is not None else self.state["want"],
                "usage_h": round(self.state["secs"] / 3600, 3),
            }
            if self.display_input in proto.SOURCES:
                readings["input"] = proto.SOURCES[self.display_input]
            await self.device.send_sample(messages.TELEMETRY, {"readings": readings})
            await asyncio.sleep(self.device.cfg["telemetry_s"])
