"""Topic layout of protocol v1: ids, building, parsing, filters and ACL prefixes."""

import pytest

from protocol import topics
from protocol.topics import TopicError

SCHOOL = "lyq017"
DEVICE = "esp32-246f28a1b2c3"


@pytest.mark.parametrize(
    "value",
    ["esp32-246f28a1b2c3", "esp32-000000000000", "esp32-ffffffffffff"],
)
def test_device_id_accepts_lowercase_mac(value):
    assert topics.is_device_id(value)


@pytest.mark.parametrize(
    "value",
    [
        "esp32-246F28A1B2C3",  # uppercase hex would give one device two ids
        "esp32-246f28a1b2c",  # 11 digits
        "esp32-246f28a1b2c3d",  # 13 digits
        "esp32-24:6f:28:a1:b2",
        "ESP32-246f28a1b2c3",
        "esp8266-246f28a1b2",
        "246f28a1b2c3",
        "esp32-246f28a1b2g3",
        "",
        None,
        246,
        b"esp32-246f28a1b2c3",
    ],
)
def test_device_id_rejects(value):
    assert not topics.is_device_id(value)


def test_device_id_from_mac_is_lowercase_and_valid():
    device = topics.device_id_from_mac(bytes([0x24, 0x6F, 0x28, 0xA1, 0xB2, 0xC3]))
    assert device == DEVICE
    assert topics.is_device_id(device)
    assert topics.device_id_from_mac(bytes(6)) == "esp32-000000000000"


@pytest.mark.parametrize("value", ["lyq017", "a", "A-b_9", "x" * topics.MAX_SCHOOL_LEN, "341103"])
def test_school_code_accepts(value):
    assert topics.is_school_code(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "x" * (topics.MAX_SCHOOL_LEN + 1),
        "lyq/017",  # would add a topic level
        "lyq+",  # MQTT wildcards
        "lyq#",
        "lyq 017",
        "琅琊017",
        "lyq.017",
        None,
        17,
    ],
)
def test_school_code_rejects(value):
    assert not topics.is_school_code(value)


@pytest.mark.parametrize("leaf", topics.UP_LEAVES)
def test_up_topic_round_trip(leaf):
    topic = topics.up(SCHOOL, DEVICE, leaf)
    assert topic == "classops/v1/lyq017/up/esp32-246f28a1b2c3/" + leaf
    assert topics.parse(topic) == (SCHOOL, topics.UP, DEVICE, leaf)


@pytest.mark.parametrize("leaf", topics.DOWN_LEAVES)
def test_down_topic_round_trip(leaf):
    topic = topics.down(SCHOOL, DEVICE, leaf)
    assert topic == "classops/v1/lyq017/down/esp32-246f28a1b2c3/" + leaf
    assert topics.parse(topic) == (SCHOOL, topics.DOWN, DEVICE, leaf)


def test_leaves_are_the_documented_ones():
    assert topics.UP_LEAVES == ("status", "health", "telemetry", "attendance", "alarm", "ack")
    assert topics.DOWN_LEAVES == ("cmd", "config", "eack")
    assert not set(topics.UP_LEAVES) & set(topics.DOWN_LEAVES)


@pytest.mark.parametrize("leaf", topics.DOWN_LEAVES + ("bogus", ""))
def test_up_refuses_leaves_that_are_not_uplink(leaf):
    with pytest.raises(TopicError):
        topics.up(SCHOOL, DEVICE, leaf)


@pytest.mark.parametrize("leaf", topics.UP_LEAVES + ("bogus", ""))
def test_down_refuses_leaves_that_are_not_downlink(leaf):
    with pytest.raises(TopicError):
        topics.down(SCHOOL, DEVICE, leaf)


@pytest.mark.parametrize(
    "school, device",
    [
        ("lyq/017", DEVICE),
        ("", DEVICE),
        ("#", DEVICE),
        (SCHOOL, "esp32-246F28A1B2C3"),
        (SCHOOL, "#"),
        (SCHOOL, ""),
    ],
)
def test_builders_refuse_bad_ids(school, device):
    with pytest.raises(TopicError):
        topics.up(school, device, topics.HEALTH)
    with pytest.raises(TopicError):
        topics.down(school, device, topics.COMMAND)


def test_filters():
    assert topics.school_uplink_filter(SCHOOL) == "classops/v1/lyq017/up/+/+"
    assert topics.device_downlink_filter(SCHOOL, DEVICE) == "classops/v1/lyq017/down/esp32-246f28a1b2c3/+"
    with pytest.raises(TopicError):
        topics.school_uplink_filter("lyq/017")
    with pytest.raises(TopicError):
        topics.device_downlink_filter(SCHOOL, "esp32-246F28A1B2C3")


def test_acl_prefix_covers_exactly_the_devices_own_topics():
    pub, sub = topics.device_acl_prefix(SCHOOL, DEVICE)
    assert pub == "classops/v1/lyq017/up/esp32-246f28a1b2c3/#"
    assert sub == "classops/v1/lyq017/down/esp32-246f28a1b2c3/#"
    for leaf in topics.UP_LEAVES:
        assert topics.up(SCHOOL, DEVICE, leaf).startswith(pub[:-1])
    for leaf in topics.DOWN_LEAVES:
        assert topics.down(SCHOOL, DEVICE, leaf).startswith(sub[:-1])
    # A neighbour whose id shares a prefix must not fall under this device's ACL.
    other = topics.up(SCHOOL, "esp32-246f28a1b2c4", topics.HEALTH)
    assert not other.startswith(pub[:-1])
    with pytest.raises(TopicError):
        topics.device_acl_prefix("lyq/017", DEVICE)


def test_acl_prefix_refuses_wildcard_device():
    with pytest.raises(TopicError):
        topics.device_acl_prefix(SCHOOL, "+")


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "classops",
        "classops/v1/lyq017/up/esp32-246f28a1b2c3",
        "classops/v1/lyq017/up/esp32-246f28a1b2c3/health/extra",
        "/classops/v1/lyq017/up/esp32-246f28a1b2c3/health",
        "classops/v1/lyq017/up/esp32-246f28a1b2c3/health/",
        "ClassOps/v1/lyq017/up/esp32-246f28a1b2c3/health",
        "other/v1/lyq017/up/esp32-246f28a1b2c3/health",
        "classops/v2/lyq017/up/esp32-246f28a1b2c3/health",
        "classops/v1/lyq017/sideways/esp32-246f28a1b2c3/health",
        "classops/v1/lyq017/up/esp32-246f28a1b2c3/cmd",
        "classops/v1/lyq017/down/esp32-246f28a1b2c3/health",
        "classops/v1/lyq017/up/esp32-246f28a1b2c3/birth",  # birth travels on the status leaf
        "classops/v1/lyq017/up/esp32-246F28A1B2C3/health",
        "classops/v1/lyq 017/up/esp32-246f28a1b2c3/health",
        "classops/v1//up/esp32-246f28a1b2c3/health",
        "classops/v1/lyq017/up/esp32-246f28a1b2c3/+",
        "classops/v1/+/up/esp32-246f28a1b2c3/health",
    ],
)
def test_parse_rejects(topic):
    with pytest.raises(TopicError):
        topics.parse(topic)


def test_parse_error_names_the_version():
    with pytest.raises(TopicError, match="version"):
        topics.parse("classops/v2/lyq017/up/esp32-246f28a1b2c3/health")


def test_parse_rejects_wildcard_device():
    with pytest.raises(TopicError):
        topics.parse("classops/v1/lyq017/up/+/health")


def test_topic_error_is_a_value_error():
    assert issubclass(TopicError, ValueError)
