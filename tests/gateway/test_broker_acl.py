"""The broker files the gateway writes: each device logs in with its own password and may publish only
under its own topics; a device forging another's id is refused by the broker itself."""

from __future__ import annotations

import base64
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway.broker import BrokerLink
from gateway.broker_config import device_password, password_entry, write_broker_files
from gateway.config import load_settings
from gateway.metrics import Metrics
from protocol import limits, messages, topics
from simulator.stack import Mosquitto, free_port, wait_for

SCHOOL = "S007"
SECRET = "device-secret-0123456789"
ALICE = "esp32-aaaaaaaaaaaa"
BOB = "esp32-bbbbbbbbbbbb"
GATEWAY = "classops-gw-S007"


def test_password_entries_are_in_mosquitto_passwd_format() -> None:
    entry = password_entry("user1", "secret1", salt=base64.b64decode("XB1d5OSStDxDPTZ9"))
    assert entry == ("user1:$7$101$XB1d5OSStDxDPTZ9$Q1P78H8dt2mtoms+unSpfUSm1IzFoV0yrXDD4C2Ck+w1HHtvBKuYz"
                     "BqNJv80AD7iaAP1/rYlrP/2Pn92md3hLQ==")


class Client:
    def __init__(self, port: int, user: str, password: str, client_id: str | None = None,
                 will: tuple[str, bytes] | None = None, clean_session: bool = True) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.connected = threading.Event()
        self.refused: list[str] = []
        self.connects = 0
        self.disconnects = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or user,
                                  clean_session=clean_session)
        self.client.username_pw_set(user, password)
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda c, u, m: self.received.append((m.topic, m.payload))
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def subscribe(self, topic_filter: str) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic_filter, qos=1)
        wait_for(self.subscribed.is_set, 10, f"the subscription to {topic_filter}")

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            self.refused.append(str(reason))
        else:
            self.connects += 1
            self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        self.disconnects += 1

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def broker(tmp_path: Path):
    files = write_broker_files(tmp_path / "conf", school=SCHOOL, device_secret=SECRET, gateway_user=GATEWAY,
                               gateway_password="gateway-pass", devices=[ALICE, BOB], port=1)
    b = Mosquitto(tmp_path / "broker", password_file=files["passwd"], acl_file=files["acl"])
    b.start()
    yield b
    b.stop()


def health(device: str, seq: int) -> bytes:
    return messages.encode(messages.message(messages.HEALTH, device, "0000abcd", seq, 1795454769, {
        "uptime_s": 1, "heap_free": 1, "heap_max_block": 1, "errors": {}, "buffered": 0}))


def test_a_device_may_publish_only_as_itself(broker: Mosquitto) -> None:
    gateway = Client(broker.port, GATEWAY, "gateway-pass")
    alice = Client(broker.port, ALICE, device_password(SECRET, ALICE))
    try:
        wait_for(lambda: gateway.connected.is_set() and alice.connected.is_set(), 10, "logins")
        gateway.client.subscribe(topics.school_uplink_filter(SCHOOL), qos=1)
        alice.client.subscribe(topics.device_downlink_filter(SCHOOL, BOB), qos=1)
        alice.client.subscribe(topics.device_downlink_filter(SCHOOL, ALICE), qos=1)
        # Alice forges Bob's id, then speaks as herself: only her own message gets through.
        alice.client.publish(topics.up(SCHOOL, BOB, topics.HEALTH), health(BOB, 1), qos=1).wait_for_publish(5)
        alice.client.publish(topics.up(SCHOOL, ALICE, topics.HEALTH), health(ALICE, 2), qos=1)
        wait_for(lambda: gateway.received, 10, "alice's own message")
        gateway.client.publish(topics.down(SCHOOL, BOB, topics.EVENT_ACK), b"{}", qos=1).wait_for_publish(5)
        gateway.client.publish(topics.down(SCHOOL, ALICE, topics.EVENT_ACK), b"{}", qos=1).wait_for_publish(5)
        wait_for(lambda: alice.received, 10, "alice's downlink")
        assert [t for t, _ in gateway.received] == [topics.up(SCHOOL, ALICE, topics.HEALTH)]
        assert [t for t, _ in alice.received] == [topics.down(SCHOOL, ALICE, topics.EVENT_ACK)]
    finally:
        gateway.close()
        alice.close()


def test_no_device_can_take_the_gateways_or_another_devices_place(broker: Mosquitto) -> None:
    gateway = Client(broker.port, GATEWAY, "gateway-pass", clean_session=False)
    will = (topics.up(SCHOOL, BOB, topics.STATUS), b'{"kind":"will"}')
    bob = Client(broker.port, BOB, device_password(SECRET, BOB), will=will)
    impostors: list[Client] = []
    try:
        wait_for(lambda: gateway.connected.is_set() and bob.connected.is_set(), 10, "logins")
        gateway.subscribe(topics.school_uplink_filter(SCHOOL))
        # Alice logs in with her own credentials but the gateway's client id, then with Bob's.
        for taken in (GATEWAY, BOB):
            impostor = Client(broker.port, ALICE, device_password(SECRET, ALICE), client_id=taken)
            impostors.append(impostor)
            wait_for(lambda i=impostor: i.connected.is_set() or i.refused, 10, "the broker's answer")
        # Each one is only Alice: what she publishes reaches the gateway on its first connection, and
        # Bob's will (sent only if the broker dropped him) never comes.
        for impostor in impostors:
            impostor.client.publish(topics.up(SCHOOL, ALICE, topics.HEALTH), health(ALICE, 1), qos=1)
        bob.client.publish(topics.up(SCHOOL, BOB, topics.HEALTH), health(BOB, 2), qos=1)
        wait_for(lambda: topics.up(SCHOOL, BOB, topics.HEALTH) in [t for t, _ in gateway.received], 10,
                 "bob's own message")
        assert (gateway.connects, gateway.disconnects) == (1, 0)
        assert (bob.connects, bob.disconnects) == (1, 0)
        assert topics.up(SCHOOL, BOB, topics.STATUS) not in [t for t, _ in gateway.received]
    finally:
        for client in (gateway, bob, *impostors):
            client.close()


def test_the_broker_drops_payloads_over_the_protocols_limit(broker: Mosquitto) -> None:
    gateway = Client(broker.port, GATEWAY, "gateway-pass")
    alice = Client(broker.port, ALICE, device_password(SECRET, ALICE))
    try:
        wait_for(lambda: gateway.connected.is_set() and alice.connected.is_set(), 10, "logins")
        gateway.subscribe(topics.school_uplink_filter(SCHOOL))
        topic = topics.up(SCHOOL, ALICE, topics.HEALTH)
        alice.client.publish(topic, b" " * (limits.MAX_MESSAGE_BYTES + 1), qos=1).wait_for_publish(5)
        alice.client.publish(topic, b"x" * limits.MAX_MESSAGE_BYTES, qos=1).wait_for_publish(5)
        wait_for(lambda: gateway.received, 10, "the message within the limit")
        assert [len(p) for _, p in gateway.received] == [limits.MAX_MESSAGE_BYTES]
    finally:
        gateway.close()
        alice.close()


def test_the_gateway_logs_in_with_only_a_password_configured(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    port = free_port()
    config.write_text(f'school = "{SCHOOL}"\nschool_secret = "{"s" * 20}"\ndata_dir = "{tmp_path / "d"}"\n'
                      f'[broker]\nport = {port}\npassword = "gw-pass"\ndevice_secret = "{SECRET}"\n')
    settings = load_settings(config)
    files = write_broker_files(tmp_path / "conf", school=SCHOOL, device_secret=SECRET,
                               gateway_user=GATEWAY, gateway_password="gw-pass", devices=[ALICE],
                               port=port, host="127.0.0.1")
    broker = Mosquitto(tmp_path / "broker", config=files["conf"])
    metrics = Metrics()
    link = BrokerLink(settings, lambda batch: None, metrics)
    try:
        broker.start()
        link.start()
        wait_for(lambda: link.connected.is_set() or metrics.get("broker_connect_failures"), 10, "the broker's answer")
        assert link.connected.is_set() and not metrics.get("broker_connect_failures")
    finally:
        link.stop()
        broker.stop()


def test_the_generated_config_ties_client_ids_to_user_names(tmp_path: Path) -> None:
    files = write_broker_files(tmp_path, school=SCHOOL, device_secret=SECRET, gateway_user=GATEWAY,
                               gateway_password="gateway-pass", devices=[ALICE], port=1883)
    lines = files["conf"].read_text().splitlines()
    assert lines[0].startswith("listener 1883 ")
    # A listener's setting: it must follow its listener line.
    assert "use_username_as_clientid true" in lines[1:]
    assert f"message_size_limit {limits.MAX_MESSAGE_BYTES}" in lines


@pytest.mark.parametrize("user,password", [(ALICE, "wrong"), ("esp32-cccccccccccc", "anything"), ("", "")])
def test_wrong_or_missing_credentials_are_refused(broker: Mosquitto, user: str, password: str) -> None:
    client = Client(broker.port, user or "anonymous", password) if user else None
    if client is None:
        anonymous = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="anon")
        refused: list[str] = []
        anonymous.on_connect = lambda c, u, f, reason, p: refused.append(str(reason))
        anonymous.connect("127.0.0.1", broker.port)
        anonymous.loop_start()
        try:
            wait_for(lambda: refused, 10, "the broker's answer")
            assert refused[0] != "Success"
        finally:
            anonymous.loop_stop()
        return
    try:
        wait_for(lambda: client.refused or client.connected.is_set(), 10, "the broker's answer")
        assert client.refused and not client.connected.is_set()
    finally:
        client.close()


def test_the_command_writes_the_files_for_listed_devices(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'school = "{SCHOOL}"\nschool_secret = "{"s" * 20}"\ndata_dir = "{tmp_path / "d"}"\n'
                      f'[broker]\npassword = "gw"\ndevice_secret = "{SECRET}"\n')
    devices = tmp_path / "devices.txt"
    devices.write_text(f"# classroom 1\n{ALICE}\n\n{BOB}  # classroom 2\n")
    done = subprocess.run([sys.executable, "-m", "classops_cli", "gateway", "mosquitto-config", "--config",
                           str(config), "--devices", str(devices), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    users = [line.split(":")[0] for line in (tmp_path / "out" / "passwd").read_text().splitlines()]
    assert users == [GATEWAY, ALICE, BOB]
    devices.write_text("esp32-nothex\n")
    done = subprocess.run([sys.executable, "-m", "classops_cli", "gateway", "mosquitto-config", "--config",
                           str(config), "--devices", str(devices), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "line 1" in done.stderr and "esp32-nothex" in done.stderr
