"""MQTT topic layout of protocol v1: the only place in ClassOps that spells a topic.

Runs on MicroPython and CPython alike, so it uses no typing imports, no re and no f-strings.

    classops/v1/<school>/up/<device>/<kind>     device -> gateway
    classops/v1/<school>/down/<device>/<kind>   gateway -> device
"""

ROOT = "classops"
VERSION = "v1"
UP = "up"
DOWN = "down"

# Kinds a device publishes, by topic leaf.
STATUS = "status"  # retained birth, and the retained last will on the same topic
HEALTH = "health"
TELEMETRY = "telemetry"
ATTENDANCE = "attendance"
ALARM = "alarm"
ACK = "ack"

# Kinds the gateway publishes to a device.
COMMAND = "cmd"
CONFIG = "config"
EVENT_ACK = "eack"

UP_LEAVES = (STATUS, HEALTH, TELEMETRY, ATTENDANCE, ALARM, ACK)
DOWN_LEAVES = (COMMAND, CONFIG, EVENT_ACK)

_HEX = "0123456789abcdef"
_CODE_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
DEVICE_PREFIX = "esp32-"
MAX_SCHOOL_LEN = 32


class TopicError(ValueError):
    """A topic that is not part of the ClassOps layout."""


def is_device_id(value):
    """True for `esp32-` followed by the 12 lowercase hex digits of a MAC address."""
    # strip() with a character set runs in C on both interpreters: nothing left means all hex.
    return (isinstance(value, str) and len(value) == 18 and value.startswith(DEVICE_PREFIX)
            and not value[6:].strip(_HEX))


def is_school_code(value):
    """True for 1 to 32 letters, digits, '_' or '-'; such a code is safe inside a topic."""
    return isinstance(value, str) and 0 < len(value) <= MAX_SCHOOL_LEN and not value.strip(_CODE_CHARS)


def device_id_from_mac(mac):
    """Device id for a 6-byte MAC address."""
    out = DEVICE_PREFIX
    for b in mac:
        out += _HEX[b >> 4] + _HEX[b & 15]
    return out


def _check(school, device, wildcard=False):
    if not is_school_code(school):
        raise TopicError("bad school code: %r" % (school,))
    if not (wildcard and device == "+") and not is_device_id(device):
        raise TopicError("bad device id: %r" % (device,))


def up(school, device, leaf):
    """Topic on which `device` of `school` publishes messages of kind `leaf`."""
    _check(school, device)
    if leaf not in UP_LEAVES:
        raise TopicError("not a device-to-gateway kind: %r" % (leaf,))
    return "/".join((ROOT, VERSION, school, UP, device, leaf))


def down(school, device, leaf):
    """Topic on which the gateway sends messages of kind `leaf` to `device` of `school`."""
    _check(school, device)
    if leaf not in DOWN_LEAVES:
        raise TopicError("not a gateway-to-device kind: %r" % (leaf,))
    return "/".join((ROOT, VERSION, school, DOWN, device, leaf))


def school_uplink_filter(school):
    """Subscription filter for everything the devices of one school publish."""
    _check(school, "+", wildcard=True)
    return "/".join((ROOT, VERSION, school, UP, "+", "+"))


def device_downlink_filter(school, device):
    """Subscription filter for everything the gateway sends to one device."""
    _check(school, device)
    return "/".join((ROOT, VERSION, school, DOWN, device, "+"))


def device_acl_prefix(school, device):
    """(publish prefix, subscribe prefix) a device is allowed, for the broker's ACL file."""
    _check(school, device)
    return (
        "/".join((ROOT, VERSION, school, UP, device)) + "/#",
        "/".join((ROOT, VERSION, school, DOWN, device)) + "/#",
    )


def broker_acl(school):
    """Mosquitto ACL rules for a school: (gateway read, gateway write, device write, device read).

    The device rules are patterns in which %u stands for the user name, which is the device id.
    """
    _check(school, "+", wildcard=True)
    base = "/".join((ROOT, VERSION, school))
    return (base + "/" + UP + "/+/+", base + "/" + DOWN + "/+/+",
            base + "/" + UP + "/%u/#", base + "/" + DOWN + "/%u/#")


def parse(topic):
    """Split a ClassOps topic into (school, direction, device, leaf); raise TopicError otherwise."""
    parts = topic.split("/")
    if len(parts) != 6 or parts[0] != ROOT:
        raise TopicError("not a ClassOps topic: %r" % (topic,))
    if parts[1] != VERSION:
        raise TopicError("unsupported protocol version in topic: %r" % (topic,))
    school, direction, device, leaf = parts[2], parts[3], parts[4], parts[5]
    _check(school, device)
    if direction == UP:
        if leaf not in UP_LEAVES:
            raise TopicError("unknown device-to-gateway kind: %r" % (leaf,))
    elif direction == DOWN:
        if leaf not in DOWN_LEAVES:
            raise TopicError("unknown gateway-to-device kind: %r" % (leaf,))
    else:
        raise TopicError("unknown direction in topic: %r" % (topic,))
    return school, direction, device, leaf
