"""Ring buffer checks on MicroPython: `micropython check_ringbuf.py WORKDIR`; exit 0 when all pass."""

import os
import sys

from app.ringbuf import HEADER_SIZE, RingBuffer

WORK = sys.argv[1]
SLOT = 64


def fresh(name, slots=4):
    path = WORK + "/" + name
    try:
        os.remove(path)
    except OSError:
        pass
    return RingBuffer(path, slots, SLOT)


def records(rb):
    return [rb.read(s) for s in rb.pending()]


def check_append_read_ack_in_order():
    rb = fresh("order")
    slots = [rb.append(b"e%d" % i) for i in range(3)]
    assert slots == [0, 1, 2], slots
    assert records(rb) == [b"e0", b"e1", b"e2"]
    assert rb.ack(slots[1]) and not rb.ack(slots[1])
    assert records(rb) == [b"e0", b"e2"] and rb.count() == 2
    assert rb.read(slots[1]) is None


def check_wrap_around_keeps_write_order():
    rb = fresh("wrap")
    for i in range(4):
        rb.append(b"a%d" % i)
    rb.ack(0)
    rb.ack(1)
    assert rb.append(b"b0") == 0 and rb.append(b"b1") == 1
    assert records(rb) == [b"a2", b"a3", b"b0", b"b1"]
    for s in rb.pending():
        rb.ack(s)
    for round_no in range(10):
        slot = rb.append(b"r%d" % round_no)
        assert slot == (2 + round_no) % 4, (round_no, slot)
        rb.ack(slot)
    assert rb.count() == 0


def check_full_buffer_never_overwrites_pending():
    rb = fresh("full")
    for i in range(4):
        assert rb.append(b"p%d" % i) is not None
    assert rb.append(b"lost") is None and rb.events_dropped == 1
    assert rb.append(b"lost") is None and rb.events_dropped == 2
    assert records(rb) == [b"p0", b"p1", b"p2", b"p3"]
    rb.ack(2)
    # The free slot is found past the still-pending oldest ones.
    assert rb.append(b"p4") == 2
    assert records(rb) == [b"p0", b"p1", b"p3", b"p4"]
    too_big = bytes(SLOT - HEADER_SIZE + 1)
    rb.ack(0)
    assert rb.append(too_big) is None and rb.events_dropped == 3
    assert rb.append(bytes(SLOT - HEADER_SIZE)) == 0


def check_reboot_recovers_pending_and_numbering():
    rb = fresh("reboot")
    for i in range(4):
        rb.append(b"x%d" % i)
    rb.ack(0)
    rb.ack(1)
    rb.append(b"x4")
    rb.close()
    rb = RingBuffer(WORK + "/reboot", 4, SLOT)
    assert records(rb) == [b"x2", b"x3", b"x4"], records(rb)
    assert rb.append(b"x5") == 1
    assert records(rb) == [b"x2", b"x3", b"x4", b"x5"]
    rb.close()
    rb = RingBuffer(WORK + "/reboot", 4, SLOT)
    assert records(rb) == [b"x2", b"x3", b"x4", b"x5"]


def _patch(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def check_torn_slot_is_ignored():
    rb = fresh("torn")
    rb.append(b"keep-0")
    rb.append(b"torn-payload")
    rb.append(b"keep-2")
    rb.close()
    path = WORK + "/torn"
    # Power cut mid-write: the header landed, the payload only partly.
    _patch(path, SLOT + HEADER_SIZE + 3, b"\x00\x00")
    # And a header torn inside the write number.
    _patch(path, 2 * SLOT + 5, b"\xff")
    rb = RingBuffer(path, 4, SLOT)
    assert records(rb) == [b"keep-0"], records(rb)
    assert rb.append(b"next") == 1
    assert records(rb) == [b"keep-0", b"next"]


def check_ack_writes_only_the_state_byte():
    rb = fresh("state")
    rb.append(b"abc")
    rb.close()
    with open(WORK + "/state", "rb") as f:
        before = f.read()
    rb = RingBuffer(WORK + "/state", 4, SLOT)
    rb.ack(0)
    rb.close()
    with open(WORK + "/state", "rb") as f:
        after = f.read()
    diff = [i for i in range(len(before)) if before[i] != after[i]]
    assert diff == [2], diff
    rb = RingBuffer(WORK + "/state", 4, SLOT)
    assert rb.count() == 0 and rb.append(b"d") == 1


def main():
    failed = 0
    for name in sorted(globals()):
        if name.startswith("check_"):
            try:
                globals()[name]()
                print("ok", name)
            except Exception as exc:
                failed += 1
                print("FAIL", name)
                sys.print_exception(exc)
    sys.exit(1 if failed else 0)


main()
