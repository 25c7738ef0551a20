"""A virtual school: real firmware processes with virtual card readers, and a record of every tap."""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from protocol import topics
from simulator.firmware import FirmwareProcess, write_device_config
from simulator.hwbus import HardwareBus, HardwareBusError

log = logging.getLogger(__name__)


@dataclass
class VirtualDevice:
    """One simulated ESP32: its identity, its config file and its firmware process."""

    device_id: str
    role: str
    config_path: Path
    process: FirmwareProcess


@dataclass
class TapLedger:
    """Ground truth: every tap that a device's card reader took, in order."""

    taps: list[tuple[str, str, float]] = field(default_factory=list)
    refused: int = 0

    def count(self) -> int:
        """Number of taps that the devices took."""
        return len(self.taps)


class VirtualSchool:
    """The devices of one school, running the real firmware against the school's broker."""

    def __init__(self, workdir: Path, *, school: str, broker_port: int, devices: int,
                 role: str = "attendance", broker_host: str = "127.0.0.1", health_s: int = 10,
                 seed: int | None = None) -> None:
        self.workdir = workdir
        self.school = school
        self.rng = random.Random(seed)
        self.bus = HardwareBus()
        self.ledger = TapLedger()
        self.devices: list[VirtualDevice] = []
        self._broker_host = broker_host
        self._broker_port = broker_port
        self._health_s = health_s
        self._role = role
        self._count = devices
        self._stop = threading.Event()
        self._tapper: threading.Thread | None = None

    def _new_device_id(self) -> str:
        return topics.device_id_from_mac(bytes([0x24, 0x6F] + [self.rng.randrange(256) for _ in range(4)]))

    def start(self) -> None:
        """Start the hardware bus and one firmware process per device."""
        self.bus.start()
        host, port = self.bus.address
        for _ in range(self._count):
            device_id = self._new_device_id()
            config_path = self.workdir / device_id / "config.json"
            write_device_config(
                config_path,
                device_id=device_id,
                school=self.school,
                role=self._role,
                broker_host=self._broker_host,
                broker_port=self._broker_port,
                health_s=self._health_s,
                data_dir=str(self.workdir / device_id / "flash"),
                hwbus=f"{host}:{port}",
            )
            process = FirmwareProcess([config_path], log_path=self.workdir / device_id / "firmware.log")
            process.start()
            self.devices.append(VirtualDevice(device_id, self._role, config_path, process))

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until every device's virtual hardware is connected."""
        for device in self.devices:
            if not self.bus.wait_connected(device.device_id, timeout):
                raise TimeoutError(f"device {device.device_id} did not come up:\n"
                                   f"{device.process.log_tail()}")

    def new_card(self) -> str:
        """A fresh 4-byte card UID."""
        return f"{self.rng.getrandbits(32):08x}"

    def tap(self, device_id: str, card: str | None = None, timeout: float = 10.0) -> bool:
        """Tap a card on a device's reader; True if the device took it (ledger updated)."""
        card = card or self.new_card()
        try:
            result = self.bus.tap(device_id, card, timeout=timeout)
        except HardwareBusError as exc:
            log.warning("tap on %s failed: %s", device_id, exc)
            self.ledger.refused += 1
            return False
        if result == "ok":
            self.ledger.taps.append((device_id, card, time.time()))
            return True
        self.ledger.refused += 1
        return False

    def start_tapping(self, mean_interval_s: float) -> None:
        """Students tap cards at random devices, about once every `mean_interval_s` seconds."""

        def run() -> None:
            while not self._stop.wait(self.rng.expovariate(1.0 / mean_interval_s)):
                attendance = [d for d in self.devices if d.role == "attendance"]
                if attendance:
                    self.tap(self.rng.choice(attendance).device_id)

        self._tapper = threading.Thread(target=run, name=f"taps-{self.school}", daemon=True)
        self._tapper.start()

    def stop(self) -> None:
        """Stop tapping, every firmware process and the hardware bus."""
        self._stop.set()
        if self._tapper is not None:
            self._tapper.join(timeout=15)
        for device in self.devices:
            device.process.stop()
        self.bus.stop()
