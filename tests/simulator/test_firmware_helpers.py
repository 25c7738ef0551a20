"""Config files and command lines for the real firmware, and one VM run through FirmwareProcess."""

from __future__ import annotations

import json
import subprocess

import pytest

from simulator.firmware import (
    FirmwareProcess,
    compiled_modules,
    default_heapsize,
    firmware_command,
    firmware_dir,
    write_device_config,
)

DEVICE = "esp32-a1b2c3d4e5f6"


def test_write_device_config_fills_defaults_and_refuses_unknown_fields(tmp_path):
    path = write_device_config(tmp_path / "d" / "config.json", device_id=DEVICE, school="S1",
                               broker_port=1883, hwbus="127.0.0.1:9", username=None)
    config = json.loads(path.read_text())
    assert config == {"device_id": DEVICE, "school": "S1", "broker_port": 1883, "hwbus": "127.0.0.1:9",
                      "broker_host": "127.0.0.1", "data_dir": str(tmp_path / "d" / "flash")}
    with pytest.raises(TypeError, match="unknown"):
        write_device_config(tmp_path / "x.json", device_id=DEVICE, school="S1", broker_port=1, colour="red")
    with pytest.raises(TypeError, match="school"):
        write_device_config(tmp_path / "x.json", device_id=DEVICE, broker_port=1)


def test_firmware_command_runs_compiled_modules(tmp_path):
    config = write_device_config(tmp_path / "c.json", device_id=DEVICE, school="S1", broker_port=1)
    argv, env = firmware_command([config])
    compiled = compiled_modules()
    assert compiled is not None and (compiled / "app" / "device.mpy").exists()
    assert argv[1:4] == ["-X", "heapsize=192K", str(compiled / "main.py")]
    assert argv[-1] == str(config.resolve())
    assert env["MICROPYPATH"].split(":") == [".frozen", str(compiled)]
    assert default_heapsize(3) == "272K"
    assert (compiled / "main.py").read_text() == (firmware_dir() / "main.py").read_text()


def test_bad_config_exits_2(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"device_id": DEVICE, "school": "S 1", "broker_host": "h"}))
    proc = FirmwareProcess([path], log_path=tmp_path / "fw.log")
    proc.start()
    assert proc.wait(30) == 2
    assert "school" in proc.log_text()
    assert not proc.is_running and proc.returncode == 2


def test_firmware_process_start_and_kill(tmp_path):
    config = write_device_config(tmp_path / "c.json", device_id=DEVICE, school="S1", broker_port=1)
    with FirmwareProcess([config], log_path=tmp_path / "fw.log") as proc:
        assert proc.is_running and proc.pid
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(0.5)
        proc.kill()
        assert proc.returncode == -9
    assert "boot" in proc.log_text()
