"""Payloads of protocol v1: message kinds, encode/decode and validation.

Runs on MicroPython and CPython alike. A payload is one compact JSON object. Every message a device
sends carries the key (device, boot, seq): `boot` changes at every boot and `seq` counts up within a
boot, so the key names one message for ever and is what the gateway and cloud de-duplicate on.
"""

import json

from protocol import limits, topics
from protocol.limits import MAX_MESSAGE_BYTES

PROTOCOL_VERSION = 1
MAX_PAYLOAD = MAX_MESSAGE_BYTES

# Message kinds. `birth` and `will` share the retained status topic.
BIRTH = "birth"
WILL = "will"
HEALTH = topics.HEALTH
TELEMETRY = topics.TELEMETRY
ATTENDANCE = topics.ATTENDANCE
ALARM = topics.ALARM
ACK = topics.ACK
COMMAND = topics.COMMAND
CONFIG = topics.CONFIG
EVENT_ACK = topics.EVENT_ACK

# Events are QoS 1, kept by the device until the gateway's end-to-end ack, never dropped.
EVENT_KINDS = (ATTENDANCE, ALARM, ACK)
# Samples are QoS 0 and may be down-sampled under pressure.
SAMPLE_KINDS = (HEALTH, TELEMETRY)
STATE_KINDS = (BIRTH, WILL)
UP_KINDS = STATE_KINDS + SAMPLE_KINDS + EVENT_KINDS
DOWN_KINDS = (COMMAND, CONFIG, EVENT_ACK)

ROLES = ("sensor", "attendance", "blackboard")
ALARM_STATES = ("raise", "clear")
ACK_RESULTS = ("ok", "error", "expired", "rejected")

# Command names the firmware carries out (docs/protocol.md, "Commands", lists their args). A device
# answers any other name with result `rejected`; so does a role that a command is not for.
PING = "ping"
REBOOT = "reboot"
SET_CONFIG = "set_config"
OTA = "ota"
POWER_ON = "power_on"
POWER_OFF = "power_off"
SET_INPUT = "set_input"
SET_SCHEDULE = "set_schedule"
COMMAND_NAMES = (PING, REBOOT, SET_CONFIG, OTA, POWER_ON, POWER_OFF, SET_INPUT, SET_SCHEDULE)
# Commands only a blackboard controller accepts.
BLACKBOARD_COMMANDS = (POWER_ON, POWER_OFF, SET_INPUT, SET_SCHEDULE)

# Alarm codes devices raise and clear themselves (docs/protocol.md, "Alarm codes").
SENSOR_FAULT = "sensor_fault"
READER_FAULT = "reader_fault"
DISPLAY_NO_ANSWER = "display_no_answer"
DISPLAY_POWER_FAULT = "display_power_fault"
DISPLAY_POWER_MISMATCH = "display_power_mismatch"
CONFIG_INVALID = "config_invalid"
CONFIG_REJECTED = "config_rejected"
SAFE_MODE = "safe_mode"
ALARM_CODES = (
    SENSOR_FAULT, READER_FAULT, DISPLAY_NO_ANSWER, DISPLAY_POWER_FAULT, DISPLAY_POWER_MISMATCH,
    CONFIG_INVALID, CONFIG_REJECTED, SAFE_MODE,
)

# Reasons a message is refused; the gateway counts rejections by these names.
BAD_JSON = "bad_json"
BAD_TOPIC = "bad_topic"
TOO_LARGE = "too_large"
BAD_VERSION = "bad_version"
UNKNOWN_KIND = "unknown_kind"
MISSING_FIELD = "missing_field"
BAD_FIELD = "bad_field"
DEVICE_MISMATCH = "device_mismatch"
KIND_MISMATCH = "kind_mismatch"
OUT_OF_RANGE = "out_of_range"
TOO_DEEP = "too_deep"
REASONS = (
    BAD_JSON, BAD_TOPIC, TOO_LARGE, BAD_VERSION, UNKNOWN_KIND,
    MISSING_FIELD, BAD_FIELD, DEVICE_MISMATCH, KIND_MISMATCH, OUT_OF_RANGE, TOO_DEEP,
)

# Field types: 's' string, 'i' integer, 'n' number, 'b' boolean, 'd' object, 'l' array.
# Each entry: (field, type, required, low, high). For numbers low and high bound the value, for strings,
# objects and arrays its length; None where the value has an exact format or is one of a list (checked
# below), and for booleans.
_L = limits
_ENVELOPE = (
    ("device", "s", True, None, None), ("boot", "s", True, None, None), ("seq", "i", True, 0, _L.MAX_SEQ),
    ("ts", "n", True, _L.MIN_TS, _L.MAX_TS),
)
_HIST = ("hist", "b", False, None, None)
_CLOCK_OK = ("clock_ok", "b", False, None, None)
_DETAIL = ("detail", "s", False, 0, _L.MAX_DETAIL_LEN)
_CID = ("cid", "s", True, 1, _L.MAX_CID_LEN)
_SCHEMAS = {
    BIRTH: _ENVELOPE + (
        ("role", "s", True, None, None), ("fw", "s", True, 0, _L.MAX_VERSION_LEN),
        ("app", "s", True, 0, _L.MAX_VERSION_LEN), ("reset", "s", True, 0, _L.MAX_RESET_LEN),
        ("health_s", "i", True, _L.MIN_HEALTH_S, _L.MAX_HEALTH_S), _CLOCK_OK,
        ("config_version", "i", False, 0, _L.MAX_CONFIG_VERSION), ("safe_mode", "b", False, None, None),
    ),
    WILL: _ENVELOPE[:2],
    HEALTH: _ENVELOPE + (
        ("uptime_s", "i", True, 0, _L.MAX_UPTIME_S), ("heap_free", "i", True, 0, _L.MAX_HEAP_BYTES),
        ("heap_max_block", "i", True, 0, _L.MAX_HEAP_BYTES), ("rssi", "i", False, _L.MIN_RSSI, _L.MAX_RSSI),
        ("errors", "d", True, 0, _L.MAX_ERRORS), ("buffered", "i", True, 0, _L.MAX_COUNT), _CLOCK_OK,
    ),
    TELEMETRY: _ENVELOPE + (
        ("readings", "d", True, 0, _L.MAX_READINGS), ("faults", "d", False, 0, _L.MAX_FAULTS),
    ),
    ATTENDANCE: _ENVELOPE + (("card", "s", True, None, None), _HIST, _CLOCK_OK),
    ALARM: _ENVELOPE + (
        ("code", "s", True, 1, _L.MAX_NAME_LEN), ("state", "s", True, None, None), _DETAIL, _HIST,
    ),
    ACK: _ENVELOPE + (_CID, ("result", "s", True, None, None), _DETAIL, _HIST),
    COMMAND: (
        _CID, ("name", "s", True, 1, _L.MAX_NAME_LEN), ("args", "d", False, 0, _L.MAX_KEYS),
        ("exp", "n", True, _L.MIN_TS, _L.MAX_TS),
    ),
    CONFIG: (("version", "i", True, 0, _L.MAX_CONFIG_VERSION), ("values", "d", True, 0, _L.MAX_KEYS)),
    EVENT_ACK: (("keys", "l", True, 0, _L.MAX_EACK_KEYS),),
}

_HEX = "0123456789abcdef"
_INF = float("inf")


class ProtocolError(ValueError):
    """A payload that breaks protocol v1; `reason` is one of REASONS."""

    def __init__(self, reason, detail):
        super().__init__(reason + ": " + detail)
        self.reason = reason
        self.detail = detail


def is_boot_id(value):
    """True for 8 lowercase hex digits."""
    # strip() with a character set runs in C on both interpreters: nothing left means all hex.
    return isinstance(value, str) and len(value) == 8 and not value.strip(_HEX)


def is_card_uid(value):
    """True for a card UID as a reader gives it: 4, 7 or 10 bytes in lowercase hex."""
    return isinstance(value, str) and len(value) in (8, 14, 20) and not value.strip(_HEX)


_PLAIN_TYPES = {"s": str, "b": bool, "d": dict, "l": list}


def _type_ok(value, code):
    t = type(value)
    if code == "i" or code == "n":
        if t is int:
            return True
        if t is float:
            # NaN is not equal to itself; neither NaN nor the infinities are JSON.
            return code == "n" and value == value and value not in (_INF, -_INF)
        # Subclasses, as code (not JSON) may build them; bool is an int subclass but never a number here.
        return isinstance(value, int) and not isinstance(value, bool)
    plain = _PLAIN_TYPES[code]
    return t is plain or isinstance(value, plain)


# The one type that passes each field type code without a closer look (floats need one: NaN, infinity).
_FAST_TYPES = {"s": str, "b": bool, "i": int, "n": int, "d": dict, "l": list}
# Each kind's schema with that type added to each entry, and its field names, for the value checks that
# apply only where a field exists.
# `sized`: whether an entry's bounds are on the value's length (strings, objects, arrays) or the value.
_CHECKS = {}
_FIELDS = {}
for _kind in _SCHEMAS:
    _CHECKS[_kind] = tuple((e[0], e[1], _FAST_TYPES[e[1]], e[2], e[3], e[4], e[1] in "sdl")
                           for e in _SCHEMAS[_kind])
    _FIELDS[_kind] = set(e[0] for e in _SCHEMAS[_kind])
# The payload's own fields: v and kind beside the schema's.
_OWN = 2
_ABSENT = object()


def _check_tree(value, depth, what):
    fault = limits.tree_fault(value, depth)
    if fault is not None:
        raise ProtocolError(fault[0], what + " " + fault[1])


def _check_entries(obj, what, code, low, high):
    # An object of named values: error counts, readings, faults. The common types skip _type_ok; a float
    # that fails the range is looked at again, as NaN and the infinities are the wrong type, not range.
    fast = _FAST_TYPES[code]
    for name in obj:
        value = obj[name]
        if type(name) is not str or not 0 < len(name) <= limits.MAX_NAME_LEN:
            raise ProtocolError(OUT_OF_RANGE, "%s names are 1 to %d characters" % (what, limits.MAX_NAME_LEN))
        t = type(value)
        if t is not fast and not (t is float and code == "n") and not _type_ok(value, code):
            raise ProtocolError(BAD_FIELD, "%s %s has the wrong type" % (what, name))
        if not low <= (len(value) if code == "s" else value) <= high:
            if not _type_ok(value, code):
                raise ProtocolError(BAD_FIELD, "%s %s has the wrong type" % (what, name))
            raise ProtocolError(OUT_OF_RANGE, "%s %s is not within %s to %s" % (what, name, low, high))


def _check_values(kind, msg):
    # Only fields of this kind's schema are checked: their types are known to be right by now.
    names = _FIELDS[kind]
    if "device" in names and not topics.is_device_id(msg["device"]):
        raise ProtocolError(BAD_FIELD, "device is not esp32-<12 hex>")
    if "boot" in names and not is_boot_id(msg["boot"]):
        raise ProtocolError(BAD_FIELD, "boot is not 8 hex digits")
    if "clock_ok" in names and msg.get("clock_ok") is True and msg["ts"] < limits.MIN_CLOCK_OK_TS:
        raise ProtocolError(OUT_OF_RANGE, "ts before %d from a set clock" % limits.MIN_CLOCK_OK_TS)
    if kind == BIRTH and msg["role"] not in ROLES:
        raise ProtocolError(BAD_FIELD, "role must be one of " + ", ".join(ROLES))
    elif kind == HEALTH:
        _check_entries(msg["errors"], "error count", "i", 0, limits.MAX_COUNT)
    elif kind == ATTENDANCE and not is_card_uid(msg["card"]):
        raise ProtocolError(BAD_FIELD, "card is not a 4, 7 or 10 byte UID in lowercase hex")
    elif kind == ALARM and msg["state"] not in ALARM_STATES:
        raise ProtocolError(BAD_FIELD, "alarm state must be raise or clear")
    elif kind == ACK and msg["result"] not in ACK_RESULTS:
        raise ProtocolError(BAD_FIELD, "ack result must be one of " + ", ".join(ACK_RESULTS))
    elif kind == TELEMETRY:
        _check_entries(msg["readings"], "reading", "n", -limits.MAX_READING, limits.MAX_READING)
        if "faults" in msg:
            _check_entries(msg["faults"], "fault", "s", 0, limits.MAX_FAULT_LEN)
    elif kind == COMMAND and "args" in msg:
        _check_tree(msg["args"], 1, "args")
    elif kind == CONFIG:
        _check_tree(msg["values"], 1, "values")
    elif kind == EVENT_ACK:
        for key in msg["keys"]:
            if (not isinstance(key, list) or len(key) != 2 or not is_boot_id(key[0])
                    or not _type_ok(key[1], "i")):
                raise ProtocolError(BAD_FIELD, "eack keys must be [boot, seq] pairs")
            if not 0 <= key[1] <= limits.MAX_SEQ:
                raise ProtocolError(OUT_OF_RANGE, "eack seq is not 0 to %d" % limits.MAX_SEQ)


def validate(msg, leaf=None, now=None):
    """Check a decoded message against its kind's schema and bounds; return it or raise ProtocolError.

    `leaf` is the topic's last level, when the message came from a topic: the kind must fit it. `now`, a
    receiver's trusted clock, refuses a `ts` ahead of it by more than limits.MAX_CLOCK_AHEAD_S.
    """
    if not isinstance(msg, dict):
        raise ProtocolError(BAD_JSON, "payload is not a JSON object")
    version = msg.get("v")
    if not _type_ok(version, "i") or version != PROTOCOL_VERSION:
        raise ProtocolError(BAD_VERSION, "v must be %d" % PROTOCOL_VERSION)
    kind = msg.get("kind")
    schema = _CHECKS.get(kind) if isinstance(kind, str) else None
    if schema is None:
        raise ProtocolError(UNKNOWN_KIND, "unknown kind %r" % (kind,))
    if leaf is not None:
        expected = topics.STATUS if kind in STATE_KINDS else kind
        if leaf != expected:
            raise ProtocolError(KIND_MISMATCH, "kind %s on topic leaf %s" % (kind, leaf))
    present = _OWN
    get = msg.get
    for field, code, fast_type, required, low, high, sized in schema:
        value = get(field, _ABSENT)
        if value is not _ABSENT:
            present += 1
            if type(value) is not fast_type and not _type_ok(value, code):
                raise ProtocolError(BAD_FIELD, "%s.%s has the wrong type" % (kind, field))
            if high is not None and not low <= (len(value) if sized else value) <= high:
                raise ProtocolError(OUT_OF_RANGE, "%s.%s is not within %s to %s" % (kind, field, low, high))
        elif required:
            raise ProtocolError(MISSING_FIELD, "%s needs field %s" % (kind, field))
    if len(msg) != present:
        # Fields this version does not know pass through, but within the same bounds as the rest.
        if len(msg) > limits.MAX_KEYS:
            raise ProtocolError(OUT_OF_RANGE, "more than %d fields" % limits.MAX_KEYS)
        _check_tree(msg, 0, kind)
    _check_values(kind, msg)
    if now is not None and "ts" in _FIELDS[kind] and msg["ts"] > now + limits.MAX_CLOCK_AHEAD_S:
        raise ProtocolError(OUT_OF_RANGE, "ts %s is more than %d s ahead of the receiver's clock"
                            % (msg["ts"], limits.MAX_CLOCK_AHEAD_S))
    return msg


def decode(payload, leaf=None, loads=json.loads, now=None):
    """Bytes from the wire to a validated message dict; raise ProtocolError on anything wrong.

    `loads` lets a gateway use a faster JSON parser; it must raise ValueError on bad input.
    """
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(TOO_LARGE, "payload of %d bytes exceeds %d" % (len(payload), MAX_PAYLOAD))
    # Counting brackets is cheap; only a payload with more of them than the depth allows is scanned.
    try:
        brackets = payload.count(b"{") + payload.count(b"[")
    except TypeError:
        brackets = payload.count("{") + payload.count("[")
    if brackets > limits.MAX_DEPTH and limits.too_deep(payload):
        raise ProtocolError(TOO_DEEP, "payload nests deeper than %d" % limits.MAX_DEPTH)
    try:
        msg = loads(payload)
    except (ValueError, UnicodeError, RuntimeError) as exc:
        # RuntimeError: nesting deep enough to exhaust the parser's recursion limit.
        raise ProtocolError(BAD_JSON, "payload is not JSON (%s)" % exc)
    return validate(msg, leaf, now)


def decode_uplink(topic, payload, loads=json.loads, parse=topics.parse, now=None):
    """Parse a device-to-gateway message: (school, device, msg), checked against its topic.

    `parse` may be a caching wrapper of topics.parse, for a gateway that sees the same topics all day.
    """
    try:
        school, direction, device, leaf = parse(topic)
    except topics.TopicError as exc:
        raise ProtocolError(BAD_TOPIC, str(exc))
    if direction != topics.UP:
        raise ProtocolError(BAD_TOPIC, "not a device-to-gateway topic")
    msg = decode(payload, leaf, loads, now)
    if msg["device"] != device:
        raise ProtocolError(DEVICE_MISMATCH, "payload device %s on topic of %s" % (msg["device"], device))
    return school, device, msg


def encode(msg):
    """A message dict to compact JSON bytes, checked first so that nothing invalid leaves."""
    validate(msg)
    data = json.dumps(msg, separators=(",", ":")).encode()
    if len(data) > MAX_PAYLOAD:
        raise ProtocolError(TOO_LARGE, "message of %d bytes exceeds %d" % (len(data), MAX_PAYLOAD))
    return data


def message(kind, device, boot, seq, ts, fields):
    """Build a device message of `kind` with the key (device, boot, seq) and its own fields."""
    msg = {"v": PROTOCOL_VERSION, "kind": kind, "device": device, "boot": boot, "seq": seq, "ts": ts}
    for name in fields:
        msg[name] = fields[name]
    return msg


def will(device, boot):
    """The retained last will a device leaves with the broker at connect."""
    return {"v": PROTOCOL_VERSION, "kind": WILL, "device": device, "boot": boot}


def command(cid, name, args, exp):
    """A command for a device, with correlation id `cid` and expiry `exp` (epoch seconds)."""
    return {"v": PROTOCOL_VERSION, "kind": COMMAND, "cid": cid, "name": name, "args": args, "exp": exp}


def config(version, values):
    """A device's desired configuration at `version`."""
    return {"v": PROTOCOL_VERSION, "kind": CONFIG, "version": version, "values": values}


def event_ack(keys):
    """The gateway's end-to-end ack of committed events, keys as [boot, seq] pairs."""
    return {"v": PROTOCOL_VERSION, "kind": EVENT_ACK, "keys": keys}


def key(msg):
    """The de-duplication key (device, boot, seq) of a device message."""
    return (msg["device"], msg["boot"], msg["seq"])


def is_event(kind):
    """True for kinds that are never dropped and are acknowledged end to end."""
    return kind in EVENT_KINDS


def leaf_of(kind):
    """Topic leaf on which messages of `kind` travel."""
    return topics.STATUS if kind in STATE_KINDS else kind
