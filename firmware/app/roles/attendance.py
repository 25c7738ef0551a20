"""Attendance terminal: card taps from the RC522 reader become attendance events on flash.

The same card within `debounce_s` counts once. The LED and buzzer tell the student at once: ok (taken),
dup (already counted) or error (refused). A reader that stops answering raises reader_fault.
"""

import asyncio
from array import array
from binascii import hexlify
from time import ticks_diff, ticks_ms

from app.drivers.rc522 import ReaderError
from protocol import messages

# Cards remembered for debouncing: a reader sees far fewer distinct cards than this within debounce_s.
DEBOUNCE_CARDS = 16
# How often the reader chip is checked (and, while it is faulty, initialised again).
CHECK_MS = 10000


class AttendanceTerminal:
    """The attendance role."""

    def __init__(self, device):
        self.device = device
        self.hal = device.hal
        self.reader = device.hal.rc522()
        self._card_uid = [None] * DEBOUNCE_CARDS
        self._card_at = array("i", bytes(4 * DEBOUNCE_CARDS))
        self._card_next = 0
        self._fault = None
        self._ready = False

    def tasks(self):
        # Cards and the periodic check of the chip are separate tasks, each sleeping until its own
        # wake-up: a card, or the next check. (A timed wait for a card costs helper tasks each time.)
        return [("reader", self._loop), ("reader_check", self._check_loop)]

    async def command(self, name, args):
        return None

    async def selftest(self):
        try:
            self.reader.version()
        except ReaderError as exc:
            return str(exc)
        return None

    def take_tap(self, uid):
        """A card tap: "ok" once the event is on flash, else "ignored <reason>"."""
        uid = uid.lower()
        if not messages.is_card_uid(uid):
            return "ignored bad_uid"
        now = ticks_ms()
        debounce = int(self.device.cfg["debounce_s"] * 1000)
        for i in range(DEBOUNCE_CARDS):
            if self._card_uid[i] == uid and ticks_diff(now, self._card_at[i]) < debounce:
                return "ignored debounce"
        fields = {"card": uid, "hist": False, "clock_ok": self.device.hal.clock_ok()}
        if self.device.add_event(messages.ATTENDANCE, fields) is None:
            return "ignored full"
        i = self._card_next
        self._card_uid[i] = uid
        self._card_at[i] = now
        self._card_next = (i + 1) % DEBOUNCE_CARDS
        return "ok"

    def _set_fault(self, detail):
        if detail == self._fault:
            return
        self._fault = detail
        if detail is None:
            self.device.alarm(messages.READER_FAULT, "clear")
        else:
            self.device.alarm(messages.READER_FAULT, "raise", detail)

    def _init_reader(self):
        try:
            self.reader.init()
            self._ready = True
            self._set_fault(None)
        except ReaderError as exc:
            self._set_fault(str(exc))

    def _check_reader(self):
        try:
            self.reader.version()
        except ReaderError as exc:
            self._ready = False
            self._set_fault(str(exc))

    async def _check_loop(self):
        self._init_reader()
        while True:
            await asyncio.sleep_ms(CHECK_MS)
            if self._ready:
                self._check_reader()
            else:
                self._init_reader()

    async def _loop(self):
        reader = self.reader
        while True:
            await self.hal.card_wait()
            if not self._ready:
                self._init_reader()
            uid = reader.read_uid() if self._ready else None
            if uid is None:
                self.hal.card_done(None, "ignored no_card")
                if self._ready:
                    self._check_reader()
                continue
            result = self.take_tap(hexlify(uid).decode())
            self.hal.feedback("ok" if result == "ok" else ("dup" if result == "ignored debounce" else "error"))
            self.hal.card_done(uid, result)
