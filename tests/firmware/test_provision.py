"""Provisioning over the MicroPython raw REPL, against the real unix-port VM on a pseudo-terminal.

The VM's REPL runs on one pty; the provisioning opens the slave of a second pty with pyserial, and a
thread copies bytes between the two masters, as a USB-serial adapter joins a host and a chip.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import select
import subprocess
import threading
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from classops_cli import main as classops
from simulator.firmware import micropython_binary, mpy_cross_binary
from simulator.provision import ProvisionError, device_config, esptool_command

DEVICE = "esp32-a1b2c3d4e5f6"
needs_mpy_cross = pytest.mark.skipif(mpy_cross_binary() is None, reason="mpy-cross is not installed")


class PtyBoard:
    """A unix-port MicroPython REPL reachable at `self.port`, its current directory `cwd`."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        vm_master, vm_slave = pty.openpty()
        self._host_master, host_slave = pty.openpty()
        tty.setraw(host_slave)
        self.port = os.ttyname(host_slave)
        self._host_slave = host_slave
        self._vm_master = vm_master
        self.proc = subprocess.Popen([micropython_binary(), "-i"], stdin=vm_slave, stdout=vm_slave,
                                     stderr=vm_slave, cwd=cwd, close_fds=True)
        os.close(vm_slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._bridge, daemon=True)
        self._thread.start()

    def _bridge(self) -> None:
        pair = {self._vm_master: self._host_master, self._host_master: self._vm_master}
        while not self._stop.is_set():
            ready, _, _ = select.select(list(pair), [], [], 0.05)
            for fd in ready:
                try:
                    os.write(pair[fd], os.read(fd, 4096))
                except OSError:
                    return

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=5)
        self._stop.set()
        self._thread.join(timeout=2)
        for fd in (self._vm_master, self._host_master, self._host_slave):
            os.close(fd)


@pytest.fixture
def board(tmp_path: Path) -> Iterator[PtyBoard]:
    flash = tmp_path / "flash"
    flash.mkdir()
    vm = PtyBoard(flash)
    yield vm
    vm.close()


def _provision_args(port: str, *extra: str) -> list[str]:
    return ["device", "provision", "--port", port, "--role", "sensor", "--school", "T001",
            "--device-id", DEVICE, "--wifi-ssid", "school-iot", "--wifi-password", "s3cret",
            "--broker-host", "10.0.0.2", "--broker-port", "1884", "--username", "dev", "--password", "pw", *extra]


@needs_mpy_cross
def test_build_writes_every_module_and_a_manifest(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    assert classops(["firmware", "build", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    paths = {entry["path"] for entry in manifest["files"]}
    assert {"main.py", "entry.mpy", "loader.mpy", "app/config.mpy", "app/roles/sensor.mpy", "hal/esp32.mpy",
            "protocol/messages.mpy"} <= paths
    assert not any(p.endswith(".py") for p in paths - {"main.py"})
    for entry in manifest["files"]:
        data = (out / entry["path"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["size"] == len(data)
    assert (out / "main.py").read_text().startswith('"""Firmware entry point')
    # Building again replaces the bundle.
    assert classops(["firmware", "build", "--out", str(out)]) == 0


@needs_mpy_cross
def test_provision_writes_bundle_and_config_over_the_raw_repl(tmp_path: Path, board: PtyBoard) -> None:
    bundle = tmp_path / "bundle"
    assert classops(["firmware", "build", "--out", str(bundle)]) == 0
    assert classops(_provision_args(board.port, "--bundle", str(bundle))) == 0

    manifest = json.loads((bundle / "manifest.json").read_text())
    for entry in manifest["files"]:
        written = board.cwd / entry["path"]
        assert hashlib.sha256(written.read_bytes()).hexdigest() == entry["sha256"], entry["path"]
    assert (board.cwd / "manifest.json").read_bytes() == (bundle / "manifest.json").read_bytes()
    config = json.loads((board.cwd / "config.json").read_text())
    assert config == {
        "device_id": DEVICE, "school": "T001", "role": "sensor", "wifi_ssid": "school-iot",
        "wifi_password": "s3cret", "broker_host": "10.0.0.2", "broker_port": 1884, "username": "dev",
        "password": "pw",
    }


def test_provision_config_only_without_device_id(board: PtyBoard, capsys: pytest.CaptureFixture[str]) -> None:
    args = [a for a in _provision_args(board.port) if a not in ("--device-id", DEVICE)]
    assert classops(args) == 0
    config = json.loads((board.cwd / "config.json").read_text())
    assert "device_id" not in config and config["role"] == "sensor"
    assert "config.json" in capsys.readouterr().out


def test_invalid_config_is_refused_before_touching_the_port(capsys: pytest.CaptureFixture[str]) -> None:
    args = _provision_args("/nonexistent/tty")
    args[args.index("sensor")] = "toaster"
    assert classops(args) == 2
    assert "role must be one of" in capsys.readouterr().err
    with pytest.raises(ProvisionError, match="device_id"):
        device_config(device_id="esp32-XYZ", school="T001", broker_host="h")
    with pytest.raises(ProvisionError, match="broker_port"):
        device_config(school="T001", broker_host="h", broker_port=70000)


def test_unreachable_port_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert classops(_provision_args("/nonexistent/tty")) == 1
    assert "cannot open /nonexistent/tty" in capsys.readouterr().err


def test_flash_with_missing_image_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "missing.bin"
    assert classops(["firmware", "flash", "--port", "/dev/ttyUSB0", "--image", str(image)]) == 2
    assert f"firmware image {image} does not exist" in capsys.readouterr().err


def test_flash_runs_esptool_write_flash(tmp_path: Path) -> None:
    image = tmp_path / "esp32.bin"
    commands = esptool_command("/dev/ttyUSB0", image, erase=True)
    assert commands[0][-1] == "erase_flash"
    assert commands[1][1:3] == ["-m", "esptool"]
    assert commands[1][-4:] == ["write_flash", "-z", "0x1000", str(image)]
    assert "--port" in commands[1] and "/dev/ttyUSB0" in commands[1]


def test_device_errors_come_back_with_the_traceback(board: PtyBoard) -> None:
    import serial

    from simulator.provision import RawRepl

    with serial.Serial(board.port, 115200, timeout=0.1) as port:
        repl = RawRepl(port)
        repl.enter()
        assert repl.exec("print(6 * 7)").strip() == "42"
        with pytest.raises(ProvisionError, match="ZeroDivisionError"):
            repl.exec("1 / 0")
        assert repl.exec("print('still here')").strip() == "still here"
        repl.exit()
