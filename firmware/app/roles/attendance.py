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
# How often the reader chip is checked when no card comes.
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

    def tasks(self):
        return [("reader", self._loop)]

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

    async def _loop(self):
        reader = self.reader
        ready = False
        while True:
            if not ready:
                try:
                    reader.init()
                    ready = True
                    self._set_fault(None)
                except ReaderError as exc:
                    self._set_fault(str(exc))
            try:
                await asyncio.wait_for_ms(self.hal.card_wait(), CHECK_MS)
            except asyncio.TimeoutError:
                try:
                    reader.version()
                except ReaderError as exc:
                    ready = False
                    self._set_fault(str(exc))
                continue
            uid = reader.read_uid() if ready else None
            if uid is None:
                self.hal.card_done(None, "ignored no_card")
                if ready:
                    try:
                        reader.version()
                    except ReaderError as exc:
                        ready = False
                        self._set_fault(str(exc))
                continue
            result = self.take_tap(hexlify(uid).decode())
            self.hal.feedback("ok" if result == "ok" else ("dup" if result == "ignored debounce" else "error"))
            self.hal.card_done(uid, result)
