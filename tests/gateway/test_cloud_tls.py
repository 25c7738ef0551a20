"""HTTPS between gateway and cloud with a county's own certificate authority, on loopback, all real:
`classops cloud serve --certfile --keyfile`, `classops gateway run` with [cloud] ca_file, Mosquitto, openssl."""

from __future__ import annotations

import shutil
import sqlite3
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway.config import load_settings
from gateway.errors import ConfigError
from protocol import messages, topics
from simulator.stack import CloudServer, ManagedProcess, Mosquitto, classops_command, free_port, gateway_toml, wait_for

pytestmark = pytest.mark.slow

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
SECRET = "s3cret-s3cret-s3cret"
BOOT = "1234abcd"
P256 = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2")


def _openssl(*args: str | Path) -> None:
    subprocess.run([OPENSSL, *map(str, args)], check=True, capture_output=True, timeout=30)


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    """A certificate authority: its certificate and key."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "ca.pem", folder / "ca.key"
    _openssl("req", "-x509", *P256, "-keyout", key, "-out", cert, "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def make_server_cert(folder: Path, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A certificate for the cloud on 127.0.0.1, signed by `ca`: its certificate and key."""
    cert, key = folder / "server.pem", folder / "server.key"
    _openssl("req", "-x509", "-CA", ca[0], "-CAkey", ca[1], *P256, "-keyout", key, "-out", cert,
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-addext", "extendedKeyUsage=serverAuth", "-addext", "basicConstraints=critical,CA:FALSE",
             "-addext", "keyUsage=critical,digitalSignature")
    return cert, key


class HttpsCloud(CloudServer):
    """The cloud serving HTTPS itself, with a certificate its clients check against `ca_file`."""

    def __init__(self, workdir: Path, certfile: Path, keyfile: Path, ca_file: Path) -> None:
        super().__init__(workdir)
        self.argv += ["--certfile", str(certfile), "--keyfile", str(keyfile)]
        self.context = ssl.create_default_context(cafile=ca_file)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/api/v1/healthz", timeout=1.0, context=self.context) as resp:
                return resp.status == 200
        except OSError:
            return False

    def count(self, sql: str, *args: object) -> int:
        """A number from the cloud's database (SQLite), read on a connection of the test's own."""
        path = self.database_url.removeprefix("sqlite:///")
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return int(db.execute(sql, args).fetchone()[0])


class Gateway(ManagedProcess):
    """`classops gateway run` for one school, trusting `ca_file` for the cloud's certificate."""

    def __init__(self, workdir: Path, school: str, broker_port: int, cloud: CloudServer, ca_file: Path) -> None:
        workdir.mkdir(parents=True)
        self.school = school
        self.status_port = free_port()
        self.db_path = workdir / "data" / "gateway.db"
        token = cloud.add_gateway(school)["token"]
        text = gateway_toml(school=school, school_secret=SECRET, data_dir=workdir / "data", broker_port=broker_port,
                            cloud_url=cloud.url, cloud_token=token, heartbeat_s=1.0, status_port=self.status_port)
        config = workdir / "gateway.toml"
        config.write_text(text.replace("[cloud]\n", f'[cloud]\nca_file = "{ca_file}"\n'))
        assert load_settings(config).cloud.ca_file == ca_file
        super().__init__(f"gateway-{school}", [*classops_command(), "gateway", "run", "--config", str(config)],
                         workdir / "gateway.log")

    def metric(self, name: str) -> float:
        """A sample of the gateway's Prometheus exposition, 0 when it is not there (yet)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.status_port}/metrics", timeout=2) as resp:
                lines = resp.read().decode().splitlines()
        except OSError:
            return 0.0
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name))

    def backlog(self) -> int | None:
        """Records waiting for the cloud; None before the store exists."""
        if not self.db_path.exists():
            return None
        with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT COUNT(*) FROM record WHERE sync_state = 0").fetchone()[0])


def publish_tap(port: int, school: str, device: str) -> None:
    """A card tap from `device`, published as the device does (QoS 1)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        payload = messages.encode(messages.message(messages.ATTENDANCE, device, BOOT, 1, 1795454770,
                                                   {"card": "04a1b2c3", "hist": False}))
        client.publish(topics.up(school, device, topics.ATTENDANCE), payload, qos=1).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()


@pytest.fixture
def county(tmp_path: Path) -> Iterator[tuple[Mosquitto, HttpsCloud, Path, Path]]:
    """Mosquitto, and the cloud serving HTTPS with a certificate of the county's CA; also another CA."""
    county_ca = make_ca(tmp_path / "county-ca", "County CA")
    other_ca = make_ca(tmp_path / "other-ca", "Some other CA")
    certfile, keyfile = make_server_cert(tmp_path / "county-ca", county_ca)
    broker = Mosquitto(tmp_path / "broker")
    cloud = HttpsCloud(tmp_path / "cloud", certfile, keyfile, county_ca[0])
    try:
        broker.start()
        cloud.start()
        for school in ("S001", "S002"):
            cloud.add_school(school, f"School {school}")
        yield broker, cloud, county_ca[0], other_ca[0]
    finally:
        cloud.stop()
        broker.stop()


def test_a_gateway_syncs_over_https_and_refuses_a_certificate_of_another_ca(county, tmp_path):
    broker, cloud, county_ca, other_ca = county
    trusting = Gateway(tmp_path / "gw1", "S001", broker.port, cloud, county_ca)
    mistrusting = Gateway(tmp_path / "gw2", "S002", broker.port, cloud, other_ca)
    try:
        for gateway in (trusting, mistrusting):
            gateway.start()
            wait_for(lambda g=gateway: g.metric("classops_gateway_broker_connected") or g.check_alive(), 20,
                     f"{gateway.name} connected to the broker")
        publish_tap(broker.port, "S001", "esp32-246f28000001")
        publish_tap(broker.port, "S002", "esp32-246f28000002")

        wait_for(lambda: cloud.count("SELECT COUNT(*) FROM attendance_event WHERE school_code = ?", "S001") == 1,
                 20, "the tap of S001 in the cloud")
        wait_for(lambda: trusting.backlog() == 0, 10, "S001's gateway to mark its tap synced")
        wait_for(lambda: mistrusting.metric("classops_gateway_sync_failures_total") >= 2, 20,
                 "S002's gateway to fail to sync twice")

        assert mistrusting.backlog() == 1
        assert cloud.count("SELECT COUNT(*) FROM attendance_event WHERE school_code = ?", "S002") == 0
        assert cloud.count("SELECT COUNT(*) FROM gateway WHERE school_code = ? AND last_sync_at IS NOT NULL",
                           "S002") == 0
        assert trusting.metric("classops_gateway_sync_failures_total") == 0
        assert "CERTIFICATE_VERIFY_FAILED" in mistrusting.log_tail(200)
    finally:
        trusting.stop()
        mistrusting.stop()


def test_a_ca_file_that_holds_no_certificate_is_a_config_error(tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    config = tmp_path / "gateway.toml"
    config.write_text(gateway_toml(school="S001", school_secret=SECRET, data_dir=tmp_path / "data", broker_port=1883,
                                   cloud_url="https://127.0.0.1:8443", cloud_token="t")
                      .replace("[cloud]\n", f'[cloud]\nca_file = "{junk}"\n'))

    with pytest.raises(ConfigError, match=r"line \d+: cloud\.ca_file: .*cannot read certificates \(PEM\)"):
        load_settings(config)


def test_serve_refuses_a_key_that_does_not_go_with_its_certificate(tmp_path):
    ca = make_ca(tmp_path / "ca", "County CA")
    certfile, _ = make_server_cert(tmp_path / "ca", ca)

    done = subprocess.run(
        [*classops_command(), "cloud", "serve", "--port", str(free_port()), "--database-url",
         f"sqlite:///{tmp_path / 'cloud.db'}", "--certfile", str(certfile), "--keyfile", str(ca[1])],
        capture_output=True, text=True, timeout=60,
    )

    assert done.returncode == 2
    assert f"error: cannot serve HTTPS with {certfile}" in done.stderr
