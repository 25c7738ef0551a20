"""Hardware layer for the MicroPython unix port: the host's clock and files, and virtual hardware.

The card reader is virtual: it connects to a hardware bus server (config `hwbus`, "HOST:PORT"),
introduces itself with `hello <device_id>` and then takes line commands:

    tap <uid-hex>   -> ok tap <uid>                   the event is in the ring buffer
                    -> ignored tap <uid> <reason>     debounce, buffer full, bad uid
    anything else   -> error <what>
"""

import asyncio
import gc
import os
import sys
import time

from app.config import parse_address

from hal import NoCardReader

RESET_MARKER = "soft_reset"
RSSI = -55
# Pause before reconnecting to a hardware bus that went away.
BUS_RETRY_S = 0.5


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


class HostHal:
    """Backend for one virtual device on the unix port."""

    def __init__(self, cfg):
        if cfg["device_id"] is None:
            raise ValueError("on the host the config must give device_id")
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

    def reset_reason(self):
        """"soft" after a deliberate restart, otherwise "power_on" (a kill looks like a power cut)."""
        return self._reset

    def heap(self):
        """(free, largest free block); the port has no block query, so free bounds the block."""
        free = gc.mem_free()
        return free, free

    def rssi(self):
        """A fixed, healthy signal."""
        return RSSI

    async def network_up(self):
        """The host's network is always up."""

    def card_reader(self):
        """The virtual card reader, or one that never reports when no bus is configured."""
        if self._hwbus is None:
            return NoCardReader()
        return BusCardReader(self.device_id, self._hwbus[0], self._hwbus[1])

    def restart(self):
        """Leave the marker that makes the next boot report a soft reset."""
        with open(self.data_dir + "/" + RESET_MARKER, "w") as f:
            f.write("1")


class BusCardReader:
    """Card reader whose taps come from the hardware bus; reconnects whenever the bus goes away."""

    def __init__(self, device_id, host, port):
        self.device_id = device_id
        self.host = host
        self.port = port

    async def run(self, take):
        """Serve taps from the bus for ever."""
        while True:
            writer = None
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                writer.write(b"hello " + self.device_id.encode() + b"\n")
                await writer.drain()
                await self._serve(reader, writer, take)
            except (OSError, EOFError, asyncio.TimeoutError):
                pass
            finally:
                if writer is not None:
                    _close(writer)
            await asyncio.sleep(BUS_RETRY_S)

    async def _serve(self, reader, writer, take):
        while True:
            line = await reader.readline()
            if not line:
                raise OSError(104)
            parts = line.decode().split()
            if len(parts) == 2 and parts[0] == "tap":
                result = take(parts[1])
                cut = result.find(" ")
                if cut < 0:
                    answer = "%s tap %s\n" % (result, parts[1])
                else:
                    answer = "%s tap %s %s\n" % (result[:cut], parts[1], result[cut + 1:])
                writer.write(answer.encode())
            else:
                writer.write(b"error unknown command\n")
            await writer.drain()


def _close(writer):
    try:
        writer.close()
        sock = getattr(writer, "s", None)
        if sock is not None:
            sock.close()
    except OSError:
        pass
