"""Hardware layer for the MicroPython unix port: the host's clock and files, and virtual hardware.

The parts (hal/fakes.py) answer the real drivers on fake I2C, UART, ADC and SPI buses; what they
measure, the cards held to the reader, the power-sense input and the Wi-Fi come from the hardware bus
server (config `hwbus`, "HOST:PORT"; simulator/hwbus.py documents its line protocol). The display's
RS-232 port is a tty (config `display_port`, a pseudo-terminal of simulator/display.py) opened as a file.
"""

import asyncio
import gc
import os
import sys
import time

from app.config import parse_address

RESET_MARKER = "soft_reset"
RSSI = -55
# Pause before reconnecting to a hardware bus that went away.
BUS_RETRY_S = 0.5
# A card held to the reader and not read within this time (reader broken) is taken away again.
CARD_HOLD_MS = 1000
_HEX = "0123456789abcdef"


def _makedirs(path):
    cur = "/" if path.startswith("/") else ""
    for part in path.split("/"):
        if part:
            cur += part
            try:
                os.mkdir(cur)
            except OSError:
                pass
            cur += "/"


def _fakes():
    # Imported on first use: a device loads only the parts of its own role.
    from hal import fakes

    return fakes


def _uid_bytes(text):
    text = text.lower()
    if len(text) not in (8, 14, 20):
        return None
    for ch in text:
        if ch not in _HEX:
            return None
    return bytes([int(text[i:i + 2], 16) for i in range(0, len(text), 2)])


class HostWatchdog:
    """A watchdog that counts feeds; a blocked VM cannot bite itself, so the host never resets."""

    def __init__(self, timeout_ms):
        self.timeout_ms = timeout_ms
        self.feeds = 0

    def feed(self):
        self.feeds += 1


class HostRelay:
    """The blackboard's relay: each change is reported to the hardware bus as `out relay <0|1>`."""

    def __init__(self, hal):
        self._hal = hal
        self.level = None

    def value(self, v=None):
        if v is None:
            return self.level or 0
        v = 1 if v else 0
        if v != self.level:
            self.level = v
            self._hal.output("relay", v)
        return None


class HostSense:
    """The power-sense input, set from the hardware bus; None until the bus has set it. Like a pin
    with an edge interrupt, it calls back on every change, so that its reader need not poll it."""

    def __init__(self):
        self.level = None
        self._callbacks = []

    def value(self):
        return self.level

    def on_change(self, callback):
        """Call `callback()` after every change of the level."""
        self._callbacks.append(callback)

    def set(self, level):
        if level == self.level:
            return
        self.level = level
        for callback in self._callbacks:
            callback()


class HostHal:
    """Backend for one virtual device on the unix port; `shared` when the VM hosts several."""

    def __init__(self, cfg, shared=False):
        if cfg["device_id"] is None:
            raise ValueError("on the host the config must give device_id")
        self.cfg = cfg
        self.shared = shared
        self.device_id = cfg["device_id"]
        self.data_dir = cfg["data_dir"] or "data/" + self.device_id
        _makedirs(self.data_dir)
        self._hwbus = parse_address(cfg["hwbus"]) if cfg["hwbus"] else None
        self._reset = "power_on"
        marker = self.data_dir + "/" + RESET_MARKER
        try:
            os.stat(marker)
            self._reset = "soft"
            os.remove(marker)
        except OSError:
            pass
        self.wifi_up = True
        self.network_resets = 0
        self._drop_callbacks = []
        self._out = []
        self._out_ready = asyncio.Event()
        self._parts = {}
        self._i2c = None
        self._rc522 = None
        self._card_queue = []
        self._card_event = asyncio.Event()
        self._relay = None
        self._sense = HostSense()

    def fw_version(self):
        """MicroPython version as x.y.z."""
        v = sys.implementation.version
        return "micropython-%d.%d.%d" % (v[0], v[1], v[2])

    def time(self):
        """Unix epoch seconds: the unix port's epoch is already 1970."""
        return time.time()

    def clock_ok(self):
        """The host's clock is trusted."""
        return True

    async def sync_clock(self):
        """The host keeps its own time."""
        return True

    def reset_reason(self):
        """"soft" after a deliberate restart, otherwise "power_on" (a kill looks like a power cut)."""
        return self._reset

    def heap(self):
        """(free, largest free block); the port has no block query, so free bounds the block."""
        free = gc.mem_free()
        return free, free

    def rssi(self):
        """A fixed, healthy signal while Wi-Fi is up."""
        return RSSI if self.wifi_up else None

    async def network_up(self):
        """OSError while the hardware bus holds Wi-Fi down."""
        if not self.wifi_up:
            raise OSError("wifi down")

    def network_reset(self):
        """Restart the Wi-Fi station (counted; the host's network needs no restart)."""
        self.network_resets += 1

    def on_link_drop(self, callback):
        """Call `callback()` when Wi-Fi drops, so that the device does not wait for its keepalive."""
        self._drop_callbacks.append(callback)

    def watchdog(self, timeout_ms):
        """The host's stand-in for machine.WDT."""
        return HostWatchdog(timeout_ms)

    def restart(self):
        """Leave the marker that makes the next boot report a soft reset."""
        with open(self.data_dir + "/" + RESET_MARKER, "w") as f:
            f.write("1")

    def firmware_image(self):
        """No firmware image to update on the host: the VM is the firmware."""
        return None

    # Parts of the sensor node.

    def i2c(self):
        """The sensor I2C bus with an SHT4x, an SHT3x, an SCD4x and a BH1750 on it."""
        if self._i2c is None:
            from app.drivers.bh1750 import BH1750_ADDR
            from app.drivers.scd4x import SCD4X_ADDR
            from app.drivers.sht4x import SHT3X_ADDR, SHT4X_ADDR

            fakes = _fakes()
            self._i2c = fakes.FakeI2C()
            for name, addr, part in (("sht4x", SHT4X_ADDR, fakes.Sht4xPart()),
                                     ("sht3x", SHT3X_ADDR, fakes.Sht3xPart()),
                                     ("scd4x", SCD4X_ADDR, fakes.Scd4xPart()),
                                     ("bh1750", BH1750_ADDR, fakes.Bh1750Part())):
                self._i2c.parts[addr] = part
                self._parts[name] = part
        return self._i2c

    def pms_uart(self):
        """The PMS5003's UART."""
        part = self._parts.get("pms5003")
        if part is None:
            part = self._parts["pms5003"] = _fakes().Pms5003Part()
        return part

    def mic_adc(self):
        """The microphone amplifier's ADC input."""
        part = self._parts.get("mic")
        if part is None:
            part = self._parts["mic"] = _fakes().MicPart()
        return part

    # Parts of the attendance terminal.

    def rc522(self):
        """The RC522 card reader driver on its (virtual) SPI bus."""
        if self._rc522 is None:
            from app.drivers.rc522 import Rc522

            fakes = _fakes()
            self._rc522_part = fakes.Rc522Part()
            self._rc522 = Rc522(self._rc522_part, fakes.FakePin())
        return self._rc522

    async def card_wait(self):
        """Wait until a card may be in the field: here, until the bus holds one to the reader."""
        while not self._card_queue:
            self._card_event.clear()
            await self._card_event.wait()
        self._rc522_part.present(_uid_bytes(self._card_queue[0]))

    def card_done(self, uid, result):
        """The reader has read (uid bytes, or None) and the device decided (result): answer the bus."""
        if not self._card_queue:
            return
        text = self._card_queue.pop(0)
        self._rc522_part.remove()
        if uid is None:
            result = "ignored no_reader"
        cut = result.find(" ")
        if cut < 0:
            self._send("%s tap %s" % (result, text))
        else:
            self._send("%s tap %s %s" % (result[:cut], text, result[cut + 1:]))

    def feedback(self, kind):
        """LED and buzzer after a tap: ok, dup or error."""
        self.output("feedback", kind)

    # Parts of the blackboard controller.

    def relay(self):
        """The relay that feeds the display's mains."""
        if self._relay is None:
            self._relay = HostRelay(self)
        return self._relay

    def power_sense(self):
        """The display's power-sense input."""
        return self._sense

    def display_stream(self):
        """The display's RS-232 port: the configured tty opened as a file, or None."""
        port = self.cfg["display_port"]
        if not port:
            return None
        return open(port, "r+b")

    # The hardware bus.

    def output(self, name, value):
        """Report an output change to the bus."""
        self._send("out %s %s" % (name, value))

    def _send(self, line):
        self._out.append(line)
        self._out_ready.set()

    def tasks(self):
        """(name, coroutine function) pairs the device runs beside its own tasks.

        With CLASSOPS_HEAP_WATCH=<ms> in the environment a heap watermark task runs too (for
        bench/firmware_memory.py): every <ms> it collects garbage and prints `heap peak=<bytes>`
        whenever the live heap reaches a new high.
        """
        jobs = [("hwbus", self._bus)] if self._hwbus else []
        watch = os.getenv("CLASSOPS_HEAP_WATCH")
        if watch:
            jobs.append(("heapwatch", lambda: self._heap_watch(int(watch))))
        return jobs

    async def _heap_watch(self, period_ms):
        peak = 0
        while True:
            gc.collect()
            used = gc.mem_alloc()
            if used > peak:
                peak = used
                print("heap peak=%d" % peak)
            await asyncio.sleep_ms(period_ms)

    async def _bus(self):
        while True:
            writer = None
            pump = None
            try:
                reader, writer = await asyncio.open_connection(self._hwbus[0], self._hwbus[1])
                writer.write(b"hello " + self.device_id.encode() + b"\n")
                if self._relay is not None and self._relay.level is not None:
                    writer.write(b"out relay %d\n" % self._relay.level)
                await writer.drain()
                pump = asyncio.create_task(self._pump(writer))
                await self._serve(reader)
            except (OSError, EOFError, asyncio.TimeoutError):
                pass
            finally:
                if pump is not None:
                    pump.cancel()
                if writer is not None:
                    _close(writer)
            await asyncio.sleep(BUS_RETRY_S)

    async def _pump(self, writer):
        while True:
            if not self._out:
                self._out_ready.clear()
                await self._out_ready.wait()
            lines = self._out
            self._out = []
            for line in lines:
                writer.write(line.encode() + b"\n")
            await writer.drain()

    async def _serve(self, reader):
        while True:
            line = await reader.readline()
            if not line:
                raise OSError(104)
            words = line.decode().split()
            if not words:
                continue
            answer = self._handle(words)
            if answer is not None:
                self._send(answer)

    def _handle(self, words):
        verb = words[0]
        arg = words[1] if len(words) > 1 else "-"
        if verb == "tap" and len(words) == 2:
            if _uid_bytes(arg) is None:
                return "ignored tap %s bad_uid" % arg
            if self._rc522 is None:
                return "ignored tap %s no_reader" % arg
            self._card_queue.append(arg)
            self._card_event.set()
            return None
        if verb == "sensor" and len(words) == 3:
            part = self._sensor_part(arg)
            if part is None:
                return "error sensor %s unknown_sensor" % arg
            try:
                part.set_value(words[2])
            except ValueError:
                return "error sensor %s bad_value" % arg
            return "ok sensor " + arg
        if verb == "sensor_fault" and len(words) == 3:
            part = self._sensor_part(arg)
            if part is None:
                return "error sensor_fault %s unknown_sensor" % arg
            part.set_fault(words[2])
            return "ok sensor_fault " + arg
        if verb == "reader_fault" and len(words) == 2:
            self.rc522()
            self._rc522_part.fault = arg
            return "ok reader_fault " + arg
        if verb == "power_sense" and arg in ("0", "1"):
            self._sense.set(int(arg))
            return "ok power_sense " + arg
        if verb == "wifi" and arg in ("0", "1"):
            up = arg == "1"
            if self.wifi_up and not up:
                self.wifi_up = False
                for callback in self._drop_callbacks:
                    callback()
            self.wifi_up = up
            return "ok wifi " + arg
        return "error %s %s unknown_command" % (verb, arg)

    def _sensor_part(self, name):
        if name in ("sht4x", "sht3x", "scd4x", "bh1750"):
            self.i2c()
        elif name == "pms5003":
            self.pms_uart()
        elif name == "mic":
            self.mic_adc()
        return self._parts.get(name)


def _close(writer):
    try:
        writer.close()
        sock = getattr(writer, "s", None)
        if sock is not None:
            sock.close()
    except OSError:
        pass
