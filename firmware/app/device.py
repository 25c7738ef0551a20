"""One ClassOps classroom device: birth, health, events, commands, config, recovery and app updates.

All state lives on the Device instance, so one VM can host many devices. Each concern runs as its own
task: the broker link, the event sender, the health sampler, the supervisor (watchdog, recovery ladder,
update self-test) and the tasks of the device's role (app/roles/).

Events (attendance, command acks) go to the flash ring buffer before anything is sent, and leave it
only when the gateway's `eack` names their (boot, seq): the broker's PUBACK proves nothing about the
gateway's store. Every (re)connect replays what is still pending with hist=True, and an event left
unacknowledged for `resend_s` while connected is sent again.
"""

import asyncio
import gc
import json
import os
import sys
from array import array
from binascii import hexlify
from random import random
from time import ticks_add, ticks_diff, ticks_ms

import loader

from app import VERSION, config
from app.mqtt import MQTTClient, MQTTError
from app.ringbuf import RingBuffer
from app.waits import wait_event_ms
from protocol import limits, messages, topics

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30
BACKOFF_JITTER = 0.5
# A reboot waits this long for the broker to take the command's ack before restarting.
REBOOT_ACK_WAIT_MS = 2000
ERROR_PAUSE_S = 1
MAX_CID = 64
EVENTS_FILE = "events.rb"
CIDS_FILE = "commands.json"
# Command ids remembered with their results, so that a command sent again is answered, not redone.
KEEP_CIDS = 16
SUPERVISE_MS = 1000
# The clock is set again this often: an ESP32's RTC drifts by seconds a day.
CLOCK_SYNC_MS = 6 * 3600 * 1000
CLOCK_RETRY_MS = 60000
RESTART = 3
# A health sample reports the heap as found by a collection at most this old: a chip reporting every
# minute collects (and measures) every time; a VM of hundreds of devices has one heap and one figure,
# and does not collect and measure a heap of megabytes for each of them.
GC_EVERY_MS = 10000
# When the VM last collected garbage for a health figure, and the (free, largest block) it then
# measured: shared by the devices of a VM on purpose.
_last_gc = [ticks_ms() - GC_EVERY_MS]
_heap = [0, 0]

# Per-slot event flags. The leaf's index in EVENT_LEAVES sits in the high nibble.
_F_PENDING = 1
_F_HIST = 2  # the next send is a replay
_F_DUE = 4  # a resend time is set; without it the event goes out as soon as the link is up
EVENT_LEAVES = (topics.ATTENDANCE, topics.ALARM, topics.ACK)


class Device:
    """A device built from its validated config and its hardware backend; `await run()` to start."""

    def __init__(self, cfg, hal, boot=None):
        boot = boot or {}
        self.hal = hal
        self.device_id = hal.device_id
        self.config_version, values = config.load_desired(hal.data_dir)
        if values:
            try:
                cfg = config.merged(cfg, values)
            except config.ConfigError as exc:
                print("%s desired config %s refused: %s" % (self.device_id, self.config_version, exc))
                self.config_version = None
        self.cfg = cfg
        self.school = cfg["school"]
        self.boot = hexlify(os.urandom(4)).decode()
        self._seq = 0
        self.safe_mode = bool(boot.get("safe"))
        self._ota = boot.get("ota")
        self.errors = {
            "mqtt_reconnects": 0,
            "wifi_resets": 0,
            "bad_commands": 0,
            "bad_messages": 0,
            "bad_records": 0,
            "out_of_memory": 0,
            "internal": 0,
            "sensor_faults": 0,
        }
        school, dev = self.school, self.device_id
        self._up = {}
        for leaf in (topics.STATUS, topics.HEALTH, topics.TELEMETRY, topics.ATTENDANCE, topics.ACK,
                     topics.ALARM):
            self._up[leaf] = topics.up(school, dev, leaf)
        self._down = {}
        for leaf in topics.DOWN_LEAVES:
            self._down[topics.down(school, dev, leaf)] = leaf
        slots = cfg["buffer_slots"]
        self.buffer = RingBuffer(hal.data_dir + "/" + EVENTS_FILE, slots)
        # Facts about the unacknowledged event in each slot, in per-slot arrays: a few bytes per event
        # and nothing allocated per event, so that a full buffer fits a small, fragmented heap.
        self._boots = [self.boot]
        self._ev_boot = array("H", bytes(2 * slots))
        self._ev_seq = array("i", bytes(4 * slots))
        self._ev_due = array("i", bytes(4 * slots))
        # The packet id of one event's latest publish is kept: a reboot waits for its ack's PUBACK.
        self._watch_slot = -1
        self._watch_pid = 0
        self._ev_flags = bytearray(slots)
        self._load_pending()
        self.client = MQTTClient(dev, cfg["broker_host"], cfg["broker_port"], cfg["username"],
                                 cfg["password"], cfg["keepalive_s"], self._on_message)
        self._online = False
        self.births = 0
        self._link_failures = 0
        self._wake = asyncio.Event()
        self._done = asyncio.Event()
        self.exit_code = None
        self._uptime_ms = 0
        self._uptime_mark = ticks_ms()
        self._offline_since = ticks_ms()
        self._cids = self._load_cids()
        self._busy_cids = []
        self._command_lock = asyncio.Lock()
        hal.on_link_drop(self._link_dropped)
        self.role = None
        if not self.safe_mode:
            from app import roles

            self.role = roles.create(self)
        if boot.get("config_problem"):
            self.alarm(messages.CONFIG_INVALID, "raise", "running the last good config: "
                       + boot["config_problem"][:200])
        if self.safe_mode:
            self.alarm(messages.SAFE_MODE, "raise", "%d boots failed in a row" % boot.get("boots", 0))
        self._ack_ota_outcome()

    def log(self, text):
        """One line on the console, tagged with the device id."""
        print("%s %s" % (self.device_id, text))

    def _load_pending(self):
        # Slot by slot rather than through buffer.pending(): after a long outage a terminal boots with
        # a thousand pending events, and a list (and sort) of them would cost kilobytes of heap.
        buffer = self.buffer
        for slot in range(buffer.slots):
            if not buffer.is_pending(slot):
                continue
            data = buffer.read(slot)
            try:
                msg = json.loads(data)
                self._track(slot, msg["boot"], msg["seq"], EVENT_LEAVES.index(msg["kind"]), True)
            except (TypeError, ValueError, KeyError):
                # A record that passed its crc but is not an event cannot be sent; free its slot.
                self.errors["bad_records"] += 1
                buffer.ack(slot)

    def _track(self, slot, boot, seq, leaf_index, hist):
        try:
            bi = self._boots.index(boot)
        except ValueError:
            bi = len(self._boots)
            self._boots.append(boot)
        self._ev_boot[slot] = bi
        self._ev_seq[slot] = seq
        if slot == self._watch_slot:
            self._watch_pid = 0
        self._ev_flags[slot] = _F_PENDING | (_F_HIST if hist else 0) | (leaf_index << 4)

    def _pending_slots(self):
        # Ring order from the oldest position: write order unless the gateway acknowledged out of
        # order; the gateway keys events by (boot, seq), so order is a courtesy, not a need.
        n = self.buffer.slots
        head = self.buffer.head
        flags = self._ev_flags
        for k in range(n):
            slot = (head + k) % n
            if flags[slot] & _F_PENDING:
                yield slot

    def _next_seq(self):
        self._seq += 1
        return self._seq

    def _now(self):
        return int(self.hal.time())

    def uptime_s(self):
        """Seconds since boot; summed from tick differences so that tick wrap-around does not matter."""
        now = ticks_ms()
        self._uptime_ms += ticks_diff(now, self._uptime_mark)
        self._uptime_mark = now
        return self._uptime_ms // 1000

    def error_counters(self):
        """Error counters as reported in health."""
        out = dict(self.errors)
        out["events_dropped"] = self.buffer.events_dropped
        return out

    def _message(self, kind, fields):
        return messages.message(kind, self.device_id, self.boot, self._next_seq(), self._now(), fields)

    def add_event(self, kind, fields):
        """Build an event, store it on flash and queue it; its slot, or None if the buffer refused it."""
        msg = self._message(kind, fields)
        slot = self.buffer.append(messages.encode(msg))
        if slot is None:
            return None
        self._track(slot, self.boot, msg["seq"], EVENT_LEAVES.index(kind), False)
        self._wake.set()
        return slot

    def now(self):
        """Unix time from the hardware layer's clock."""
        return self.hal.time()

    def alarm(self, code, state, detail=None):
        """Raise or clear alarm `code` (one of messages.ALARM_CODES) as an event."""
        fields = {"code": code, "state": state, "hist": False}
        if detail:
            # The protocol's bound on detail: a longer text would make encode refuse the whole alarm.
            fields["detail"] = detail[:limits.MAX_DETAIL_LEN]
        self.log("alarm %s %s %s" % (code, state, detail or ""))
        return self.add_event(messages.ALARM, fields)

    async def send_sample(self, kind, fields):
        """Publish a sample (telemetry) at QoS 0 while online; dropped while offline, as samples are."""
        if not self._online:
            return False
        try:
            await self.client.publish(self._up[kind], messages.encode(self._message(kind, fields)))
        except OSError:
            self.client.abort()
            return False
        return True

    def _on_message(self, topic, payload):
        leaf = self._down.get(topic)
        if leaf is None:
            self.errors["bad_messages"] += 1
            return
        try:
            msg = messages.decode(payload, leaf)
        except messages.ProtocolError as exc:
            self.errors["bad_commands" if leaf == topics.COMMAND else "bad_messages"] += 1
            self.log("refused %s: %s" % (leaf, exc))
            return
        except MemoryError:
            # Too big for the heap right now; an unacknowledged event is simply sent and acked again.
            self.errors["out_of_memory"] += 1
            return
        if leaf == topics.EVENT_ACK:
            self._on_event_ack(msg["keys"])
        elif leaf == topics.COMMAND:
            self._on_command(msg)
        elif leaf == topics.CONFIG:
            if msg["version"] != self.config_version:
                result, detail = self.apply_config(msg["version"], msg["values"])
                if result != "ok":
                    self.alarm(messages.CONFIG_REJECTED, "raise",
                               "version %d: %s" % (msg["version"], detail))

    def _on_event_ack(self, keys):
        for boot, seq in keys:
            try:
                bi = self._boots.index(boot)
            except ValueError:
                continue
            for slot in self._pending_slots():
                if self._ev_seq[slot] == seq and self._ev_boot[slot] == bi:
                    self.buffer.ack(slot)
                    self._ev_flags[slot] = 0
                    break

    def _load_cids(self):
        kept = loader.read_json(self.hal.data_dir + "/" + CIDS_FILE)
        return kept if isinstance(kept, list) else []

    def _remember(self, cid, result, detail):
        self._cids.append([cid, result, detail])
        del self._cids[:-KEEP_CIDS]
        try:
            config.write_json(self.hal.data_dir + "/" + CIDS_FILE, self._cids)
        except OSError:
            pass

    def _ack(self, cid, result, detail=None):
        fields = {"cid": cid, "result": result, "hist": False}
        if detail:
            fields["detail"] = detail[:200]
        return self.add_event(messages.ACK, fields)

    def _on_command(self, msg):
        cid = msg["cid"]
        if not cid or len(cid) > MAX_CID:
            self.errors["bad_commands"] += 1
            return
        if cid in self._busy_cids:
            return
        if self._ota and self._ota.get("trial") and self._ota.get("cid") == cid:
            # The update this command started is on trial; its outcome is the ack.
            return
        for kept in self._cids:
            if kept[0] == cid:
                # Sent again (the gateway never saw the ack): answer again, do not do it twice.
                self._ack(cid, kept[1], kept[2])
                return
        args = msg.get("args") or {}
        if self.hal.clock_ok() and msg["exp"] < self.hal.time():
            self.log("command %s %s: expired" % (msg["name"], cid))
            self._remember(cid, "expired", None)
            self._ack(cid, "expired")
            return
        self._busy_cids.append(cid)
        asyncio.create_task(self._run_command(cid, msg["name"], args))

    async def _run_command(self, cid, name, args):
        try:
            async with self._command_lock:
                try:
                    result, detail = await self._execute(cid, name, args)
                except Exception as exc:
                    self.errors["internal"] += 1
                    result, detail = "error", "%r" % (exc,)
            if result is None:
                return
            self.log("command %s %s: %s %s" % (name, cid, result, detail or ""))
            self._remember(cid, result, detail)
            slot = self._ack(cid, result, detail)
            if name == messages.REBOOT and result == "ok":
                await self._reboot(slot)
        finally:
            self._busy_cids.remove(cid)

    async def _execute(self, cid, name, args):
        """(result, detail) of one command; result None when the ack comes later (an app update)."""
        if name == messages.PING:
            return "ok", None
        if name == messages.REBOOT:
            if args.get("normal"):
                loader.boot_ok(self.hal.data_dir)
            return "ok", None
        if name == messages.SET_CONFIG:
            version = args.get("version", self.config_version or 0)
            if isinstance(version, bool) or not isinstance(version, int):
                return "rejected", "version must be an integer"
            return self.apply_config(version, args.get("values"))
        if name == messages.OTA:
            from app import ota

            return await ota.run(self, cid, args)
        if self.role is not None:
            done = await self.role.command(name, args)
            if done is not None:
                return done
        if name in messages.COMMAND_NAMES:
            return "rejected", "not for this role" if self.role is not None else "safe mode"
        return "rejected", "unknown command"

    def apply_config(self, version, values):
        """Apply a desired config and keep it; (result, detail). The birth reports its version."""
        try:
            merged = config.merged(self.cfg, values)
        except config.ConfigError as exc:
            return "rejected", str(exc)
        old_values = config.load_desired(self.hal.data_dir)[1]
        for name in values:
            old_values[name] = values[name]
        config.save_desired(self.hal.data_dir, version, old_values)
        for name in merged:
            self.cfg[name] = merged[name]
        self.config_version = version
        if self.role is not None and hasattr(self.role, "config_changed"):
            self.role.config_changed()
        self.log("config version %d applied" % version)
        if self._online:
            asyncio.create_task(self._publish_birth())
        return "ok", None

    def _ack_ota_outcome(self):
        st = self._ota
        if not st or not st.get("outcome"):
            return
        out = st["outcome"]
        if out.get("cid"):
            self._remember(out["cid"], out["result"], out.get("detail"))
            self._ack(out["cid"], out["result"], out.get("detail"))
        st["outcome"] = None
        loader.save_ota(self.hal.data_dir, st)

    async def _reboot(self, slot):
        start = ticks_ms()
        if slot is not None:
            self._watch_slot = slot
            self._watch_pid = 0
        while slot is not None and ticks_diff(ticks_ms(), start) < REBOOT_ACK_WAIT_MS:
            pid = self._watch_pid
            if not self._ev_flags[slot] & _F_PENDING or (pid and self.client.acked(pid)):
                break
            await asyncio.sleep_ms(20)
        self.restart("reboot")

    def restart(self, why):
        """Restart the device (on the host: end run() with RESTART)."""
        self.log("restarting: " + why)
        self.hal.restart()
        self.stop(RESTART)

    def stop(self, code=0):
        """End `run` with `code`."""
        self.exit_code = code
        self._done.set()

    def _birth(self):
        cfg = self.cfg
        fields = {
            "role": cfg["role"],
            "fw": cfg["fw"] or self.hal.fw_version(),
            "app": cfg["app"] or VERSION,
            "reset": self.hal.reset_reason(),
            "health_s": cfg["health_s"],
            "clock_ok": self.hal.clock_ok(),
        }
        if self.config_version is not None:
            fields["config_version"] = self.config_version
        if self.safe_mode:
            fields["safe_mode"] = True
        return messages.encode(self._message(messages.BIRTH, fields))

    async def _publish_birth(self):
        try:
            await self.client.publish(self._up[topics.STATUS], self._birth(), retain=True, qos=1)
            self.births += 1
        except OSError:
            self.client.abort()

    def _link_dropped(self):
        self.client.abort()

    async def _link(self):
        client = self.client
        client.set_will(self._up[topics.STATUS], messages.encode(messages.will(self.device_id, self.boot)))
        delay = BACKOFF_MIN_S
        while True:
            try:
                await self.hal.network_up()
                client.keepalive = self.cfg["keepalive_s"]
                await client.connect()
                await client.subscribe(topics.device_downlink_filter(self.school, self.device_id), 1)
                await client.publish(self._up[topics.STATUS], self._birth(), retain=True, qos=1)
                self.births += 1
                delay = BACKOFF_MIN_S
                self._link_failures = 0
                self.log("online boot=%s pending=%d" % (self.boot, self.buffer.count()))
                flags = self._ev_flags
                for slot in self._pending_slots():
                    flags[slot] = (flags[slot] | _F_HIST) & ~_F_DUE
                self._online = True
                self._wake.set()
                await client.run()
            except (OSError, MQTTError) as exc:
                self.log("link down: %r" % (exc,))
            except MemoryError:
                # A packet that found no room on the heap was half read; only a new link resyncs.
                self.errors["out_of_memory"] += 1
                self.log("link down: out of memory")
            finally:
                if self._online:
                    self._offline_since = ticks_ms()
                self._online = False
                client.close()
            self.errors["mqtt_reconnects"] += 1
            self._link_failures += 1
            # Second rung of the recovery ladder: a broker that stays unreachable may be a stuck
            # Wi-Fi station; restart it. (The third, a reboot, is the supervisor's.)
            if self._link_failures % self.cfg["wifi_reset_after"] == 0:
                self.errors["wifi_resets"] += 1
                self.hal.network_reset()
            await asyncio.sleep(delay * (1 + BACKOFF_JITTER * (2 * random() - 1)))
            delay = min(delay * 2, BACKOFF_MAX_S)

    def _payload(self, slot):
        data = self.buffer.read(slot)
        if data is None or not self._ev_flags[slot] & _F_HIST:
            return data
        msg = json.loads(data)
        msg["hist"] = True
        return messages.encode(msg)

    def _next_send_ms(self):
        # Milliseconds until the sender has something to do: 0 now, -1 nothing until woken (no pending
        # event, or offline: going online wakes it). Idle, it sleeps instead of scanning the ring.
        if not self._online or not self.buffer.count():
            return -1
        flags = self._ev_flags
        due = self._ev_due
        now = ticks_ms()
        wait = -1
        for slot in self._pending_slots():
            if not flags[slot] & _F_DUE:
                return 0
            left = ticks_diff(due[slot], now)
            if left <= 0:
                return 0
            if wait < 0 or left < wait:
                wait = left
        return wait

    async def _sender(self):
        while True:
            wait = self._next_send_ms()
            if wait < 0:
                await self._wake.wait()
            elif wait > 0:
                await wait_event_ms(self._wake, wait)
            else:
                # Yield even when work is waiting: a failed publish leaves the link task to notice.
                await asyncio.sleep_ms(0)
            self._wake.clear()
            if not self._online:
                continue
            await self._send_due()

    async def _send_due(self):
        flags = self._ev_flags
        now = ticks_ms()
        for slot in self._pending_slots():
            if not self._online:
                return
            if flags[slot] & _F_DUE and ticks_diff(self._ev_due[slot], now) > 0:
                continue
            data = self._payload(slot)
            if data is None:
                self.errors["bad_records"] += 1
                self.buffer.ack(slot)
                flags[slot] = 0
                continue
            try:
                pid = await self.client.publish(self._up[EVENT_LEAVES[flags[slot] >> 4]], data, qos=1)
            except OSError:
                self.client.abort()
                return
            # An eack may have freed the slot while the publish was on its way.
            if flags[slot] & _F_PENDING:
                if slot == self._watch_slot:
                    self._watch_pid = pid
                self._ev_due[slot] = ticks_add(now, int(self.cfg["resend_s"] * 1000))
                flags[slot] |= _F_HIST | _F_DUE

    async def _health(self):
        # A random first wait spreads the health of a classroom full of devices that powered up
        # together (and of a VM full of simulated ones) over the period.
        await asyncio.sleep(random() * self.cfg["health_s"])
        while True:
            uptime = self.uptime_s()
            if self._online:
                await self._send_health(uptime)
            await asyncio.sleep(self.cfg["health_s"])

    async def _send_health(self, uptime):
        """Publish one health sample."""
        now = ticks_ms()
        if ticks_diff(now, _last_gc[0]) >= GC_EVERY_MS:
            _last_gc[0] = now
            gc.collect()
            _heap[0], _heap[1] = self.hal.heap()
        free, block = _heap
        fields = {
            "uptime_s": uptime,
            "heap_free": free,
            "heap_max_block": block,
            "errors": self.error_counters(),
            "buffered": self.buffer.count(),
            "clock_ok": self.hal.clock_ok(),
        }
        rssi = self.hal.rssi()
        if rssi is not None:
            fields["rssi"] = rssi
        try:
            await self.client.publish(self._up[topics.HEALTH], messages.encode(
                self._message(messages.HEALTH, fields)))
        except OSError:
            self.client.abort()

    async def _supervisor(self):
        cfg = self.cfg
        dog = self.hal.watchdog(int(cfg["watchdog_s"] * 1000))
        started = ticks_ms()
        booted_ok = False
        clock_at = started
        trial = self._ota is not None and self._ota.get("trial") is not None
        # Fed a few times per timeout, so that a late wake-up on a busy chip never bites.
        feed_ms = max(SUPERVISE_MS, int(cfg["watchdog_s"] * 1000) // 3)
        while True:
            # Fed only from here: a wedged event loop stops feeding and the chip resets.
            dog.feed()
            now = ticks_ms()
            up_ms = ticks_diff(now, started)
            if not booted_ok and up_ms >= cfg["boot_ok_s"] * 1000:
                booted_ok = True
                loader.boot_ok(self.hal.data_dir)
            if ticks_diff(now, clock_at) >= 0:
                ok = await self.hal.sync_clock()
                clock_at = ticks_add(now, CLOCK_SYNC_MS if ok else CLOCK_RETRY_MS)
            if trial:
                trial = await self._trial_step(up_ms)
                if self.exit_code is not None:
                    return
            reboot_ms = cfg["reboot_after_s"] * 1000
            if not self._online and ticks_diff(now, self._offline_since) >= reboot_ms:
                # Third rung: offline this long despite reconnects and Wi-Fi restarts.
                self.restart("offline for %d s" % cfg["reboot_after_s"])
                return
            # Sleep until the next deadline rather than ticking: the watchdog's feed, the good-boot
            # mark, the clock sync, the reboot of a device offline too long; a trial checks every tick.
            # Online, it sleeps no longer than the reboot delay: a link that drops meanwhile is then
            # seen before its reboot deadline, which is therefore kept to the tick.
            now = ticks_ms()
            wait = SUPERVISE_MS if trial else min(feed_ms, reboot_ms)
            if not booted_ok:
                wait = min(wait, cfg["boot_ok_s"] * 1000 - ticks_diff(now, started))
            wait = min(wait, ticks_diff(clock_at, now))
            if not self._online:
                wait = min(wait, reboot_ms - ticks_diff(now, self._offline_since))
            await asyncio.sleep_ms(max(1, int(wait)))

    async def _trial_step(self, up_ms):
        """Self-test of an app version on trial: commit it once it passes, roll back at the deadline.
        Returns whether the trial goes on."""
        problem = "broker not reachable"
        if self.births:
            problem = await self.role.selftest() if self.role is not None else None
            if problem is None:
                loader.finish_trial(self.hal.data_dir, True, "version %s running" % VERSION)
                image = self.hal.firmware_image()
                if image is not None:
                    image.confirm()
                self._ota = loader.ota_state(self.hal.data_dir)
                self._ack_ota_outcome()
                self.log("app %s committed" % VERSION)
                return False
        if up_ms >= self.cfg["ota_selftest_s"] * 1000:
            loader.finish_trial(self.hal.data_dir, False, "rolled back: self-test failed: " + problem)
            self.restart("app %s failed its self-test: %s" % (VERSION, problem))
            return False
        return True

    async def _guard(self, name, job):
        # A bug in one concern must not take the device down: log it, count it, start the task again.
        while True:
            try:
                await job()
                return
            except Exception as exc:
                self.errors["internal"] += 1
                self.log("%s failed: %r" % (name, exc))
                if hasattr(sys, "print_exception"):
                    sys.print_exception(exc)
                await asyncio.sleep(ERROR_PAUSE_S)

    async def run(self):
        """Run every task until `stop`; return the exit code (RESTART after a reboot command)."""
        self.log("boot %s app=%s reset=%s pending=%d%s" % (
            self.boot, VERSION, self.hal.reset_reason(), self.buffer.count(),
            " SAFE MODE" if self.safe_mode else ""))
        jobs = [("link", self._link), ("sender", self._sender), ("health", self._health),
                ("supervisor", self._supervisor)]
        jobs += self.hal.tasks()
        if self.role is not None:
            jobs += self.role.tasks()
        tasks = []
        for name, job in jobs:
            tasks.append(asyncio.create_task(self._guard(name, job)))
        await self._done.wait()
        for task in tasks:
            task.cancel()
        # Let the cancelled tasks unwind before the files they use are closed.
        await asyncio.sleep_ms(0)
        self.client.close()
        self.buffer.close()
        return self.exit_code
