"""A sync record's content checked: the kinds a gateway sends, the rules each body keeps, and the parsed record."""

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from cloud.crud.commands import COMMAND_STATUS_STATES
from cloud.errors import InvalidInput
from cloud.models import (
    MAX_BIGINT,
    SyncRecordIn,
)
from protocol import limits, messages, topics

# Alarms the gateway's own edge rules raise and clear; they carry no (boot, seq) of a device. One with no
# device is about the gateway itself (e.g. store_quota).
GATEWAY_ALARM = "gateway_alarm"
# The gateway published a command to its device: {cid, state: "delivered"}; no device key either.
COMMAND_STATUS = "command_status"
# Kinds whose device may be null.
DEVICELESS_KINDS = (GATEWAY_ALARM, COMMAND_STATUS)
SYNC_KINDS = (
    messages.BIRTH,
    messages.WILL,
    messages.HEALTH,
    messages.TELEMETRY,
    messages.ATTENDANCE,
    messages.ALARM,
    messages.ACK,
    "presence",
    GATEWAY_ALARM,
    COMMAND_STATUS,
)
# Kinds that are device messages and so carry the key (device, boot, seq).
KEYED_KINDS = (
    messages.BIRTH,
    messages.HEALTH,
    messages.TELEMETRY,
    messages.ATTENDANCE,
    messages.ALARM,
    messages.ACK,
)
ENVELOPE_FIELDS = ("v", "kind", "device", "boot", "seq", "ts")
FOREIGN_DEVICE = "foreign_device"
PRESENCE_STATES = ("online", "offline")
MAX_CARD_PSEUDONYM = 128
MAX_VERSION_TEXT = 64
MAX_DETAIL = 500
MAX_READINGS = 64
HEALTH_INTEGERS = ("uptime_s", "heap_free", "heap_max_block", "rssi", "buffered")
# Integer columns of health_sample other than uptime_s are 32-bit on PostgreSQL.
MAX_INT32 = 2**31 - 1
# Year 2200: a timestamp past it comes from a broken clock, and datetime cannot hold much more anyway.
MAX_EPOCH_S = 7_258_118_400
# Kinds whose body the cloud keeps as a JSON document: a health report (the device's last_health too) and
# telemetry; a record without a device keeps its body in the ledger. Such a body is held to the bounds of
# the device message it came from, so that no record makes a large row, or a large answer each time it is
# shown. Its size is that of its compact JSON text, which a message of at most MAX_MESSAGE_BYTES never
# exceeds; its depth counts the body itself as 1, as the payload's own object is 1 in limits.MAX_DEPTH.
DOCUMENT_KINDS = frozenset({messages.HEALTH, messages.TELEMETRY})
MAX_DOCUMENT_BYTES = limits.MAX_MESSAGE_BYTES
MAX_DOCUMENT_DEPTH = limits.MAX_DEPTH


class SyncRecord(NamedTuple):
    """A sync record whose content has been checked (a tuple: made for every record, it must be cheap)."""

    gseq: int
    kind: str
    device: str | None
    boot: str | None
    seq: int | None
    ts: datetime
    body: dict[str, Any]


class RecordRejected(InvalidInput):
    """One sync record's content is invalid; `reason` names the rule it breaks."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require_text(body: dict[str, Any], field: str, kind: str, max_len: int) -> str:
    value = body.get(field)
    if value is None:
        raise RecordRejected(messages.MISSING_FIELD, f"{kind} body needs {field}")
    if not isinstance(value, str) or not 0 < len(value) <= max_len:
        raise RecordRejected(messages.BAD_FIELD, f"{kind} {field} must be text of 1 to {max_len} characters")
    return value


def _require_choice(body: dict[str, Any], field: str, kind: str, choices: Sequence[str]) -> str:
    value = body.get(field)
    if value is None:
        raise RecordRejected(messages.MISSING_FIELD, f"{kind} body needs {field}")
    if value not in choices:
        raise RecordRejected(messages.BAD_FIELD, f"{kind} {field} must be one of {', '.join(choices)}")
    return value


def _optional_text(body: dict[str, Any], field: str, kind: str, max_len: int) -> None:
    value = body.get(field)
    if value is not None and (not isinstance(value, str) or len(value) > max_len):
        raise RecordRejected(messages.BAD_FIELD, f"{kind} {field} must be text of at most {max_len} characters")


def _optional_flag(body: dict[str, Any], field: str, kind: str) -> None:
    if not isinstance(body.get(field, False), bool):
        raise RecordRejected(messages.BAD_FIELD, f"{kind} {field} must be true or false")


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _nests_deeper(value: dict[str, Any] | list[Any], levels: int) -> bool:
    """True if objects and arrays nest in `value` more than `levels` deep, `value` itself being level 1."""
    level: list[Any] = [value]
    for _ in range(levels):
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, (dict, list))
        ]
        if not level:
            return False
    return True


def _check_document(kind: str, body: dict[str, Any]) -> None:
    """Refuse a body to be stored as a document that is larger or deeper than a device message can be."""
    try:
        text: bytes | None = orjson.dumps(body)
    except orjson.JSONEncodeError:
        # What orjson does not write: an integer past 64 bits (which Python's parser reads), or nesting past
        # 255 levels.
        text = None
    too_large = f"{kind} body is more than {MAX_DOCUMENT_BYTES} bytes of JSON"
    if text is not None and len(text) > MAX_DOCUMENT_BYTES:
        raise RecordRejected(messages.TOO_LARGE, too_large)
    # Only a text with more brackets than the depth allowed (in strings or not) can nest deeper.
    if text is None or text.count(b"{") + text.count(b"[") > MAX_DOCUMENT_DEPTH:
        if _nests_deeper(body, MAX_DOCUMENT_DEPTH):
            raise RecordRejected(messages.TOO_DEEP, f"{kind} body nests deeper than {MAX_DOCUMENT_DEPTH} levels")
    if text is None:
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
        if len(text) > MAX_DOCUMENT_BYTES:
            raise RecordRejected(messages.TOO_LARGE, too_large)


def _check_body(kind: str, body: dict[str, Any]) -> None:
    if kind == messages.ATTENDANCE:
        _require_text(body, "card", kind, MAX_CARD_PSEUDONYM)
        _optional_flag(body, "hist", kind)
    elif kind == messages.BIRTH:
        _require_choice(body, "role", kind, messages.ROLES)
        _require_text(body, "fw", kind, MAX_VERSION_TEXT)
        _require_text(body, "app", kind, MAX_VERSION_TEXT)
        version = body.get("config_version")
        if version is not None and (not _is_int(version) or not 0 <= version <= MAX_BIGINT):
            raise RecordRejected(messages.BAD_FIELD, "birth config_version must be a non-negative integer")
    elif kind == "presence":
        _require_choice(body, "state", kind, PRESENCE_STATES)
    elif kind in (messages.ALARM, GATEWAY_ALARM):
        _require_text(body, "code", kind, MAX_VERSION_TEXT)
        _require_choice(body, "state", kind, messages.ALARM_STATES)
        _optional_text(body, "detail", kind, MAX_DETAIL)
        _optional_flag(body, "hist", kind)
    elif kind == COMMAND_STATUS:
        _require_text(body, "cid", kind, MAX_VERSION_TEXT)
        _require_choice(body, "state", kind, COMMAND_STATUS_STATES)
    elif kind == messages.ACK:
        _require_text(body, "cid", kind, MAX_VERSION_TEXT)
        _require_choice(body, "result", kind, messages.ACK_RESULTS)
        _optional_text(body, "detail", kind, MAX_DETAIL)
        _optional_flag(body, "hist", kind)
    elif kind == messages.HEALTH:
        for field in HEALTH_INTEGERS:
            value = body.get(field)
            if value is not None and (not _is_int(value) or abs(value) > (2**62 if field == "uptime_s" else MAX_INT32)):
                raise RecordRejected(messages.BAD_FIELD, f"health {field} must be an integer")
        if body.get("errors") is not None and not isinstance(body["errors"], dict):
            raise RecordRejected(messages.BAD_FIELD, "health errors must be an object")
    elif kind == messages.TELEMETRY:
        readings = body.get("readings")
        if not isinstance(readings, dict):
            raise RecordRejected(messages.MISSING_FIELD, "telemetry body needs readings, an object")
        if len(readings) > MAX_READINGS:
            raise RecordRejected(messages.BAD_FIELD, f"telemetry has more than {MAX_READINGS} readings")
        for name, value in readings.items():
            if not _is_number(value):
                raise RecordRejected(messages.BAD_FIELD, f"reading {name} is not a number")
        if body.get("faults") is not None and not isinstance(body["faults"], dict):
            raise RecordRejected(messages.BAD_FIELD, "telemetry faults must be an object")


_HEX = "0123456789abcdef"
_SYNC_KIND_SET = frozenset(SYNC_KINDS)
KEYED_KIND_SET = frozenset(KEYED_KINDS)
_ENVELOPE_SET = frozenset(ENVELOPE_FIELDS)
_UNKNOWN_KIND_DETAIL = f"kind must be one of {', '.join(SYNC_KINDS)}"
# The fields of a record as SyncRecordIn declares them; anything else a gateway sends is ignored.
RECORD_FIELDS = ("gseq", "kind", "device", "boot", "seq", "ts", "body")


def record_fields(record: SyncRecordIn | Mapping[str, Any]) -> Mapping[str, Any]:
    """A record's fields as a mapping: a parsed request's dict as it is, a SyncRecordIn read out."""
    if type(record) is dict or isinstance(record, Mapping):
        return record
    return {name: getattr(record, name) for name in RECORD_FIELDS}


def _parse_tap(fields: Mapping[str, Any]) -> SyncRecord | None:
    """An attendance record that passes every check of parse_sync_record, parsed; None for anything
    else, which parse_sync_record then judges (and words the rejection of) itself.

    Taps are most of what gateways send in the morning; these are the same checks, made without calls."""
    get = fields.get
    device, boot, seq, ts, body = get("device"), get("boot"), get("seq"), get("ts"), get("body")
    if not (
        get("kind") == messages.ATTENDANCE
        and type(device) is str
        and len(device) == 18
        and device.startswith(topics.DEVICE_PREFIX)
        and not device[6:].strip(_HEX)
        and type(boot) is str
        and len(boot) == 8
        and not boot.strip(_HEX)
        and type(seq) is int
        and 0 <= seq <= MAX_BIGINT
        and (type(ts) is float or type(ts) is int)
        and 0 <= ts <= MAX_EPOCH_S
        and type(body) is dict
        and _ENVELOPE_SET.isdisjoint(body)
    ):
        return None
    card = body.get("card")
    if not (type(card) is str and 0 < len(card) <= MAX_CARD_PSEUDONYM and type(body.get("hist", False)) is bool):
        return None
    return SyncRecord(fields["gseq"], messages.ATTENDANCE, device, boot, seq, datetime.fromtimestamp(ts, UTC), body)


def parse_sync_record(record: SyncRecordIn | Mapping[str, Any]) -> SyncRecord:
    """Check one sync record's content; raise RecordRejected if it is invalid.

    `record` is a SyncRecordIn or the same fields as a dict (a missing field counts as null); its gseq
    has been checked already."""
    fields = record_fields(record)
    get = fields.get
    kind = get("kind")
    if not isinstance(kind, str) or kind not in _SYNC_KIND_SET:
        raise RecordRejected(messages.UNKNOWN_KIND, _UNKNOWN_KIND_DETAIL)
    device = get("device")
    if device is None:
        if kind not in DEVICELESS_KINDS:
            raise RecordRejected(messages.MISSING_FIELD, "record needs device")
    elif not topics.is_device_id(device):
        raise RecordRejected(messages.BAD_FIELD, "device is not esp32-<12 lowercase hex>")
    keyed = kind in KEYED_KIND_SET
    boot = get("boot")
    if boot is None:
        if keyed or kind == messages.WILL:
            raise RecordRejected(messages.MISSING_FIELD, f"{kind} record needs boot")
    elif not messages.is_boot_id(boot):
        raise RecordRejected(messages.BAD_FIELD, "boot is not 8 lowercase hex digits")
    seq = get("seq")
    if seq is None:
        if keyed:
            raise RecordRejected(messages.MISSING_FIELD, f"{kind} record needs seq")
    elif not _is_int(seq) or not 0 <= seq <= MAX_BIGINT:
        raise RecordRejected(messages.BAD_FIELD, "seq must be an integer from 0 to 2**63-1")
    ts = get("ts")
    if ts is None:
        raise RecordRejected(messages.MISSING_FIELD, "record needs ts")
    if not isinstance(ts, (int, float)) or isinstance(ts, bool) or not math.isfinite(ts):
        raise RecordRejected(messages.BAD_FIELD, "ts must be a number of epoch seconds")
    if not 0 <= ts <= MAX_EPOCH_S:
        raise RecordRejected(messages.BAD_FIELD, "ts is out of range")
    body = get("body")
    if body is None:
        body = {}
    elif not isinstance(body, dict):
        raise RecordRejected(messages.BAD_FIELD, "body must be an object")
    if kind in DOCUMENT_KINDS or device is None:
        _check_document(kind, body)
    _check_body(kind, body)
    if not _ENVELOPE_SET.isdisjoint(body):
        body = {name: value for name, value in body.items() if name not in _ENVELOPE_SET}
    return SyncRecord(
        gseq=fields["gseq"],
        kind=kind,
        device=device,
        boot=boot,
        seq=seq,
        ts=datetime.fromtimestamp(ts, UTC),
        body=body,
    )


def gateway_alarm_boot(gateway_id: str) -> str:
    """The boot id under which a gateway's own alarms are keyed: never a device's (those are all hex),
    and different for each gateway, so that a replaced gateway's sequence numbers cannot collide."""
    return "g" + hashlib.sha256(gateway_id.encode()).hexdigest()[:7]
