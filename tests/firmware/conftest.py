"""Fixtures for firmware tests: a real Mosquitto, the hardware bus, an observer standing in for the
gateway (simulator/observer.py) and a launcher for real firmware VMs."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from simulator.firmware import FirmwareProcess, write_device_config
from simulator.hwbus import HardwareBus
from simulator.observer import Observer
from simulator.stack import Mosquitto
from tests.firmware.helpers import DEVICE, SCHOOL


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path / "broker")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def hwbus() -> Iterator[HardwareBus]:
    with HardwareBus() as bus:
        yield bus


@pytest.fixture
def observer(broker: Mosquitto) -> Iterator[Observer]:
    obs = Observer(broker.port, SCHOOL)
    yield obs
    obs.stop()
    assert not obs.invalid, f"devices published invalid messages: {obs.invalid}"


@pytest.fixture
def launch(tmp_path: Path, broker: Mosquitto, hwbus: HardwareBus) -> Iterator[Callable[..., FirmwareProcess]]:
    """Start a firmware VM for one device (or several: pass device_ids); killed after the test."""
    started: list[FirmwareProcess] = []
    counter = itertools.count()

    def start(device_id: str = DEVICE, device_ids: list[str] | None = None, **fields: Any) -> FirmwareProcess:
        settings: dict[str, Any] = {
            "school": SCHOOL, "broker_port": broker.port, "hwbus": "{}:{}".format(*hwbus.address),
            "health_s": 1, "resend_s": 1, "debounce_s": 3, "keepalive_s": 10,
        }
        settings.update(fields)
        paths = []
        for dev in device_ids or [device_id]:
            paths.append(write_device_config(tmp_path / dev / "config.json", device_id=dev,
                                              data_dir=str(tmp_path / dev / "flash"), **settings))
        proc = FirmwareProcess(paths, log_path=tmp_path / f"firmware-{next(counter)}.log")
        proc.start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
    for proc in started:
        print(f"--- {proc.log_path}\n{proc.log_tail(60)}")


@pytest.fixture
def display(hwbus: HardwareBus) -> Iterator[Any]:
    """A virtual smart display on a pty, its mains on the device's relay and its power on the
    device's power-sense input, as the classroom wires them."""
    from simulator.display import VirtualDisplay

    def relay(device_id: str, name: str, value: str) -> None:
        if name == "relay":
            panel.set_mains(value == "1")

    def sense(panel: VirtualDisplay) -> None:
        try:
            hwbus.set_power_sense(DEVICE, panel.power, timeout=2)
        except Exception:
            pass

    panel = VirtualDisplay(mains=False, on_change=sense)
    hwbus.on_output = relay
    panel.start()
    yield panel
    hwbus.on_output = None
    panel.stop()
