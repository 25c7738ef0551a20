"""Hostile devices against a school set up as documented: a few devices with valid credentials send
whatever hypothesis draws (random bytes, near-valid JSON, deep nesting, integers past 64 bits, payloads
up to the broker's limit, others' topics and identities, QoS 0 and 1, retained or not, bursts), while a
well-behaved attendance terminal taps throughout. After every drawn program the gateway is the same
process, still answers, still holds its broker session; every tap is in the cloud exactly once; and
every bad message that reached the gateway is counted in /metrics.

What reaches the gateway (`reaches_gateway`): Mosquitto 2 drops a publish the ACL refuses, or one over
`message_size_limit`, silently whatever its QoS (a QoS 1 publisher still gets its PUBACK), and the
gateway subscribes to `up/+/+` only. Everything else reaches it, QoS 0 included: the broker drops QoS 0
for a connected subscriber only past `max_queued_messages` (200,000), which these programs never near,
and the test checks that the gateway's session is never interrupted. So the counts must match exactly,
but for the flood guard: it counts what a device sends beyond its rate as `messages_rejected{reason=
"flood"}` instead of what the message would have been counted as.

A QoS 0 message has reached the broker once a later QoS 1 publish on the same connection has its
PUBACK; the test waits for one after every action, because a message still unread in the broker's
socket buffer is lost when the next connection with the same client id takes the session over.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, Phase, example, given, note, settings
from hypothesis import strategies as st

from gateway.app import FLOOD_REASON
from gateway.config import GatewaySettings
from gateway.privacy import card_pseudonym
from protocol import limits, messages, topics
from simulator.stack import wait_for
from tests.school import CredentialedSchool, DeviceConnection

pytestmark = pytest.mark.slow

SCHOOL = "S066"
OTHER_SCHOOL = "S067"
GOOD = topics.device_id_from_mac(bytes.fromhex("246f28aa0001"))
HOSTILE = [topics.device_id_from_mac(bytes.fromhex(f"246f28bb000{i}")) for i in range(1, 4)]
GATEWAY_USER = GatewaySettings(school=SCHOOL, school_secret="x" * 16).client_id
GOOD_BOOT = "600dcafe"
HOSTILE_BOOT = "0badf00d"
# Timestamps well inside the protocol's window for the whole run.
NOW_TS = int(time.time())

EXAMPLES = 20
# Half the gateway's default flood rate (20 messages a second), resends included, stays well inside it.
TAP_EVERY_S = 0.1
# A smaller flood burst than the default 1,000, so that a drawn burst of 200 messages meets the flood
# guard within a run: what it drops must be counted too.
FLOOD_BURST = 150
# The firmware sends an event again when its eack has not come after resend_s (10 s by default); shorter
# here, so that a lost eack costs the test little time.
RESEND_S = 2.0
WAIT_S = 20.0
# Room left in an MQTT packet for the fixed header and the topic, below the broker's max_packet_size,
# which would disconnect the client instead of dropping the message.
PACKET_OVERHEAD = 512

# The outcome the gateway must count for a message that reaches it: a rejection reason, EMPTY (an empty
# payload, which clears a retained topic and carries no data), or ANY_REASON when the protocol refuses
# it but more than one reason could be the first to apply.
EMPTY = "empty"
ANY_REASON = "any"


# -- what the hostile devices send -------------------------------------------------------------------

def base_fields(kind: str) -> dict[str, Any]:
    """Fields of a valid message of `kind`, all of them required ones."""
    return {
        messages.BIRTH: {"role": "sensor", "fw": "1.2.0", "app": "1.2.0", "reset": "power_on", "health_s": 60},
        messages.HEALTH: {"uptime_s": 10, "heap_free": 50_000, "heap_max_block": 20_000, "errors": {},
                          "buffered": 0},
        messages.TELEMETRY: {"readings": {"co2_ppm": 600}},
        messages.ATTENDANCE: {"card": "04a1b2c3"},
        messages.ALARM: {"code": messages.SENSOR_FAULT, "state": "raise"},
        messages.ACK: {"cid": "c1", "result": "ok"},
    }[kind]


KINDS = (messages.BIRTH, messages.HEALTH, messages.TELEMETRY, messages.ATTENDANCE, messages.ALARM, messages.ACK)
STRING_FIELDS = {messages.BIRTH: "fw", messages.ATTENDANCE: "card", messages.ALARM: "code", messages.ACK: "cid"}
# Kinds whose only strings are the names in an object the device fills: the giant string is a name.
NAMED_OBJECTS = {messages.HEALTH: "errors", messages.TELEMETRY: "readings"}


def valid_message(sender: str, kind: str, seq: int) -> dict[str, Any]:
    """A message the protocol accepts from `sender`: each defect below breaks it in one way."""
    msg = messages.message(kind, sender, HOSTILE_BOOT, seq, NOW_TS, base_fields(kind))
    messages.validate(msg, messages.leaf_of(kind))
    return msg


def dumps(msg: Any) -> bytes:
    """Compact JSON, as devices send it, of anything (messages.encode would refuse the broken ones)."""
    return json.dumps(msg, separators=(",", ":")).encode()


def with_raw_field(msg: dict[str, Any], name: str, raw_json: str) -> bytes:
    """`msg` with field `name` set to a JSON text given as it is (for nesting json.dumps would refuse)."""
    placeholder = "\x00placeholder\x00"
    return dumps({**msg, name: placeholder}).replace(json.dumps(placeholder).encode(), raw_json.encode())


def nested(depth: int, container: str) -> str:
    """JSON text of `depth` nested arrays or objects."""
    if container == "[]":
        return "[" * depth + "]" * depth
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


def giant(msg: dict[str, Any], kind: str, size: int) -> bytes:
    """`msg` with one string grown until the payload is `size` bytes long."""
    def build(n: int) -> bytes:
        if kind in NAMED_OBJECTS:
            return dumps({**msg, NAMED_OBJECTS[kind]: {"x" * n: 1}})
        return dumps({**msg, STRING_FIELDS[kind]: "x" * n})
    return build(max(0, size - len(build(0))))


def not_a_json_object(data: bytes) -> bool:
    """True unless `data` parses as a JSON object (which could by chance be a valid message)."""
    try:
        return not isinstance(json.loads(data), dict)
    except ValueError:
        return True


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
leaf_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FFF, blacklist_characters="/+#",
                                  blacklist_categories=("Cs", "Cc", "Cn")), max_size=12)
wrong_values = {str: [7, None, ["x"], True], int: ["7", 1.5, True, None, [1]], dict: [[], "x", 1, None]}


@dataclass(frozen=True)
class Payload:
    """What a hostile device sends, the topic leaf it goes on, and the outcome the gateway must count."""

    leaf: str
    data: bytes
    outcome: str
    defect: str = ""

    def __repr__(self) -> str:
        # Payloads run to 64 KB: a failing program is reported with what is wrong with them and their size.
        return f"Payload({self.defect!r}, leaf={self.leaf!r}, {len(self.data)} bytes, outcome={self.outcome!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis reports a failing example through this, not __repr__.
        printer.text(repr(self))


@st.composite
def hostile_payloads(draw: st.DrawFn, sender: str, broker_limit: int, packet_cap: int) -> Payload:
    """A valid message of `sender` broken in one drawn way, or random bytes, or nothing at all."""
    kind = draw(st.sampled_from(KINDS))
    msg = valid_message(sender, kind, draw(st.integers(0, 10_000)))
    leaf = messages.leaf_of(kind)
    defect = draw(st.sampled_from(["bytes", "not_object", "deep", "huge_int", "wrong_type", "giant", "device",
                                   "kind_leaf", "missing", "version", "unknown_kind", "bad_leaf", "empty"]))
    if defect == "bytes":
        data = draw(st.binary(min_size=1, max_size=256).filter(not_a_json_object))
        return Payload(leaf, data, messages.BAD_JSON, f"bytes {data[:32]!r}")
    if defect == "not_object":
        value = draw(json_scalars | st.lists(json_scalars, max_size=4))
        return Payload(leaf, dumps(value), messages.BAD_JSON, f"not an object: {value!r:.40}")
    if defect == "deep":
        # Deeper than the protocol allows, from just past its bound to past the JSON parser's own.
        depth = draw(st.sampled_from([limits.MAX_DEPTH, 64, 300, 1000, 1100]))
        field = draw(st.sampled_from([NAMED_OBJECTS.get(kind, "x"), "x"]))
        container = draw(st.sampled_from(["[]", "{}"]))
        return Payload(leaf, with_raw_field(msg, field, nested(depth, container)), ANY_REASON,
                       f"{kind}.{field} nested {depth} deep in {container}")
    if defect == "huge_int":
        field = draw(st.sampled_from([f for f, v in {**msg, "ts": 0}.items() if type(v) is int and f != "v"]))
        value = draw(st.sampled_from([2**63, 2**64 + 1, -(2**63) - 1, 10**40]))
        return Payload(leaf, dumps({**msg, field: value}), ANY_REASON, f"{kind}.{field} = {value}")
    if defect == "wrong_type":
        field = draw(st.sampled_from([f for f in msg if f not in ("v", "kind")]))
        choices = ["7", True, None, {}] if field == "ts" else wrong_values[type(msg[field])]
        value = draw(st.sampled_from(choices))
        return Payload(leaf, dumps({**msg, field: value}), messages.BAD_FIELD, f"{kind}.{field} = {value!r}")
    if defect == "giant":
        # Around the broker's limit (what passes it must still be refused by the gateway) and beyond it.
        size = draw(st.sampled_from([broker_limit - 1, broker_limit, broker_limit + 1, 2 * broker_limit,
                                     packet_cap]))
        data = giant(msg, kind, size)
        return Payload(leaf, data, messages.TOO_LARGE if len(data) > limits.MAX_MESSAGE_BYTES else ANY_REASON,
                       f"{kind} with a giant string")
    if defect == "device":
        other = draw(st.sampled_from([GOOD, *(h for h in HOSTILE if h != sender)]))
        return Payload(leaf, dumps({**msg, "device": other}), messages.DEVICE_MISMATCH, f"{kind} as {other}")
    if defect == "kind_leaf":
        wrong_leaf = draw(st.sampled_from([x for x in topics.UP_LEAVES if x != leaf]))
        return Payload(wrong_leaf, dumps(msg), messages.KIND_MISMATCH, f"{kind} on {wrong_leaf}")
    if defect == "missing":
        field = draw(st.sampled_from([f for f in msg if f not in ("v", "kind")]))
        return Payload(leaf, dumps({f: v for f, v in msg.items() if f != field}), messages.MISSING_FIELD,
                       f"{kind} without {field}")
    if defect == "version":
        version = draw(st.sampled_from([0, 2, "1", None, 1.5, True, "absent"]))
        body = {f: v for f, v in msg.items() if f != "v"} if version == "absent" else {**msg, "v": version}
        return Payload(leaf, dumps(body), messages.BAD_VERSION, f"{kind} with v {version!r}")
    if defect == "unknown_kind":
        kind_value = draw(st.sampled_from(["nonsense", "", "HEALTH", 7, None, ["health"]]))
        return Payload(leaf, dumps({**msg, "kind": kind_value}), messages.UNKNOWN_KIND, f"kind {kind_value!r}")
    if defect == "bad_leaf":
        bad_leaf = draw(leaf_text.filter(lambda t: t not in topics.UP_LEAVES))
        return Payload(bad_leaf, dumps(msg), messages.BAD_TOPIC, f"{kind} on leaf {bad_leaf!r}")
    return Payload(leaf, b"", EMPTY, "empty")


def own_topic(sender: str, *levels: str) -> str:
    """A topic under the sender's own uplink prefix, levels as given (topics.up refuses unknown leaves)."""
    return "/".join((topics.ROOT, topics.VERSION, SCHOOL, topics.UP, sender, *levels))


def forged_eack() -> bytes:
    """An eack for taps the good terminal has not made yet: if it ever got one, it would say so."""
    return messages.encode(messages.event_ack([[GOOD_BOOT, 10**6 + i] for i in range(32)]))


@dataclass(frozen=True)
class Publish:
    """One hostile device publishes `count` copies of a payload on a topic, `interval_s` apart.

    `as_client`: on a connection of its own, with that client id (another's, to push it off the broker).
    """

    sender: int
    topic: str
    payload: Payload
    qos: int
    retain: bool
    count: int
    interval_s: float
    as_client: str | None = None


@dataclass(frozen=True)
class Impostor:
    """A hostile device tries to log in under another user name with its own password."""

    sender: int
    user: str


@st.composite
def publishes(draw: st.DrawFn, broker_limit: int, packet_cap: int) -> Publish:
    """A hostile payload on the sender's own topics, another device's, a downlink or another school's."""
    index = draw(st.integers(0, len(HOSTILE) - 1))
    sender = HOSTILE[index]
    others = [GOOD, *(h for h in HOSTILE if h != sender)]
    payload = draw(hostile_payloads(sender, broker_limit, packet_cap))
    where = draw(st.sampled_from(["own"] * 6 + ["deeper", "other_up", "downlink", "other_school"]))
    if where == "own":
        topic = own_topic(sender, payload.leaf)
    elif where == "deeper":
        topic = own_topic(sender, payload.leaf, draw(leaf_text))
    elif where == "other_up":
        topic = topics.up(SCHOOL, draw(st.sampled_from(others)), draw(st.sampled_from(topics.UP_LEAVES)))
    elif where == "downlink":
        target = draw(st.sampled_from([*others, sender]))
        topic = topics.down(SCHOOL, target, draw(st.sampled_from(topics.DOWN_LEAVES)))
        if target == GOOD and draw(st.booleans()):
            payload = Payload(topics.EVENT_ACK, forged_eack(), payload.outcome, "eack of taps not made")
    else:
        topic = topics.up(OTHER_SCHOOL, sender, draw(st.sampled_from(topics.UP_LEAVES)))
    count, interval_s = draw(st.sampled_from([(1, 0.0), (1, 0.0), (5, 0.01), (30, 0.002), (200, 0.0)]))
    as_client = draw(st.sampled_from([None] * 6 + [GATEWAY_USER, GOOD, *others[1:]]))
    return Publish(index, topic, payload, qos=draw(st.sampled_from([0, 1])), retain=draw(st.booleans()),
                   count=count, interval_s=interval_s, as_client=as_client)


@st.composite
def impostors(draw: st.DrawFn) -> Impostor:
    """A hostile device logging in as the gateway, the good terminal or another hostile device."""
    index = draw(st.integers(0, len(HOSTILE) - 1))
    return Impostor(index, draw(st.sampled_from([GATEWAY_USER, GOOD, *(h for h in HOSTILE if h != HOSTILE[index])])))


def reaches_gateway(sender: str, topic: str, size: int, broker_limit: int | None) -> bool:
    """Whether the broker hands a device's message to the gateway (see the module's docstring)."""
    levels = topic.split("/")
    acl_and_subscription = len(levels) == 6 and levels[:5] == [topics.ROOT, topics.VERSION, SCHOOL, topics.UP,
                                                               sender]
    return acl_and_subscription and (broker_limit is None or size <= broker_limit)


# -- the well-behaved device ------------------------------------------------------------------------

class AttendanceTerminal:
    """An attendance terminal as the firmware behaves: a retained birth and will, then a tap every
    TAP_EVERY_S, each kept until the gateway's eack and sent again (as a replay) while it has none."""

    def __init__(self, school: CredentialedSchool) -> None:
        self.school = school
        status_topic = topics.up(SCHOOL, GOOD, topics.STATUS)
        self.conn = DeviceConnection(school.broker_port, GOOD, school.password(GOOD),
                                     will=(status_topic, messages.encode(messages.will(GOOD, GOOD_BOOT))))
        self.lock = threading.Lock()
        self.seq = 0
        self.cards: dict[int, str] = {}
        self.pending: dict[int, tuple[bytes, float]] = {}
        self.sent = 0
        self.foreign_eacks: list[Any] = []
        self.tapping = threading.Event()
        self._stop = threading.Event()
        self.conn.client.on_message = self._on_message
        assert self.conn.wait_answer(), self.conn.refused
        self.conn.client.subscribe(topics.device_downlink_filter(SCHOOL, GOOD), qos=1)
        birth = messages.message(messages.BIRTH, GOOD, GOOD_BOOT, 0, time.time(), {
            "role": "attendance", "fw": "1.2.0", "app": "1.2.0", "reset": "power_on", "health_s": 60,
            "clock_ok": True})
        self._publish(status_topic, messages.encode(birth), retain=True)
        self._thread = threading.Thread(target=self._run, name="good-terminal", daemon=True)
        self._thread.start()

    def _publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        # Counted only when it went out on the connection; a connection lost (which the test reports as
        # a failure of its own) leaves the tap pending, to be sent again.
        if self.conn.client.publish(topic, payload, qos=1, retain=retain).rc == mqtt.MQTT_ERR_SUCCESS:
            with self.lock:
                self.sent += 1

    def _tap(self) -> None:
        with self.lock:
            self.seq += 1
            seq = self.seq
        card = f"{0x04000000 + seq:08x}"
        msg = messages.message(messages.ATTENDANCE, GOOD, GOOD_BOOT, seq, time.time(),
                               {"card": card, "hist": False, "clock_ok": True})
        payload = messages.encode(msg)
        with self.lock:
            self.cards[seq] = card
            self.pending[seq] = (payload, time.monotonic())
        self._publish(topics.up(SCHOOL, GOOD, topics.ATTENDANCE), payload)

    def _resend_overdue(self) -> None:
        now = time.monotonic()
        with self.lock:
            overdue = [(seq, payload) for seq, (payload, sent) in self.pending.items() if now - sent >= RESEND_S]
            for seq, payload in overdue:
                self.pending[seq] = (payload, now)
        for _, payload in overdue:
            replay = messages.decode(payload)
            replay["hist"] = True
            self._publish(topics.up(SCHOOL, GOOD, topics.ATTENDANCE), messages.encode(replay))

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.tapping.is_set():
                self._tap()
            self._resend_overdue()
            self._stop.wait(TAP_EVERY_S)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if not message.topic.endswith("/" + topics.EVENT_ACK):
            return
        keys = messages.decode(message.payload, topics.EVENT_ACK)["keys"]
        with self.lock:
            for boot, seq in keys:
                if boot != GOOD_BOOT or seq > self.seq:
                    self.foreign_eacks.append([boot, seq])
                self.pending.pop(seq, None)

    def quiesce(self) -> None:
        """Stop tapping, make one more tap, and wait until the gateway has acknowledged every tap."""
        self.tapping.clear()
        self._tap()
        wait_for(lambda: not self.pending or self.school.gateway_alive_or_raise() or self._pushed_off(), WAIT_S,
                 "the gateway's eack of every tap")

    def _pushed_off(self) -> bool:
        # A terminal pushed off the broker loses its subscription with its session: no eack would come.
        assert not self.conn.unexpected_disconnects, \
            f"the good terminal was pushed off the broker: {self.conn.unexpected_disconnects}"
        return False

    def taps(self) -> dict[tuple[str, int], str]:
        """(boot, seq) -> card UID of every tap made so far."""
        with self.lock:
            return {(GOOD_BOOT, seq): card for seq, card in self.cards.items()}

    def close(self) -> None:
        """Stop tapping and disconnect cleanly, so that the broker discards the will."""
        self._stop.set()
        self._thread.join(10)
        self.conn.close()


# -- the live school --------------------------------------------------------------------------------

@dataclass
class Tally:
    """What the hostile devices sent, how much of it reached the gateway, and what it must have counted."""

    sent: int = 0
    reached: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


class Run:
    """The live school, its devices, and what the gateway must show for them."""

    def __init__(self, school: CredentialedSchool) -> None:
        self.school = school
        # message_size_limit 0, or none, is no limit.
        self.broker_limit = school.broker_setting("message_size_limit") or None
        self.packet_cap = (school.broker_setting("max_packet_size") or 65536) - PACKET_OVERHEAD
        self.pid = school.gateway_pid
        self.baseline = school.metrics()
        self.hostile = [DeviceConnection(school.broker_port, d, school.password(d)) for d in HOSTILE]
        for conn in self.hostile:
            assert conn.wait_answer(), f"{conn.user} was refused: {conn.refused}"
        self.good = AttendanceTerminal(school)
        self.tally = Tally()

    def close(self) -> None:
        """Disconnect every device cleanly."""
        self.good.close()
        for conn in self.hostile:
            conn.close()

    def delta(self, name: str, label: str = "") -> float:
        """How much a gateway counter has grown since the devices connected."""
        return self.school.metrics().get((name, label), 0.0) - self.baseline.get((name, label), 0.0)

    def run(self, program: list[Publish | Impostor]) -> None:
        """Carry out a program while the good terminal taps; return once the gateway has eacked its taps."""
        self.good.tapping.set()
        for action in program:
            if isinstance(action, Impostor):
                self._impostor(action)
            else:
                self._publish(action)
        self.good.quiesce()

    def _impostor(self, action: Impostor) -> None:
        sender = HOSTILE[action.sender]
        attempt = DeviceConnection(self.school.broker_port, action.user, self.school.password(sender),
                                   client_id=sender)
        try:
            admitted = attempt.wait_answer()
        finally:
            attempt.close()
        assert not admitted, f"{sender} logged in as {action.user} with its own password"

    def _publish(self, action: Publish) -> None:
        sender = HOSTILE[action.sender]
        main = self.hostile[action.sender]
        conn = main
        if action.as_client is not None:
            main.pause()
            conn = DeviceConnection(self.school.broker_port, sender, self.school.password(sender),
                                    client_id=action.as_client)
            if not conn.wait_answer():
                # Refusing the client id is as safe as replacing it with the user name: nothing was sent.
                conn.close()
                main.resume()
                return
        try:
            infos = []
            for i in range(action.count):
                infos.append(conn.client.publish(action.topic, action.payload.data, qos=action.qos,
                                                 retain=action.retain))
                if action.interval_s and i + 1 < action.count:
                    time.sleep(action.interval_s)
            # A QoS 1 publish answered by the broker means it has routed everything the connection sent
            # before. Without it, QoS 0 messages still unread in the broker's socket buffer would be lost
            # when the next connection with the same client id (the user name) takes the session over.
            infos.append(conn.client.publish(own_topic(sender, "fence", "x"), b"", qos=1))
            for info in infos:
                assert info.rc == mqtt.MQTT_ERR_SUCCESS, f"{sender}'s connection dropped: {info.rc}"
                info.wait_for_publish(WAIT_S)
        finally:
            if conn is not main:
                conn.close()
                main.resume()
        self.tally.sent += action.count
        if reaches_gateway(sender, action.topic, len(action.payload.data), self.broker_limit):
            self.tally.reached += action.count
            self.tally.outcomes[action.payload.outcome] += action.count

    def check(self) -> None:
        """The invariants that hold after any program (see the module's docstring)."""
        school, good, tally = self.school, self.good, self.tally
        assert school.gateway is not None
        assert school.gateway_pid == self.pid, f"the gateway exited:\n{school.gateway.log_tail()}"
        assert school.status() is not None, "the gateway's /api/status does not answer"
        assert self.delta("broker_connects") == 0, "the gateway's broker session was interrupted"
        assert not good.conn.unexpected_disconnects, \
            f"the good terminal was pushed off: {good.conn.unexpected_disconnects}"
        for conn in self.hostile:
            assert not conn.unexpected_disconnects, f"{conn.user} was pushed off: {conn.unexpected_disconnects}"
        assert not good.foreign_eacks, f"the good terminal got eacks it never asked for: {good.foreign_eacks[:5]}"

        outcomes = tally.outcomes
        taps = good.taps()
        with good.lock:
            good_sent = good.sent

        def counted() -> dict[str, Any]:
            metrics = school.metrics()

            def delta(name: str, label: str = "") -> float:
                return metrics.get((name, label), 0.0) - self.baseline.get((name, label), 0.0)

            rejected = {label: delta(name, label) for name, label in metrics if name == "messages_rejected"}
            return {
                "in": delta("messages_in"),
                "committed": delta("messages_committed"),
                "duplicate": delta("messages_duplicate"),
                "empty": delta("messages_empty"),
                "rejected": {r: n for r, n in rejected.items() if n},
            }

        # Every delivered message is counted once; the good terminal's are its birth and taps, committed
        # once each, its replays counted as duplicates; the hostile ones are all refused or empty. A
        # hostile message the flood guard drops is counted as a flood instead of what it would have been.
        expected_in = tally.reached + good_sent
        expected_committed = 1 + len(taps)
        expected_empty = outcomes[EMPTY]
        named = {r: n for r, n in outcomes.items() if r not in (EMPTY, ANY_REASON)}

        def balanced(c: dict[str, Any]) -> bool:
            rejected = c["rejected"]
            flood = rejected.get(FLOOD_REASON, 0)
            return (c["in"] == expected_in and c["committed"] == expected_committed
                    and c["duplicate"] == good_sent - expected_committed
                    and expected_empty - flood <= c["empty"] <= expected_empty
                    and sum(rejected.values()) + c["empty"] == tally.reached
                    and all(n - flood <= rejected.get(r, 0) <= n + outcomes[ANY_REASON] for r, n in named.items()))

        try:
            wait_for(lambda: balanced(counted()), WAIT_S, "the gateway's counts to match what it was sent",
                     interval=0.1)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}: expected in={expected_in} committed={expected_committed} "
                                 f"duplicate={good_sent - expected_committed} empty={expected_empty} "
                                 f"rejected={tally.reached - expected_empty} ({named} by reason, "
                                 f"{outcomes[ANY_REASON]} for any, less what was counted as flood); "
                                 f"counted {counted()}") from exc

        expected_cloud = Counter((GOOD, boot, seq, card_pseudonym(school.school_secret, card))
                                 for (boot, seq), card in taps.items())

        def in_cloud() -> Counter[tuple[str, str, int, str]]:
            return Counter((e["device_id"], e["boot_id"], e["seq"], e["card_pseudonym"])
                           for e in school.attendance())

        try:
            wait_for(lambda: in_cloud() == expected_cloud, WAIT_S, "every tap in the cloud exactly once",
                     interval=0.2)
        except TimeoutError as exc:
            got = in_cloud()
            raise AssertionError(f"{exc}: missing {sorted(expected_cloud - got)[:10]}, "
                                 f"extra {sorted(got - expected_cloud)[:10]}") from exc


@pytest.fixture(scope="module")
def school(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CredentialedSchool]:
    s = CredentialedSchool(tmp_path_factory.mktemp("hostile"), school=SCHOOL, devices=[GOOD, *HOSTILE],
                           gateway_env={"CLASSOPS_GATEWAY_BROKER__DEVICE_BURST": str(FLOOD_BURST)})
    try:
        s.start()
        yield s
    finally:
        s.stop()


# The messages of the defects once reported against the gateway: a birth nested 300 deep, sent retained;
# a sequence number and a health period of 2**63; a device taking the gateway's and a device's client id.
def _poison() -> list[Publish | Impostor]:
    sender = HOSTILE[0]
    status = own_topic(sender, topics.STATUS)
    deep = Payload(topics.STATUS, with_raw_field(valid_message(sender, messages.BIRTH, 1), "x", nested(300, "[]")),
                   ANY_REASON, "birth.x nested 300 deep")
    big_seq = Payload(topics.ATTENDANCE, dumps({**valid_message(sender, messages.ATTENDANCE, 1), "seq": 2**63}),
                      ANY_REASON, "attendance.seq = 2**63")
    big_period = Payload(topics.STATUS, dumps({**valid_message(sender, messages.BIRTH, 2), "health_s": 2**63}),
                         ANY_REASON, "birth.health_s = 2**63")
    hello = Payload(topics.HEALTH, dumps(valid_message(sender, messages.HEALTH, 3) | {"device": GOOD}),
                    messages.DEVICE_MISMATCH, f"health as {GOOD}")
    return [
        Publish(0, status, deep, qos=1, retain=True, count=1, interval_s=0.0),
        Publish(0, own_topic(sender, topics.ATTENDANCE), big_seq, qos=1, retain=False, count=1, interval_s=0.0),
        Publish(0, status, big_period, qos=1, retain=True, count=1, interval_s=0.0),
        Publish(1, own_topic(HOSTILE[1], topics.HEALTH), hello, qos=1, retain=False, count=1, interval_s=0.0,
                as_client=GATEWAY_USER),
        Publish(2, own_topic(HOSTILE[2], topics.HEALTH), hello, qos=0, retain=False, count=1, interval_s=0.0,
                as_client=GOOD),
        Impostor(0, GATEWAY_USER),
    ]


def test_hostile_devices_cannot_stop_the_school(school: CredentialedSchool) -> None:
    run = Run(school)
    broker_limit, packet_cap = run.broker_limit or limits.MAX_MESSAGE_BYTES, run.packet_cap
    program = st.lists(st.one_of(publishes(broker_limit, packet_cap), publishes(broker_limit, packet_cap),
                                 impostors()), min_size=1, max_size=6)

    # No shrinking: each example costs a second of a live stack; the first failing program is reported.
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              phases=(Phase.explicit, Phase.generate),
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example])
    @given(actions=program)
    @example(actions=_poison())
    def hostile_program(actions: list[Publish | Impostor]) -> None:
        # Printed with a failure: the program, one action a line, payloads by their start and size.
        note("program:\n" + "\n".join(repr(action) for action in actions))
        run.run(actions)
        run.check()

    try:
        hostile_program()
        run.check()
    finally:
        run.close()
