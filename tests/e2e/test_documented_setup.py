"""The set-up docs/gateway.md describes works as written: its TOML, its commands, the broker files that
`mosquitto-config` writes, a real Mosquitto on them, a real cloud, and a device tapping through it all.

The TOML and the commands are read from the page, not copied: only what a test must change (ports, the
paths of files and of the serial display, the cloud's URL and token) is changed, and the test checks that
nothing else was."""

from __future__ import annotations

import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway.privacy import card_pseudonym
from simulator.display import VirtualDisplay
from simulator.firmware import FirmwareProcess, write_device_config
from simulator.hwbus import HardwareBus
from simulator.stack import CloudServer, ManagedProcess, Mosquitto, classops_command, free_port, http_json, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DOC = Path(__file__).resolve().parents[2] / "docs" / "gateway.md"
DEADLINE_S = 60.0
CARD = "04a1b2c3"


def blocks(language: str) -> list[str]:
    """The fenced code blocks of docs/gateway.md in `language` ("" for those without one)."""
    found, block, fence = [], [], None
    for line in DOC.read_text().splitlines(keepends=True):
        if fence is None and line.startswith("```"):
            fence, block = line[3:].strip(), []
        elif fence is not None and line.rstrip() == "```":
            if fence == language:
                found.append("".join(block))
            fence = None
        elif fence is not None:
            block.append(line)
    return found


def commands() -> list[list[str]]:
    """Every `classops ...` command of the page's shell blocks, as argv lists."""
    out = []
    for block in blocks("sh"):
        for line in block.splitlines():
            argv = shlex.split(line, comments=True)
            if argv and argv[0] == "classops":
                out.append(argv)
    return out


def set_key(text: str, table: str, key: str, value: str) -> str:
    """`text` (TOML) with `key` of `[table]` ("" for the top level) set to `value` (TOML) on its own line."""
    lines, current, found = [], "", False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            current = stripped.strip("[]")
        elif current == table and "=" in stripped and stripped.split("=", 1)[0].strip() == key:
            line, found = f"{key} = {value}", True
        lines.append(line)
    assert found, f"the documented config has no {table}.{key}"
    return "\n".join(lines) + "\n"


def test_every_command_on_the_page_exists_with_its_flags() -> None:
    from classops_cli import build_parser

    found = commands()
    assert {argv[2] for argv in found} >= {"run", "status", "mosquitto-config", "device-password"}
    for argv in found:
        # argparse exits on an unknown subcommand or flag.
        args = build_parser().parse_args(argv[1:])
        assert callable(args.func), argv


def test_the_page_shows_one_complete_gateway_config() -> None:
    (config,) = [b for b in blocks("toml") if "school =" in b]
    data = tomllib.loads(config)
    assert data["broker"]["password"] and data["broker"]["device_secret"]
    assert "username" not in data["broker"]  # the default user name is the one mosquitto-config writes


def test_the_pages_example_of_a_bad_file_is_what_the_gateway_says(tmp_path: Path) -> None:
    (documented,) = [b for b in blocks("toml") if "school =" in b]
    (example,) = [b for b in blocks("") if "is invalid:" in b]
    lines, current = [], ""
    for line in documented.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            current = stripped
        lines.append("port = 99999" if current == "[broker]" and stripped.startswith("port =") else line)
        if stripped == "[cloud]":
            lines.append('scool = "S001"')
    config = tmp_path / "gateway.toml"
    config.write_text("\n".join(lines) + "\n")
    done = subprocess.run([*classops_command(), "gateway", "run", "--config", str(config)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.replace(str(config), "/etc/classops/gateway.toml") == example


class School:
    """What the page sets up, each part a real process, torn down whatever happens."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cloud = CloudServer(root / "cloud")
        self.display = VirtualDisplay()
        self.bus = HardwareBus()
        self.broker: Mosquitto | None = None
        self.gateway: ManagedProcess | None = None
        self.device: FirmwareProcess | None = None

    def stop(self) -> None:
        for part in (self.device, self.gateway, self.broker, self.cloud):
            if part is not None:
                part.stop()
        self.bus.stop()
        self.display.stop()


@pytest.fixture
def school(tmp_path: Path):
    s = School(tmp_path)
    try:
        yield s
    finally:
        s.stop()


def run(argv: list[str], cwd: Path) -> str:
    """One documented command, `classops` being this checkout's; its output, or the test fails."""
    done = subprocess.run([*classops_command(), *argv[1:]], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{shlex.join(argv)} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


def test_a_tap_arrives_in_the_cloud_through_the_documented_setup(school: School, tmp_path: Path) -> None:
    (documented,) = [b for b in blocks("toml") if "school =" in b]
    code = tomllib.loads(documented)["school"]
    school.cloud.start()
    school.cloud.add_school(code, "The documented school")
    school.cloud.add_user("admin", "school-pass-123", "school_admin", code)
    token = school.cloud.add_gateway(code)["token"]
    school.display.start()
    school.bus.start()

    changes: dict[tuple[str, str], Any] = {
        ("", "data_dir"): str(tmp_path / "var"),
        ("broker", "port"): free_port(),
        ("cloud", "url"): school.cloud.url,
        ("cloud", "token"): token,
        ("status", "port"): free_port(),
        ("displays", "port"): school.display.port,
    }
    text = documented
    for (table, key), value in changes.items():
        text = set_key(text, table, key, f'"{value}"' if isinstance(value, str) else str(value))
    config = tmp_path / "gateway.toml"
    config.write_text(text)
    expected, got = tomllib.loads(documented), tomllib.loads(text)
    for (table, key), value in changes.items():
        place = expected if not table else expected[table]
        for row in place if isinstance(place, list) else [place]:
            row[key] = value
    assert got == expected, "the test changed more of the documented config than it must"

    # The page's commands, with its placeholders: "..." and /etc/classops/gateway.toml are the config,
    # /etc/mosquitto/classops the broker's folder; devices.txt is relative, as written.
    broker_dir = tmp_path / "mosquitto"
    places = {"...": str(config), "/etc/classops/gateway.toml": str(config), "/etc/mosquitto/classops": str(broker_dir)}
    documented_commands = {argv[2]: [places.get(a, a) for a in argv] for argv in commands()}
    device = documented_commands["device-password"][-1]
    (tmp_path / "devices.txt").write_text(f"{device}\n")
    run(documented_commands["mosquitto-config"], tmp_path)
    password = run(documented_commands["device-password"], tmp_path).strip()

    school.broker = Mosquitto(tmp_path / "broker-run", config=broker_dir / "mosquitto.conf")
    assert school.broker.port == changes[("broker", "port")]
    school.broker.start()
    school.gateway = ManagedProcess("gateway", [*classops_command(), *documented_commands["run"][1:]],
                                    tmp_path / "gateway.log")
    school.gateway.start()

    write_device_config(tmp_path / device / "config.json", device_id=device, school=code, role="attendance",
                        broker_port=school.broker.port, username=device, password=password, health_s=2,
                        hwbus="{}:{}".format(*school.bus.address))
    school.device = FirmwareProcess([tmp_path / device / "config.json"], log_path=tmp_path / device / "firmware.log")
    school.device.start()
    assert school.bus.wait_connected(device, DEADLINE_S), school.device.log_path.read_text()
    assert school.bus.tap(device, CARD) == "ok"

    admin = school.cloud.login("admin", "school-pass-123")
    gateway = school.gateway

    def arrived() -> list[dict[str, Any]]:
        gateway.check_alive()
        status, body = http_json("GET", school.cloud.url + "/api/v1/attendance-events", token=admin)
        assert status == 200, body
        return list(body["items"])

    events = wait_for(arrived, DEADLINE_S, "the tap in the cloud", interval=0.25)
    secret = tomllib.loads(documented)["school_secret"]
    assert [(e["device_id"], e["card_pseudonym"]) for e in events] == [(device, card_pseudonym(secret, CARD))]

    # The serial-wired display of [[displays]] is a device of the school too.
    display_id = tomllib.loads(documented)["displays"][0]["device_id"]

    def display_online() -> bool:
        status, body = http_json("GET", school.cloud.url + f"/api/v1/devices?school={code}", token=admin)
        return status == 200 and any(d["id"] == display_id and d["presence"] == "online" for d in body)

    wait_for(display_online, DEADLINE_S, "the serial display online in the cloud", interval=0.25)
    status_text = run(documented_commands["status"], tmp_path)
    assert "running, broker connected" in status_text, status_text
