"""The hardware bus against a scripted device link (a plain socket speaking the bus's line protocol)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from simulator.hwbus import HardwareBus, HardwareBusError

DEVICE = "esp32-a1b2c3d4e5f6"


class ScriptedDevice:
    """Connects, says hello, and answers taps with `answer(uid)` (None: stay silent)."""

    def __init__(self, bus: HardwareBus, answer) -> None:
        self.sock = socket.create_connection(bus.address)
        self.sock.sendall(f"hello {DEVICE}\n".encode())
        self.answer = answer
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with self.sock.makefile("rb") as reader:
            try:
                for raw in reader:
                    line = raw.decode().strip()
                    self.lines.append(line)
                    reply = self.answer(line.split()[1])
                    if reply is not None:
                        self.sock.sendall(reply.encode())
            except OSError:
                pass

    def close(self) -> None:
        # shutdown first: the reader thread's file object keeps the descriptor open past close().
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(timeout=5)


def test_tap_returns_the_device_answer_and_records_it():
    with HardwareBus() as bus:
        device = ScriptedDevice(bus, lambda uid: f"ok tap {uid}\n" if uid.startswith("04")
                                else f"ignored tap {uid} debounce\n")
        assert bus.wait_connected(DEVICE, 5)
        assert bus.connected() == [DEVICE]
        assert bus.tap(DEVICE, "04a1b2c3") == "ok"
        assert bus.tap(DEVICE, "99a1b2c3") == "ignored"
        assert [t[:3] for t in bus.taps] == [(DEVICE, "04a1b2c3", "ok"), (DEVICE, "99a1b2c3", "ignored")]
        assert all(abs(t[3] - time.time()) < 60 for t in bus.taps)
        assert device.lines == ["tap 04a1b2c3", "tap 99a1b2c3"]
        device.close()


def test_concurrent_taps_each_get_their_answer():
    with HardwareBus() as bus:
        device = ScriptedDevice(bus, lambda uid: f"ok tap {uid}\n")
        assert bus.wait_connected(DEVICE, 5)
        results: dict[str, str] = {}
        uids = [f"{i:08x}" for i in range(40)]

        def tap(uid: str) -> None:
            results[uid] = bus.tap(DEVICE, uid)

        threads = [threading.Thread(target=tap, args=(uid,)) for uid in uids]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        assert results == {uid: "ok" for uid in uids}
        assert len(bus.taps) == 40
        device.close()


def test_tap_on_unknown_or_silent_device_raises():
    with HardwareBus() as bus:
        with pytest.raises(HardwareBusError, match="not connected"):
            bus.tap(DEVICE, "04a1b2c3", timeout=0.5)
        assert not bus.wait_connected(DEVICE, 0.1)
        device = ScriptedDevice(bus, lambda uid: None)
        assert bus.wait_connected(DEVICE, 5)
        with pytest.raises(TimeoutError):
            bus.tap(DEVICE, "04a1b2c3", timeout=0.3)
        assert bus.taps == []
        device.close()


def test_device_that_goes_away_is_forgotten_and_fails_waiting_taps():
    with HardwareBus() as bus:
        device = ScriptedDevice(bus, lambda uid: None)
        assert bus.wait_connected(DEVICE, 5)
        closer = threading.Timer(0.2, device.close)
        closer.start()
        with pytest.raises(HardwareBusError):
            bus.tap(DEVICE, "04a1b2c3", timeout=5)
        closer.join()
        deadline = time.monotonic() + 5
        while bus.is_connected(DEVICE) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not bus.is_connected(DEVICE)


def test_disconnect_drops_the_link():
    with HardwareBus() as bus:
        device = ScriptedDevice(bus, lambda uid: f"ok tap {uid}\n")
        assert bus.wait_connected(DEVICE, 5)
        bus.disconnect(DEVICE)
        assert not bus.is_connected(DEVICE)
        device.close()


def test_sensor_lines_outputs_and_settings_replayed_on_reconnect():
    with HardwareBus() as bus:
        outs: list[tuple[str, str, str]] = []
        bus.on_output = lambda dev, name, value: outs.append((dev, name, value))
        device = ScriptedDevice(bus, lambda arg: None)
        assert bus.wait_connected(DEVICE, 5)
        device.sock.sendall(b"out relay 1\n")
        assert bus.wait_output(DEVICE, "relay", "1", 5)
        assert outs == [(DEVICE, "relay", "1")] and bus.output(DEVICE, "feedback") is None
        with pytest.raises(HardwareBusError, match="did not answer"):
            bus.set_sensor(DEVICE, "scd4x", 800, timeout=0.3)
        device.close()
        deadline = time.monotonic() + 5
        while bus.is_connected(DEVICE) and time.monotonic() < deadline:
            time.sleep(0.02)
        # Real hardware keeps measuring while the firmware reboots: the bus repeats the settings.
        again = ScriptedDevice(bus, lambda arg: None)
        assert bus.wait_connected(DEVICE, 5)
        deadline = time.monotonic() + 5
        while "scd4x" not in " ".join(again.lines) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert again.lines[0] == "sensor scd4x 800"
        again.close()


def test_error_answer_raises():
    with HardwareBus() as bus:
        device = ScriptedDevice(bus, lambda arg: f"error sensor_fault {arg} unknown_sensor\n")
        assert bus.wait_connected(DEVICE, 5)
        with pytest.raises(HardwareBusError, match="unknown_sensor"):
            bus.sensor_fault(DEVICE, "co2", "crc")
        with pytest.raises(ValueError):
            bus.sensor_fault(DEVICE, "co2", "melted")
        device.close()
