"""Flash ring buffer of events: fixed-size slots in one file, kept until the gateway acknowledges them.

Slot layout (big-endian), header then payload:

    magic 2s | state B | pad x | write number I | length H | crc32 I | payload (length bytes)

The crc covers the write number, the length and the payload, so a slot torn by a power cut in the
middle of its write fails the check and reads as free. Acknowledging rewrites only the state byte,
which the crc leaves out. A pending slot is never overwritten: when no slot is free, `append` refuses
the record and counts it in `events_dropped`.

Flash wear is spread by writing the slots in turn: `append` starts at the slot after the newest
record (found again by write number after a reboot), never at slot 0, so every slot is written once
per lap of the ring, and an acknowledgement rewrites a single byte of its slot.
"""

import struct
from binascii import crc32

MAGIC = b"CE"
PENDING = 0x50
ACKED = 0x41
HEADER = ">2sBxIHI"
HEADER_SIZE = struct.calcsize(HEADER)
DEFAULT_SLOT_SIZE = 512
DEFAULT_SLOTS = 256

_NUM_LEN = ">IH"


class RingBuffer:
    """Pending events on flash, oldest first; one instance per file."""

    def __init__(self, path, slots=DEFAULT_SLOTS, slot_size=DEFAULT_SLOT_SIZE):
        if slots < 1 or slot_size <= HEADER_SIZE:
            raise ValueError("ring buffer needs at least one slot larger than its header")
        self.path = path
        self.slots = slots
        self.slot_size = slot_size
        self.max_record = slot_size - HEADER_SIZE
        self.events_dropped = 0
        # One bit per slot, set while it holds a pending record, and their count: appending and
        # acknowledging never scan the flash, and a terminal's 1,024 slots cost 128 bytes of heap.
        # The write numbers stay on flash; only `pending()` needs them, to order what it returns.
        self._bits = bytearray((slots + 7) >> 3)
        self._count = 0
        self._next_number = 1
        self._head = 0
        self._hdr = bytearray(HEADER_SIZE)
        self._file = self._open()
        self._scan()

    def _open(self):
        size = self.slots * self.slot_size
        try:
            f = open(self.path, "r+b")
        except OSError:
            f = open(self.path, "w+b")
        f.seek(0, 2)
        have = f.tell()
        if have < size:
            # A shorter file (first boot, or a resize) is padded with zeros, which read as free slots.
            zeros = bytes(512)
            while have < size:
                n = min(512, size - have)
                f.write(zeros if n == 512 else bytes(n))
                have += n
            f.flush()
        return f

    def is_pending(self, slot):
        """Whether `slot` holds a pending record."""
        return bool(self._bits[slot >> 3] & (1 << (slot & 7)))

    def _mark(self, slot, pending):
        bit = 1 << (slot & 7)
        if pending:
            self._bits[slot >> 3] |= bit
            self._count += 1
        else:
            self._bits[slot >> 3] &= ~bit
            self._count -= 1

    def _crc(self, number, length, payload):
        return crc32(payload, crc32(struct.pack(_NUM_LEN, number, length))) & 0xFFFFFFFF

    def _read_slot(self, slot):
        """(state, number, payload) of a slot whose crc holds, else None."""
        f = self._file
        f.seek(slot * self.slot_size)
        hdr = f.read(HEADER_SIZE)
        if len(hdr) != HEADER_SIZE:
            return None
        magic, state, number, length, crc = struct.unpack(HEADER, hdr)
        if magic != MAGIC or length > self.max_record:
            return None
        payload = f.read(length)
        if len(payload) != length or self._crc(number, length, payload) != crc:
            return None
        return state, number, payload

    def _scan(self):
        newest = 0
        newest_slot = -1
        for slot in range(self.slots):
            rec = self._read_slot(slot)
            if rec is None:
                continue
            state, number, _ = rec
            if number > newest:
                newest = number
                newest_slot = slot
            if state == PENDING:
                self._mark(slot, True)
        self._next_number = newest + 1
        self._head = (newest_slot + 1) % self.slots

    def append(self, payload):
        """Store one record; return its slot, or None (counted in events_dropped) when full or too big."""
        length = len(payload)
        if length > self.max_record:
            self.events_dropped += 1
            return None
        slot = self._head
        for _ in range(self.slots):
            if not self.is_pending(slot):
                break
            slot = (slot + 1) % self.slots
        else:
            self.events_dropped += 1
            return None
        number = self._next_number
        struct.pack_into(HEADER, self._hdr, 0, MAGIC, PENDING, number, length,
                         self._crc(number, length, payload))
        f = self._file
        f.seek(slot * self.slot_size)
        f.write(self._hdr)
        f.write(payload)
        f.flush()
        self._mark(slot, True)
        self._next_number = number + 1
        self._head = (slot + 1) % self.slots
        return slot

    def ack(self, slot):
        """Mark a slot's record as delivered; its space becomes free. Unknown or free slots are ignored."""
        if not 0 <= slot < self.slots or not self.is_pending(slot):
            return False
        f = self._file
        f.seek(slot * self.slot_size + 2)
        f.write(bytes((ACKED,)))
        f.flush()
        self._mark(slot, False)
        return True

    @property
    def head(self):
        """Slot the next append tries first; the ring's oldest records follow it."""
        return self._head

    def pending(self):
        """Slots holding pending records, oldest write first, as a list: for tests and tools. A device
        walks the slots with `is_pending` instead, which allocates nothing however many are pending."""
        f = self._file
        hdr = self._hdr
        order = []
        for slot in range(self.slots):
            if self.is_pending(slot):
                # A pending slot's header passed its crc when it was scanned or written.
                f.seek(slot * self.slot_size)
                f.readinto(hdr)
                order.append((struct.unpack_from(HEADER, hdr)[2], slot))
        order.sort()
        return [slot for _, slot in order]

    def read(self, slot):
        """Payload of a pending slot, or None if the slot is free or fails its crc."""
        if not self.is_pending(slot):
            return None
        rec = self._read_slot(slot)
        return None if rec is None else rec[2]

    def count(self):
        """Number of pending records."""
        return self._count

    def close(self):
        """Close the file; the buffer is unusable afterwards."""
        self._file.close()
