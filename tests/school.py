"""A school set up as docs/gateway.md tells its admin to, for tests that play devices against it.

The broker runs on the files `classops gateway mosquitto-config` writes (password file, ACL, tuning),
so each device logs in with its own derived password and the broker enforces the ACL; the cloud is a
real server; the gateway is a real process, whose PID a test can watch.
"""

from __future__ import annotations

import secrets
import subprocess
import threading
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paho.mqtt.client as mqtt

from gateway.broker_config import device_password
from simulator.stack import (
    CloudServer,
    GatewayProcess,
    Mosquitto,
    StackError,
    classops_command,
    free_port,
    http_json,
    wait_for,
)

ADMIN_USER = "school-admin"
ADMIN_PASSWORD = "school-admin-pass-123"
START_TIMEOUT_S = 30.0
RECONNECT_DELAY_S = 0.05


class CredentialedSchool:
    """Cloud, broker and gateway of one school whose broker knows every device's credentials."""

    def __init__(self, root: Path, *, school: str, devices: Iterable[str], heartbeat_s: float = 2.0,
                 gateway_env: dict[str, str] | None = None) -> None:
        """`gateway_env`: CLASSOPS_GATEWAY_* variables for the gateway, over its config file."""
        self.root = root
        self.gateway_env = gateway_env
        self.school = school
        self.devices = list(devices)
        self.school_secret = secrets.token_hex(16)
        self.device_secret = secrets.token_hex(16)
        self.gateway_password = secrets.token_hex(12)
        self.heartbeat_s = heartbeat_s
        self.cloud = CloudServer(root / "cloud")
        self.broker: Mosquitto | None = None
        self.gateway: GatewayProcess | None = None
        self.broker_files = root / "broker-files"
        self.token = ""

    def start(self) -> None:
        """Bring up the cloud, write the broker's files with the CLI, start the broker and the gateway."""
        self.cloud.start()
        self.cloud.add_school(self.school, f"School {self.school}")
        # Two commands of a few seconds each (an interpreter, the cloud's imports), independent of each other.
        with ThreadPoolExecutor(max_workers=2) as pool:
            user = pool.submit(self.cloud.add_user, ADMIN_USER, ADMIN_PASSWORD, "school_admin", self.school)
            gateway_token = pool.submit(self.cloud.add_gateway, self.school).result()["token"]
            user.result()
        self.token = self.cloud.login(ADMIN_USER, ADMIN_PASSWORD)
        self.gateway = GatewayProcess(self.root / "gateway", school=self.school, school_secret=self.school_secret,
                                      broker_port=free_port(), cloud_url=self.cloud.url,
                                      cloud_token=gateway_token, heartbeat_s=self.heartbeat_s,
                                      broker_password=self.gateway_password, device_secret=self.device_secret)
        self.gateway.env = self.gateway_env
        device_list = self.root / "devices.txt"
        device_list.write_text("".join(f"{d}\n" for d in self.devices))
        done = subprocess.run([*classops_command(), "gateway", "mosquitto-config", "--config",
                               str(self.gateway.config_path), "--devices", str(device_list), "--out",
                               str(self.broker_files), "--listen", "127.0.0.1"],
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise StackError(f"mosquitto-config failed:\n{done.stdout}{done.stderr}")
        self.broker = Mosquitto(self.root / "broker", config=self.broker_files / "mosquitto.conf")
        self.broker.start()
        self.gateway.start()
        wait_for(lambda: self.broker_connected() or self.gateway_alive_or_raise(), START_TIMEOUT_S,
                 "the gateway's broker session", interval=0.1)

    def stop(self) -> None:
        """Stop whatever was started, gateway first."""
        for part in (self.gateway, self.broker, self.cloud):
            if part is not None:
                part.stop()

    @property
    def broker_port(self) -> int:
        """The port the broker listens on (the one in the gateway's config)."""
        assert self.broker is not None
        return self.broker.port

    def broker_setting(self, name: str) -> int | None:
        """A numeric setting of the generated mosquitto.conf, None when it is not there."""
        for line in (self.broker_files / "mosquitto.conf").read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == name:
                return int(parts[1])
        return None

    def password(self, device: str) -> str:
        """A device's MQTT password, as `classops gateway device-password` prints it."""
        return device_password(self.device_secret, device)

    @property
    def gateway_user(self) -> str:
        """The gateway's MQTT user name, which mosquitto-config wrote first into the password file."""
        return (self.broker_files / "passwd").read_text().split(":", 1)[0]

    @property
    def gateway_pid(self) -> int | None:
        """The gateway process's PID while it runs, else None."""
        if self.gateway is None or not self.gateway.running or self.gateway.proc is None:
            return None
        return self.gateway.proc.pid

    def gateway_alive_or_raise(self) -> bool:
        """False while the gateway runs; StackError with its log's tail once it has exited."""
        assert self.gateway is not None
        return self.gateway.check_alive()

    def status(self) -> dict | None:
        """The gateway's /api/status, or None when it does not answer."""
        assert self.gateway is not None
        try:
            code, body = http_json("GET", self.gateway.status_url + "/api/status", timeout=5.0)
        except OSError:
            return None
        return body if code == 200 and isinstance(body, dict) else None

    def broker_connected(self) -> bool:
        """True when the gateway's status says it is connected to the broker."""
        status = self.status()
        return bool(status and status["broker_connected"])

    def metrics(self) -> dict[tuple[str, str], float]:
        """The gateway's /metrics as {(name without prefix and _total, label value): value}."""
        assert self.gateway is not None
        with_prefix = "classops_gateway_"
        with urllib.request.urlopen(self.gateway.status_url + "/metrics", timeout=5.0) as resp:
            text = resp.read().decode()
        out: dict[tuple[str, str], float] = {}
        for line in text.splitlines():
            if not line.startswith(with_prefix):
                continue
            series, value = line.rsplit(" ", 1)
            name, _, label = series[len(with_prefix):].partition("{")
            label = label.rstrip("}").partition("=")[2].strip('"') if label else ""
            out[(name.removesuffix("_total"), label)] = float(value)
        return out

    def attendance(self) -> list[dict]:
        """Every attendance event of the school in the cloud, as its admin sees them."""
        events: list[dict] = []
        page = 5000
        while True:
            code, body = http_json("GET", f"{self.cloud.url}/api/v1/attendance-events?school={self.school}"
                                   f"&limit={page}&offset={len(events)}", token=self.token)
            assert code == 200, body
            events += body["items"]
            if len(body["items"]) < page:
                return events


class DeviceConnection:
    """A paho client logged in with a device's credentials; remembers whether the broker dropped it."""

    def __init__(self, port: int, user: str, password: str, *, client_id: str | None = None,
                 will: tuple[str, bytes] | None = None) -> None:
        self.user = user
        self.port = port
        self._password = password
        self._client_id = client_id or user
        self._will = will
        self.connected = threading.Event()
        self.refused: list[str] = []
        self.unexpected_disconnects: list[str] = []
        self._closing = False
        self.client = self._connect()

    def _connect(self) -> mqtt.Client:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self._client_id)
        client.username_pw_set(self.user, self._password)
        if self._will is not None:
            client.will_set(self._will[0], self._will[1], qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        # paho's network thread sleeps out the reconnect delay before it sees loop_stop(): a refused client
        # would take a second to close.
        client.reconnect_delay_set(RECONNECT_DELAY_S, 1)
        client.connect_async("127.0.0.1", self.port, keepalive=30)
        client.loop_start()
        return client

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                    reason: mqtt.ReasonCode, properties: object) -> None:
        if reason.is_failure:
            self.refused.append(str(reason))
        else:
            self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: mqtt.DisconnectFlags,
                       reason: mqtt.ReasonCode, properties: object) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        if was_connected and not self._closing:
            self.unexpected_disconnects.append(str(reason))

    def wait_answer(self, timeout: float = 10.0) -> bool:
        """Wait for the broker's CONNACK; True if it let the client in."""
        wait_for(lambda: self.connected.is_set() or self.refused, timeout, f"the broker's answer to {self.user}")
        return self.connected.is_set()

    def pause(self) -> None:
        """Disconnect on purpose (not counted as a drop); `resume` connects again."""
        self._closing = True
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()

    def resume(self) -> None:
        """Connect again after `pause`, on a new client (paho's network thread starts once per client)."""
        self._closing = False
        on_message = self.client.on_message
        self.client = self._connect()
        self.client.on_message = on_message
        wait_for(self.connected.is_set, 10, f"{self.user} to reconnect")

    def close(self) -> None:
        """Disconnect cleanly (no will) and stop the network thread."""
        self._closing = True
        self.client.disconnect()
        self.client.loop_stop()
