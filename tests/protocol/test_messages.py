"""Payloads of protocol v1: round trips, every rejection reason, and the examples in docs/protocol.md."""

import copy
import json
import re
from pathlib import Path

import pytest

from protocol import limits, messages, topics
from protocol.messages import ProtocolError

SCHOOL = "lyq017"
DEVICE = "esp32-246f28a1b2c3"
BOOT = "5e3a91c4"
TS = 1732491733
DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

EXAMPLES = {
    messages.BIRTH: messages.message(
        messages.BIRTH, DEVICE, BOOT, 0, TS,
        {"role": "attendance", "fw": "1.24.1", "app": "0.3.0", "reset": "power_on", "health_s": 60,
         "clock_ok": True, "config_version": 7},
    ),
    messages.WILL: messages.will(DEVICE, BOOT),
    messages.HEALTH: messages.message(
        messages.HEALTH, DEVICE, BOOT, 41, TS + 0.25,
        {"uptime_s": 1200, "heap_free": 84512, "heap_max_block": 61440, "rssi": -67,
         "errors": {"mqtt_reconnect": 1}, "buffered": 2, "clock_ok": True},
    ),
    messages.TELEMETRY: messages.message(
        messages.TELEMETRY, DEVICE, BOOT, 42, TS,
        {"readings": {"temp_c": 18.6, "rh_pct": 54.2, "co2_ppm": 812, "noise_db": -3.5},
         "faults": {"pm25": "i2c_timeout"}},
    ),
    messages.ATTENDANCE: messages.message(
        messages.ATTENDANCE, DEVICE, BOOT, 17, TS, {"card": "04a1b2c3d4e580"},
    ),
    messages.ALARM: messages.message(
        messages.ALARM, DEVICE, BOOT, 43, TS, {"code": "reader_fault", "state": "raise", "detail": "no SPI"},
    ),
    messages.ACK: messages.message(
        messages.ACK, DEVICE, BOOT, 44, TS, {"cid": "c-20241125-000381", "result": "ok"},
    ),
    messages.COMMAND: messages.command("c-20241125-000381", "reboot", {"delay_s": 5}, TS + 1800),
    messages.CONFIG: messages.config(8, {"health_s": 60, "name": "班级 3-2"}),
    messages.EVENT_ACK: messages.event_ack([[BOOT, 17], ["00000001", 0]]),
}

ALL_KINDS = messages.UP_KINDS + messages.DOWN_KINDS

# What a message of each kind cannot do without, beside v and kind.
REQUIRED = {
    messages.BIRTH: ("device", "boot", "seq", "ts", "role", "fw", "app", "reset", "health_s"),
    messages.WILL: ("device", "boot"),
    messages.HEALTH: ("device", "boot", "seq", "ts", "uptime_s", "heap_free", "heap_max_block", "errors",
                      "buffered"),
    messages.TELEMETRY: ("device", "boot", "seq", "ts", "readings"),
    messages.ATTENDANCE: ("device", "boot", "seq", "ts", "card"),
    messages.ALARM: ("device", "boot", "seq", "ts", "code", "state"),
    messages.ACK: ("device", "boot", "seq", "ts", "cid", "result"),
    messages.COMMAND: ("cid", "name", "exp"),
    messages.CONFIG: ("version", "values"),
    messages.EVENT_ACK: ("keys",),
}

OPTIONAL = {
    messages.BIRTH: ("clock_ok", "config_version"),
    messages.WILL: (),
    messages.HEALTH: ("rssi", "clock_ok"),
    messages.TELEMETRY: ("faults",),
    messages.ATTENDANCE: ("hist", "clock_ok"),
    messages.ALARM: ("detail", "hist"),
    messages.ACK: ("detail", "hist"),
    messages.COMMAND: ("args",),
    messages.CONFIG: (),
    messages.EVENT_ACK: (),
}


DROP = object()


def example(base, /, **changes):
    """A fresh valid message of kind `base`, with fields replaced (or removed when given as DROP)."""
    msg = copy.deepcopy(EXAMPLES[base])
    for name, value in changes.items():
        if value is DROP:
            del msg[name]
        else:
            msg[name] = value
    return msg


def raw(msg):
    """JSON bytes without the validation encode() does, as a foreign or buggy publisher sends them."""
    return json.dumps(msg, separators=(",", ":")).encode()


def topic_for(kind, device=DEVICE):
    leaf = messages.leaf_of(kind)
    if kind in messages.DOWN_KINDS:
        return topics.down(SCHOOL, device, leaf)
    return topics.up(SCHOOL, device, leaf)


def reason_of(call, *args):
    with pytest.raises(ProtocolError) as info:
        call(*args)
    assert info.value.reason in messages.REASONS
    assert str(info.value).startswith(info.value.reason + ": ")
    return info.value.reason


def test_every_kind_has_an_example_and_a_schema_description():
    assert set(EXAMPLES) == set(ALL_KINDS) == set(REQUIRED) == set(OPTIONAL)
    assert len(ALL_KINDS) == 10


def test_kind_classes_partition_the_uplink():
    assert messages.EVENT_KINDS == ("attendance", "alarm", "ack")
    assert messages.SAMPLE_KINDS == ("health", "telemetry")
    assert messages.STATE_KINDS == ("birth", "will")
    assert sorted(messages.UP_KINDS) == sorted(messages.EVENT_KINDS + messages.SAMPLE_KINDS
                                               + messages.STATE_KINDS)
    for kind in ALL_KINDS:
        assert messages.is_event(kind) == (kind in ("attendance", "alarm", "ack"))


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_leaf_of_every_kind_is_a_topic_leaf(kind):
    leaf = messages.leaf_of(kind)
    if kind in messages.DOWN_KINDS:
        assert leaf in topics.DOWN_LEAVES
    else:
        assert leaf in topics.UP_LEAVES
    assert leaf == ("status" if kind in ("birth", "will") else kind)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_round_trip(kind):
    msg = example(kind)
    data = messages.encode(msg)
    assert isinstance(data, bytes)
    assert b": " not in data and b", " not in data  # compact: every byte counts on a 4 KB budget
    assert messages.decode(data) == msg
    assert messages.decode(data, messages.leaf_of(kind)) == msg
    assert messages.encode(messages.decode(data)) == data


@pytest.mark.parametrize("kind", messages.UP_KINDS)
def test_uplink_round_trip_through_its_topic(kind):
    msg = example(kind)
    school, device, decoded = messages.decode_uplink(topic_for(kind), messages.encode(msg))
    assert (school, device, decoded) == (SCHOOL, DEVICE, msg)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_optional_fields_may_be_left_out(kind):
    msg = example(kind, **{name: DROP for name in OPTIONAL[kind] if name in EXAMPLES[kind]})
    assert messages.decode(messages.encode(msg), messages.leaf_of(kind)) == msg


def test_optional_flags_are_accepted_when_present():
    for kind in messages.EVENT_KINDS:
        assert messages.validate(example(kind, hist=True))["hist"] is True
    assert messages.validate(example(messages.ATTENDANCE, clock_ok=False))["clock_ok"] is False


def test_unknown_fields_pass_through():
    msg = example(messages.HEALTH, fw_build="a1b2")
    assert messages.decode(messages.encode(msg)) == msg


def test_key_is_device_boot_seq():
    assert messages.key(example(messages.ATTENDANCE)) == (DEVICE, BOOT, 17)
    replay = example(messages.ATTENDANCE, hist=True)
    assert messages.key(replay) == messages.key(example(messages.ATTENDANCE))


def test_builders_set_version_and_kind():
    assert messages.PROTOCOL_VERSION == 1
    for kind, msg in EXAMPLES.items():
        assert msg["v"] == 1
        assert msg["kind"] == kind


def test_unicode_text_survives():
    msg = example(messages.ALARM, detail="投影仪电源故障")
    assert messages.decode(messages.encode(msg))["detail"] == "投影仪电源故障"


def test_utf8_text_is_measured_in_bytes():
    # Chinese text is three bytes a character in UTF-8; the limit is on bytes on the wire.
    msg = example(messages.ALARM, note="故" * 1400)
    assert reason_of(messages.encode, msg) == messages.TOO_LARGE


# Each entry: (reason, id, call, args). Payloads are what a buggy device or a stray tool would send.
def _rejections():
    att = messages.ATTENDANCE
    up_att = topic_for(att)
    good = raw(example(att))
    cases = [
        (messages.BAD_TOPIC, "other-protocol", "classops/v2/lyq017/up/esp32-246f28a1b2c3/attendance", good),
        (messages.BAD_TOPIC, "uppercase-mac", "classops/v1/lyq017/up/esp32-246F28A1B2C3/attendance", good),
        (messages.BAD_TOPIC, "downlink-topic", topics.down(SCHOOL, DEVICE, "eack"), raw(example("eack"))),
        (messages.BAD_TOPIC, "unknown-leaf", "classops/v1/lyq017/up/esp32-246f28a1b2c3/tap", good),
        (messages.BAD_TOPIC, "extra-level", up_att + "/x", good),
        (messages.BAD_JSON, "not-json", up_att, b"hello"),
        (messages.BAD_JSON, "truncated", up_att, good[:-5]),
        (messages.BAD_JSON, "empty", up_att, b""),
        (messages.BAD_JSON, "invalid-utf8", up_att, good.replace(b"04a1b2c3d4e580", b"\xff\xfe")),
        (messages.BAD_JSON, "array", up_att, b"[1,2,3]"),
        (messages.BAD_JSON, "string", up_att, b'"attendance"'),
        (messages.BAD_JSON, "null", up_att, b"null"),
        (messages.TOO_LARGE, "padded", up_att, raw(example(att, note="x" * messages.MAX_PAYLOAD))),
        (messages.TOO_LARGE, "not-json-but-large", up_att, b"x" * (messages.MAX_PAYLOAD + 1)),
        (messages.BAD_VERSION, "v2", up_att, raw(example(att, v=2))),
        (messages.BAD_VERSION, "no-v", up_att, raw(example(att, v=DROP))),
        (messages.BAD_VERSION, "v-string", up_att, raw(example(att, v="1"))),
        (messages.UNKNOWN_KIND, "tap", up_att, raw(example(att, kind="tap"))),
        (messages.UNKNOWN_KIND, "no-kind", up_att, raw(example(att, kind=DROP))),
        (messages.UNKNOWN_KIND, "kind-list", up_att, raw(example(att, kind=["attendance"]))),
        (messages.UNKNOWN_KIND, "kind-upper", up_att, raw(example(att, kind="ATTENDANCE"))),
        (messages.KIND_MISMATCH, "alarm-on-health", topic_for(messages.HEALTH), raw(example("alarm"))),
        (messages.KIND_MISMATCH, "birth-on-own-leaf", up_att, raw(example("birth"))),
        (messages.KIND_MISMATCH, "cmd-on-ack", topic_for(messages.ACK), raw(example("cmd"))),
        (messages.MISSING_FIELD, "no-card", up_att, raw(example(att, card=DROP))),
        (messages.MISSING_FIELD, "no-seq", up_att, raw(example(att, seq=DROP))),
        (messages.MISSING_FIELD, "no-device", up_att, raw(example(att, device=DROP))),
        (messages.BAD_FIELD, "seq-string", up_att, raw(example(att, seq="17"))),
        (messages.BAD_FIELD, "seq-bool", up_att, raw(example(att, seq=True))),
        (messages.BAD_FIELD, "seq-float", up_att, raw(example(att, seq=17.0))),
        (messages.OUT_OF_RANGE, "seq-negative", up_att, raw(example(att, seq=-1))),
        (messages.OUT_OF_RANGE, "seq-2**63", up_att, raw(example(att, seq=2**63))),
        (messages.OUT_OF_RANGE, "ts-year-3000", up_att, raw(example(att, ts=32503680000))),
        (messages.OUT_OF_RANGE, "ts-set-clock-1999", up_att, raw(example(att, ts=946684799, clock_ok=True))),
        (messages.OUT_OF_RANGE, "birth-health_s-2**63", topic_for("birth"), raw(example("birth", health_s=2**63))),
        (messages.OUT_OF_RANGE, "birth-health_s-0", topic_for("birth"), raw(example("birth", health_s=0))),
        (messages.OUT_OF_RANGE, "health-rssi", topic_for("health"), raw(example("health", rssi=-1000))),
        (messages.OUT_OF_RANGE, "health-errors-count", topic_for("health"),
         raw(example("health", errors={"mqtt": 2**40}))),
        (messages.OUT_OF_RANGE, "alarm-detail-long", topic_for("alarm"), raw(example("alarm", detail="x" * 257))),
        (messages.OUT_OF_RANGE, "reading-huge", topic_for("telemetry"),
         raw(example("telemetry", readings={"co2": 1e300}))),
        (messages.OUT_OF_RANGE, "unknown-field-int", up_att, raw(example(att, extra=2**63))),
        (messages.OUT_OF_RANGE, "too-many-fields", up_att, raw(example(att, **{f"f{i}": 0 for i in range(64)}))),
        (messages.TOO_DEEP, "nested-300", topic_for("birth"),
         raw(example("birth")).replace(b'"role"', b'"x":' + b"[" * 300 + b"]" * 300 + b',"role"')),
        (messages.TOO_DEEP, "nested-9-objects", up_att,
         raw(example(att)).replace(b'"card"', b'"x":' + b'{"a":' * 8 + b"1" + b"}" * 8 + b',"card"')),
        (messages.BAD_FIELD, "ts-bool", up_att, raw(example(att, ts=True))),
        (messages.BAD_FIELD, "ts-string", up_att, raw(example(att, ts="2024-11-25T07:42:13Z"))),
        (messages.OUT_OF_RANGE, "ts-negative", up_att, raw(example(att, ts=-1))),
        (messages.BAD_FIELD, "card-upper", up_att, raw(example(att, card="04A1B2C3D4E580"))),
        (messages.BAD_FIELD, "card-colons", up_att, raw(example(att, card="04:a1:b2:c3"))),
        (messages.BAD_FIELD, "card-5-bytes", up_att, raw(example(att, card="04a1b2c3d4"))),
        (messages.BAD_FIELD, "card-int", up_att, raw(example(att, card=77661234))),
        (messages.BAD_FIELD, "hist-int", up_att, raw(example(att, hist=1))),
        (messages.BAD_FIELD, "boot-upper", up_att, raw(example(att, boot="5E3A91C4"))),
        (messages.BAD_FIELD, "boot-short", up_att, raw(example(att, boot="5e3a91c"))),
        (messages.BAD_FIELD, "boot-int", up_att, raw(example(att, boot=12345678))),
        (messages.BAD_FIELD, "device-upper", up_att, raw(example(att, device="esp32-246F28A1B2C3"))),
        (messages.BAD_FIELD, "role", topic_for("birth"), raw(example("birth", role="projector"))),
        (messages.BAD_FIELD, "health_s-bool", topic_for("birth"), raw(example("birth", health_s=True))),
        (messages.BAD_FIELD, "clock_ok-int", topic_for("birth"), raw(example("birth", clock_ok=1))),
        (messages.BAD_FIELD, "errors-list", topic_for("health"), raw(example("health", errors=[]))),
        (messages.BAD_FIELD, "heap-float", topic_for("health"), raw(example("health", heap_free=1.5))),
        (messages.BAD_FIELD, "reading-string", topic_for("telemetry"),
         raw(example("telemetry", readings={"temp_c": "18.6"}))),
        (messages.BAD_FIELD, "reading-null", topic_for("telemetry"),
         raw(example("telemetry", readings={"co2_ppm": None}))),
        (messages.BAD_FIELD, "reading-bool", topic_for("telemetry"),
         raw(example("telemetry", readings={"door_open": True}))),
        (messages.BAD_FIELD, "alarm-state", topic_for("alarm"), raw(example("alarm", state="raised"))),
        (messages.BAD_FIELD, "ack-result", topic_for("ack"), raw(example("ack", result="done"))),
        (messages.BAD_FIELD, "will-boot", topic_for("will"), raw(example("will", boot="boot-1"))),
        (messages.DEVICE_MISMATCH, "other-device", topic_for(att, "esp32-246f28a1b2d4"), good),
        (messages.DEVICE_MISMATCH, "will-of-other", topic_for("will", "esp32-246f28a1b2d4"),
         raw(example("will"))),
    ]
    return [pytest.param(reason, topic, payload, id=reason + ":" + name)
            for reason, name, topic, payload in cases]


REJECTIONS = _rejections()


@pytest.mark.parametrize("reason, topic, payload", REJECTIONS)
def test_uplink_rejections(reason, topic, payload):
    assert reason_of(messages.decode_uplink, topic, payload) == reason


def test_every_reason_is_exercised():
    assert {case.values[0] for case in REJECTIONS} == set(messages.REASONS)
    assert len(set(messages.REASONS)) == len(messages.REASONS) == 11


BAD_DOWNLINK = [
    pytest.param(example("cmd", exp="tomorrow"), id="exp-string"),
    pytest.param(example("cmd", exp=False), id="exp-bool"),
    pytest.param(example("cmd", args=[]), id="args-list"),
    pytest.param(example("cmd", cid=381), id="cid-int"),
    pytest.param(example("config", version="8"), id="version-string"),
    pytest.param(example("config", values=None), id="values-null"),
    pytest.param(example("eack", keys={"5e3a91c4": 17}), id="keys-object"),
    pytest.param(example("eack", keys=[BOOT, 17]), id="keys-flat"),
    pytest.param(example("eack", keys=[[BOOT]]), id="key-short"),
    pytest.param(example("eack", keys=[[BOOT, 17, 0]]), id="key-long"),
    pytest.param(example("eack", keys=[[17, BOOT]]), id="key-swapped"),
    pytest.param(example("eack", keys=[[BOOT, True]]), id="key-seq-bool"),
    pytest.param(example("eack", keys=[[BOOT, "17"]]), id="key-seq-string"),
    pytest.param(example("eack", keys=[["5E3A91C4", 17]]), id="key-boot-upper"),
]


@pytest.mark.parametrize("msg", BAD_DOWNLINK)
def test_downlink_bad_fields(msg):
    assert reason_of(messages.encode, msg) == messages.BAD_FIELD
    assert reason_of(messages.decode, raw(msg), messages.leaf_of(msg["kind"])) == messages.BAD_FIELD


def test_eack_keys_must_be_lists_not_tuples():
    # key() returns a tuple; a gateway building an eack from it must turn each key into a list,
    # because validation runs before JSON would have turned the tuple into an array.
    assert reason_of(messages.encode, messages.event_ack([(BOOT, 17)])) == messages.BAD_FIELD
    assert messages.validate(messages.event_ack([list(messages.key(example("alarm"))[1:])]))


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_required_field_is_required(kind):
    for name in REQUIRED[kind]:
        msg = example(kind, **{name: DROP})
        assert reason_of(messages.validate, msg) == messages.MISSING_FIELD, name
        assert reason_of(messages.encode, msg) == messages.MISSING_FIELD, name


def test_empty_eack_and_empty_readings_are_valid():
    assert messages.validate(messages.event_ack([]))["keys"] == []
    assert messages.validate(example("telemetry", readings={}))["readings"] == {}


def test_encode_refuses_invalid_messages():
    assert reason_of(messages.encode, example("attendance", card="nope")) == messages.BAD_FIELD
    assert reason_of(messages.encode, "attendance") == messages.BAD_JSON
    assert reason_of(messages.encode, example("attendance", v=2)) == messages.BAD_VERSION


def test_size_limit_is_inclusive():
    base = example("alarm", note="")
    pad = messages.MAX_PAYLOAD - len(messages.encode(base))
    at_limit = example("alarm", note="x" * pad)
    data = messages.encode(at_limit)
    assert len(data) == messages.MAX_PAYLOAD
    assert messages.decode_uplink(topic_for("alarm"), data)[2] == at_limit
    over = example("alarm", note="x" * (pad + 1))
    assert reason_of(messages.encode, over) == messages.TOO_LARGE
    assert reason_of(messages.decode, raw(over)) == messages.TOO_LARGE


def test_eack_of_about_two_hundred_keys_fits():
    keys = [[BOOT, 999999]] * 200
    assert len(messages.encode(messages.event_ack(keys))) <= messages.MAX_PAYLOAD
    assert reason_of(messages.encode, messages.event_ack(keys * 2)) == messages.OUT_OF_RANGE


def test_fractional_timestamps_are_numbers():
    msg = example("attendance", ts=1732491733.125)
    assert messages.decode(messages.encode(msg))["ts"] == 1732491733.125


def test_protocol_error_carries_reason_and_detail():
    with pytest.raises(ProtocolError) as info:
        messages.decode_uplink(topic_for("attendance"), raw(example("attendance", card="XYZ")))
    err = info.value
    assert isinstance(err, ValueError)
    assert err.reason == messages.BAD_FIELD
    assert "card" in err.detail
    assert str(err) == "bad_field: " + err.detail


def test_validate_returns_the_message_itself():
    msg = example("health")
    assert messages.validate(msg, "health") is msg


# Edge cases a hostile or broken device could send.

@pytest.mark.parametrize("v", [True, 1.0])
def test_version_must_be_the_integer_one(v):
    assert reason_of(messages.decode, raw(example("attendance", v=v))) == messages.BAD_VERSION


@pytest.mark.parametrize(
    "payload",
    [
        b'{"v":1,"kind":"attendance","device":"esp32-246f28a1b2c3","boot":"5e3a91c4","seq":1,'
        b'"ts":NaN,"card":"04a1b2c3d4e580"}',
        b'{"v":1,"kind":"attendance","device":"esp32-246f28a1b2c3","boot":"5e3a91c4","seq":1,'
        b'"ts":1e400,"card":"04a1b2c3d4e580"}',
        b'{"v":1,"kind":"telemetry","device":"esp32-246f28a1b2c3","boot":"5e3a91c4","seq":1,'
        b'"ts":1732491733,"readings":{"temp_c":Infinity}}',
    ],
    ids=["ts-nan", "ts-overflow", "reading-infinity"],
)
def test_non_finite_numbers_are_refused(payload):
    assert reason_of(messages.decode, payload) == messages.BAD_FIELD


def test_encode_refuses_nan_reading():
    assert reason_of(messages.encode, example("telemetry", readings={"temp_c": float("nan")})) == \
        messages.BAD_FIELD


def test_deep_nesting_is_refused_before_parsing():
    nested = b"[" * 2000 + b"]" * 2000
    payload = b'{"v":1,"kind":"will","device":"esp32-246f28a1b2c3","boot":"5e3a91c4","x":' + nested + b"}"
    assert len(payload) <= messages.MAX_PAYLOAD
    assert reason_of(messages.decode_uplink, topic_for("will"), payload) == messages.TOO_DEEP
    # A parser that recursed on every level could overflow its stack; the scan refuses them first.
    assert reason_of(messages.decode, b"[" * messages.MAX_PAYLOAD, None, refusing_loads) == messages.TOO_DEEP
    assert limits.too_deep(b"[" * 100_000)


def refusing_loads(payload):
    raise AssertionError("parsed a payload that should have been refused unparsed")


def test_brackets_inside_strings_do_not_count_as_nesting():
    msg = example("alarm", detail="[[[[[[[[[[{{{{{{{{{{ \\\" \"]]")
    assert messages.decode(messages.encode(msg), "alarm") == msg


def test_nesting_at_the_limit_is_accepted():
    msg = example("cmd", args={"a": {"b": {"c": {"d": {"e": {"f": [1]}}}}}})
    assert messages.decode(messages.encode(msg), "cmd") == msg
    deeper = example("cmd", args={"a": {"b": {"c": {"d": {"e": {"f": [[1]]}}}}}})
    assert reason_of(messages.encode, deeper) == messages.TOO_DEEP


def test_ts_ahead_of_the_receivers_clock_is_refused_only_when_it_is_given():
    msg = example("attendance", ts=TS + limits.MAX_CLOCK_AHEAD_S + 1)
    assert messages.decode(messages.encode(msg), "attendance") == msg
    assert messages.decode(messages.encode(msg), "attendance", now=TS + 1) == msg
    assert reason_of(messages.decode, messages.encode(msg), "attendance", json.loads, TS) == messages.OUT_OF_RANGE


def test_clock_not_set_may_send_small_timestamps():
    # An ESP32 whose clock was never set counts from its port's epoch: ts is its uptime, or 2000-01-01 on.
    for ts in (37, 946684837):
        msg = example("attendance", ts=ts, clock_ok=False)
        assert messages.decode(messages.encode(msg), "attendance") == msg


# docs/protocol.md shows a topic and a payload for every kind; they must stay valid and canonical.

_DOC_EXAMPLE = re.compile(r"Topic: `([^`]+)`\s*\n\s*```json\n(.*?)\n```", re.S)


def _doc_examples():
    return [(topic, payload.encode()) for topic, payload in _DOC_EXAMPLE.findall(DOC.read_text("utf-8"))]


def test_doc_examples_are_valid_and_cover_every_kind():
    seen = set()
    for topic, payload in _doc_examples():
        school, direction, device, leaf = topics.parse(topic)
        if direction == topics.UP:
            msg = messages.decode_uplink(topic, payload)[2]
        else:
            msg = messages.decode(payload, leaf)
        assert messages.encode(msg) == payload, "not in the canonical compact form: " + topic
        seen.add(msg["kind"])
    assert seen == set(ALL_KINDS)


def test_doc_lists_every_rejection_reason():
    text = DOC.read_text("utf-8")
    listed = set(re.findall(r"^\| `([a-z_]+)` \|", text, re.M))
    assert set(messages.REASONS) <= listed
    assert str(messages.MAX_PAYLOAD) in text
