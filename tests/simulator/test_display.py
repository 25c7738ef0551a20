"""The virtual smart display on its pty, driven through pyserial as the gateway's connector will."""

from __future__ import annotations

import serial

from protocol import display as proto
from simulator.display import VirtualDisplay


def _ask(port: serial.Serial, request: bytes, cmd: int) -> tuple[int, bytes] | None:
    port.write(request)
    parser = proto.Parser()
    while True:
        data = port.read(1)
        if not data:
            return None
        frames = parser.feed(data)
        if frames:
            return proto.parse_reply(frames[0], cmd)


def test_power_input_and_hours_over_the_serial_port():
    changes: list[bool] = []
    with VirtualDisplay(on_change=lambda d: changes.append(d.power)) as panel, \
            serial.Serial(panel.port, proto.BAUDRATE, timeout=1) as port:
        assert _ask(port, proto.power_get(), proto.POWER_GET) == (proto.ACK, b"\x00")
        assert _ask(port, proto.power_set(True), proto.POWER_SET) == (proto.ACK, b"")
        assert panel.power and changes == [True]
        assert _ask(port, proto.input_set("vga"), proto.INPUT_SET) == (proto.ACK, b"")
        status, data = _ask(port, proto.input_get(), proto.INPUT_GET)
        assert proto.decode_input(data) == "vga" == panel.source
        status, data = _ask(port, proto.hours_get(), proto.HOURS_GET)
        assert status == proto.ACK and proto.decode_hours(data) == 0
        # A bad request is answered NAK; another address and broadcasts are not answered.
        assert _ask(port, proto.encode(1, proto.INPUT_SET, b"\x63"), proto.INPUT_SET)[0] == proto.NAK
        assert _ask(port, proto.power_get(addr=7), proto.POWER_GET) is None
        port.write(proto.power_set(False, addr=proto.BROADCAST))
        assert panel.wait(lambda d: not d.power, 2)


def test_faults_and_mains():
    with VirtualDisplay() as panel, serial.Serial(panel.port, proto.BAUDRATE, timeout=0.5) as port:
        panel.inject("no_power_on")
        assert _ask(port, proto.power_set(True), proto.POWER_SET) == (proto.REFUSED, b"")
        assert not panel.power
        panel.heal()
        panel.inject("no_answer")
        assert _ask(port, proto.power_get(), proto.POWER_GET) is None
        panel.heal("no_answer")
        assert _ask(port, proto.power_set(True), proto.POWER_SET) == (proto.ACK, b"")
        panel.set_mains(False)
        assert not panel.power
        assert _ask(port, proto.power_get(), proto.POWER_GET) is None
        panel.set_mains(True)
        assert _ask(port, proto.power_get(), proto.POWER_GET) == (proto.ACK, b"\x00")


def test_hours_count_while_on():
    with VirtualDisplay(power=True, hours_on=10.0) as panel:
        assert panel.hours_on >= 10.0
        panel.press_power(False)
        hours = panel.hours_on
        assert panel.hours_on == hours
