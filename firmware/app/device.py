"""One ClassOps classroom device: birth, health, card taps, commands and end-to-end event delivery.

All state lives on the Device instance, so one VM can host many devices. Each concern runs as its own
task: the broker link, the health sampler, the card reader and the event sender.

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

from app import VERSION
from app.mqtt import MQTTClient, MQTTError
from app.ringbuf import RingBuffer
from protocol import messages, topics

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30
BACKOFF_JITTER = 0.5
# The sender wakes at least this often to look for events whose resend time has come.
SENDER_TICK_MS = 250
# A reboot waits this long for the broker to take the command's ack before restarting.
REBOOT_ACK_WAIT_MS = 2000
ERROR_PAUSE_S = 1
# Cards remembered for debouncing: a reader sees far fewer distinct cards than this within debounce_s.
DEBOUNCE_CARDS = 16
MAX_CID = 64
EVENTS_FILE = "events.rb"
RESTART = 3

# Per-slot event flags. The leaf's index in EVENT_LEAVES sits in the high nibble.
_F_PENDING = 1
_F_HIST = 2  # the next send is a replay
_F_DUE = 4  # a resend time is set; without it the event goes out as soon as the link is up
EVENT_LEAVES = (topics.ATTENDANCE, topics.ALARM, topics.ACK)


class Device:
    """A device built from its validated config and its hardware backend; `await run()` to start."""

    def __init__(self, cfg, hal):
        self.cfg = cfg
        self.hal = hal
        self.device_id = hal.device_id
        self.school = cfg["school"]
        self.boot = hexlify(os.urandom(4)).decode()
        self._seq = 0
        self.errors = {
            "mqtt_reconnects": 0,
            "bad_commands": 0,
            "bad_messages": 0,
            "bad_records": 0,
            "out_of_memory": 0,
            "internal": 0,
        }
        school, dev = self.school, self.device_id
        self._up = {}
        for leaf in (topics.STATUS, topics.HEALTH, topics.ATTENDANCE, topics.ACK, topics.ALARM):
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
        self._ev_pid = array("H", bytes(2 * slots))
        self._ev_flags = bytearray(slots)
        self._load_pending()
        self._resend_ms = int(cfg["resend_s"] * 1000)
        self._debounce_ms = int(cfg["debounce_s"] * 1000)
        self._card_uid = [None] * DEBOUNCE_CARDS
        self._card_at = array("i", bytes(4 * DEBOUNCE_CARDS))
        self._card_next = 0
        self.client = MQTTClient(dev, cfg["broker_host"], cfg["broker_port"], cfg["username"],
                                 cfg["password"], cfg["keepalive_s"], self._on_message)
        self._online = False
        self._wake = asyncio.Event()
        self._done = asyncio.Event()
        self.exit_code = None
        self._uptime_ms = 0
        self._uptime_mark = ticks_ms()

    def log(self, text):
        """One line on the console, tagged with the device id."""
        print("%s %s" % (self.device_id, text))

    def _load_pending(self):
        for slot in self.buffer.pending():
            data = self.buffer.read(slot)
            try:
                msg = json.loads(data)
                self._track(slot, msg["boot"], msg["seq"], EVENT_LEAVES.index(msg["kind"]), True)
            except (TypeError, ValueError, KeyError):
                # A record that passed its crc but is not an event cannot be sent; free its slot.
                self.errors["bad_records"] += 1
                self.buffer.ack(slot)

    def _track(self, slot, boot, seq, leaf_index, hist):
        try:
            bi = self._boots.index(boot)
        except ValueError:
            bi = len(self._boots)
            self._boots.append(boot)
        self._ev_boot[slot] = bi
        self._ev_seq[slot] = seq
        self._ev_pid[slot] = 0
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

    def take_tap(self, uid):
        """A card tap from the reader: "ok" once the event is on flash, else "ignored <reason>"."""
        uid = uid.lower()
        if not messages.is_card_uid(uid):
            return "ignored bad_uid"
        now = ticks_ms()
        for i in range(DEBOUNCE_CARDS):
            if self._card_uid[i] == uid and ticks_diff(now, self._card_at[i]) < self._debounce_ms:
                return "ignored debounce"
        fields = {"card": uid, "hist": False, "clock_ok": self.hal.clock_ok()}
        if self.add_event(messages.ATTENDANCE, fields) is None:
            return "ignored full"
        i = self._card_next
        self._card_uid[i] = uid
        self._card_at[i] = now
        self._card_next = (i + 1) % DEBOUNCE_CARDS
        return "ok"

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

    def _on_command(self, msg):
        cid = msg["cid"]
        name = msg["name"]
        if not cid or len(cid) > MAX_CID:
            self.errors["bad_commands"] += 1
            return
        detail = None
        if self.hal.clock_ok() and msg["exp"] < self.hal.time():
            result = "expired"
        elif name == "ping":
            result = "ok"
        elif name == "reboot":
            result = "ok"
        else:
            result = "rejected"
            detail = "unknown command"
        fields = {"cid": cid, "result": result, "hist": False}
        if detail:
            fields["detail"] = detail
        self.log("command %s %s: %s" % (name, cid, result))
        slot = self.add_event(messages.ACK, fields)
        if name == "reboot" and result == "ok":
            asyncio.create_task(self._reboot(slot))

    async def _reboot(self, slot):
        start = ticks_ms()
        while slot is not None and ticks_diff(ticks_ms(), start) < REBOOT_ACK_WAIT_MS:
            pid = self._ev_pid[slot]
            if not self._ev_flags[slot] & _F_PENDING or (pid and self.client.acked(pid)):
                break
            await asyncio.sleep_ms(20)
        self.log("rebooting")
        self.hal.restart()
        self.stop(RESTART)

    def stop(self, code=0):
        """End `run` with `code`."""
        self.exit_code = code
        self._done.set()

    def _birth(self):
        cfg = self.cfg
        msg = self._message(messages.BIRTH, {
            "role": cfg["role"],
            "fw": cfg["fw"] or self.hal.fw_version(),
            "app": cfg["app"] or VERSION,
            "reset": self.hal.reset_reason(),
            "health_s": cfg["health_s"],
            "clock_ok": self.hal.clock_ok(),
        })
        return messages.encode(msg)

    async def _link(self):
        client = self.client
        client.set_will(self._up[topics.STATUS], messages.encode(messages.will(self.device_id, self.boot)))
        delay = BACKOFF_MIN_S
        while True:
            try:
                await self.hal.network_up()
                await client.connect()
                await client.subscribe(topics.device_downlink_filter(self.school, self.device_id), 1)
                await client.publish(self._up[topics.STATUS], self._birth(), retain=True, qos=1)
                delay = BACKOFF_MIN_S
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
                self._online = False
                client.close()
            self.errors["mqtt_reconnects"] += 1
            await asyncio.sleep(delay * (1 + BACKOFF_JITTER * (2 * random() - 1)))
            delay = min(delay * 2, BACKOFF_MAX_S)

    def _payload(self, slot):
        data = self.buffer.read(slot)
        if data is None or not self._ev_flags[slot] & _F_HIST:
            return data
        msg = json.loads(data)
        msg["hist"] = True
        return messages.encode(msg)

    async def _sender(self):
        while True:
            try:
                await asyncio.wait_for_ms(self._wake.wait(), SENDER_TICK_MS)
            except asyncio.TimeoutError:
                pass
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
                self._ev_pid[slot] = pid
                self._ev_due[slot] = ticks_add(now, self._resend_ms)
                flags[slot] |= _F_HIST | _F_DUE

    async def _health(self):
        period = self.cfg["health_s"]
        while True:
            await asyncio.sleep(period)
            uptime = self.uptime_s()
            if not self._online:
                continue
            gc.collect()
            free, block = self.hal.heap()
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

    async def _card_reader(self):
        await self.hal.card_reader().run(self.take_tap)

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
        self.log("boot %s reset=%s pending=%d" % (self.boot, self.hal.reset_reason(), self.buffer.count()))
        tasks = []
        for name, job in (("link", self._link), ("sender", self._sender),
                          ("health", self._health), ("card_reader", self._card_reader)):
            tasks.append(asyncio.create_task(self._guard(name, job)))
        await self._done.wait()
        for task in tasks:
            task.cancel()
        # Let the cancelled tasks unwind before the files they use are closed.
        await asyncio.sleep_ms(0)
        self.client.close()
        self.buffer.close()
        return self.exit_code
