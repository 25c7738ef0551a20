"""Bounds of protocol v1: the largest message, the deepest nesting, and each field's range and size.

Runs on MicroPython and CPython alike. The firmware checks them before it sends, the gateway when it
receives, and the broker refuses any payload over MAX_MESSAGE_BYTES, so a message that gets through one
side is one the other side can hold: every integer fits a signed 64-bit column in SQLite and PostgreSQL,
every number a double, every timestamp a date both databases and Python can represent.
docs/protocol.md lists them in one table.
"""

# The largest MQTT payload anything in ClassOps publishes or accepts, in bytes; also the broker's
# message_size_limit.
MAX_MESSAGE_BYTES = 4096
# Nesting of objects and arrays, the payload's own object counting as 1. A blackboard schedule inside a
# command (cmd > args > schedule > week > period) is the deepest the protocol needs: 5.
MAX_DEPTH = 8
# Keys in any one object, the payload's own included.
MAX_KEYS = 64

INT64_MIN = -(2 ** 63)
INT64_MAX = 2 ** 63 - 1
# Integers a double holds exactly: the bound of numbers that are not counters (readings, timestamps).
MAX_SAFE_INT = 2 ** 53 - 1
# Counters that only grow within one boot.
MAX_SEQ = MAX_SAFE_INT
MAX_COUNT = 2 ** 32 - 1

# Unix epoch seconds. A device whose clock was never set sends the time since its port's epoch (1970 or
# 2000 on the ESP32) plus its uptime, so `ts` may be small unless `clock_ok` is true; nothing is
# meaningful after 2100-01-01.
MIN_TS = 0
MAX_TS = 4102444800
# A set clock (`clock_ok: true`) reads no earlier than 2020-01-01.
MIN_CLOCK_OK_TS = 1577836800
# How far ahead of the gateway's own clock a device's `ts` may be.
MAX_CLOCK_AHEAD_S = 86400

# Seconds between health reports: 1 s to 1 day.
MIN_HEALTH_S = 1
MAX_HEALTH_S = 86400
MAX_UPTIME_S = MAX_COUNT
MAX_HEAP_BYTES = MAX_COUNT
# Wi-Fi RSSI in dBm as the radio reports it: a signed byte.
MIN_RSSI = -128
MAX_RSSI = 127
MAX_CONFIG_VERSION = INT64_MAX
# |reading| for telemetry values.
MAX_READING = 1e15

# String lengths, in characters.
MAX_VERSION_LEN = 32    # birth fw, app
MAX_RESET_LEN = 32      # birth reset
MAX_NAME_LEN = 32       # alarm code, command name, names of error counters, readings and faults
MAX_FAULT_LEN = 64      # what went wrong with a sensor, telemetry faults values
MAX_DETAIL_LEN = 256    # alarm and ack detail
MAX_CID_LEN = 64        # command correlation id
# Entries of the objects whose keys a device chooses.
MAX_ERRORS = 32
MAX_READINGS = 32
MAX_FAULTS = 32
# [boot, seq] pairs in one eack.
MAX_EACK_KEYS = 256

# Reasons of refusal, as protocol.messages names them.
_TOO_DEEP = "too_deep"
_OUT_OF_RANGE = "out_of_range"
_BAD_FIELD = "bad_field"
_INF = float("inf")


def too_deep(data, limit=MAX_DEPTH):
    """True if JSON text `data` (bytes or str) nests objects and arrays deeper than `limit`.

    A scan, not a parse, so that nothing recursive ever sees the text; brackets inside strings do not
    count. Text with no more brackets than `limit` cannot be too deep and is not scanned.
    """
    if isinstance(data, str):
        data = data.encode()
    if data.count(b"{") + data.count(b"[") <= limit:
        return False
    depth = 0
    in_string = escaped = False
    for c in data:
        if in_string:
            if escaped:
                escaped = False
            elif c == 92:  # backslash
                escaped = True
            elif c == 34:  # quote
                in_string = False
        elif c == 34:
            in_string = True
        elif c == 123 or c == 91:  # { [
            depth += 1
            if depth > limit:
                return True
        elif c == 125 or c == 93:  # } ]
            depth -= 1
    return False


def tree_fault(value, depth):
    """What is wrong with a value of open shape, as (reason, text), or None; `depth` containers hold it.

    For command args, config values and fields a version does not know: bounded in depth (so is this
    recursion), in keys per object, and to integers and numbers that a store can hold.
    """
    t = type(value)
    if t is dict or t is list:
        if depth >= MAX_DEPTH:
            return _TOO_DEEP, "nests deeper than %d" % MAX_DEPTH
        if t is dict and len(value) > MAX_KEYS:
            return _OUT_OF_RANGE, "has more than %d keys" % MAX_KEYS
        for item in (value.values() if t is dict else value):
            fault = tree_fault(item, depth + 1)
            if fault is not None:
                return fault
    elif t is int:
        if value < INT64_MIN or value > INT64_MAX:
            return _OUT_OF_RANGE, "holds an integer outside 64 bits"
    elif t is float:
        if value != value or value in (_INF, -_INF):
            return _BAD_FIELD, "holds a number that is not finite"
    elif value is not None and t is not str and t is not bool:
        return _BAD_FIELD, "holds a value that is not JSON"
    return None


