"""Provision a device over its MicroPython serial REPL: `classops device provision`, `classops firmware flash`.

The files go over the raw REPL (Ctrl-C to stop what runs, Ctrl-A to enter; each block of code is sent
and ended with Ctrl-D, the device answers "OK", its output, Ctrl-D, its error output, Ctrl-D, ">").
File contents travel base64-encoded in chunks; after each file the device hashes what it wrote
(hashlib.sha256) and the digest must match the bundle's manifest. Paths are relative to the device's
current directory, which is the flash root ("/") on a chip after boot, so config.json lands at
/config.json where firmware/entry.py reads it. The ESP32 port and the unix port both speak the raw REPL.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from simulator.firmware import firmware_dir

CONFIG_PATH = "config.json"
# Bytes of file content per raw-REPL block, and bytes written to the port at once (a chip's UART
# receive buffer is small; pausing between pieces lets the REPL keep up without flow control).
CHUNK = 1024
WRITE_PIECE = 256
PIECE_PAUSE_S = 0.005


class ProvisionError(RuntimeError):
    """Provisioning failed; the message says where."""


def _firmware_config_module() -> ModuleType:
    """firmware/app/config.py loaded into CPython (it imports only json and protocol)."""
    path = firmware_dir() / "app" / "config.py"
    spec = importlib.util.spec_from_file_location("classops_firmware_app_config", path)
    if spec is None or spec.loader is None:
        raise ProvisionError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def device_config(**fields: Any) -> dict:
    """The config file's object for these fields (None left out), validated by the firmware's own rules.

    ProvisionError with the firmware's reason when the device would refuse it.
    """
    raw = {name: value for name, value in fields.items() if value is not None}
    config = _firmware_config_module()
    try:
        config.validate(raw)
    except config.ConfigError as exc:
        raise ProvisionError(f"invalid device config: {exc}") from exc
    return raw


class RawRepl:
    """The raw REPL of a MicroPython board on a serial port (a pyserial Serial or alike)."""

    def __init__(self, port: Any, timeout: float = 10.0) -> None:
        self.port = port
        self.timeout = timeout

    def _read_until(self, ending: bytes, timeout: float | None = None) -> bytes:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        data = b""
        while not data.endswith(ending):
            if time.monotonic() > deadline:
                raise ProvisionError(f"no {ending!r} from the device; got {data[-200:]!r}")
            data += self.port.read(1)
        return data

    def _write(self, data: bytes) -> None:
        for start in range(0, len(data), WRITE_PIECE):
            self.port.write(data[start:start + WRITE_PIECE])
            if len(data) > WRITE_PIECE:
                time.sleep(PIECE_PAUSE_S)
        self.port.flush()

    def enter(self) -> None:
        """Stop whatever runs and enter the raw REPL."""
        self.port.write(b"\r\x03\x03")
        time.sleep(0.2)
        self.port.reset_input_buffer()
        self.port.write(b"\r\x01")
        self._read_until(b"raw REPL; CTRL-B to exit")
        self._read_until(b">")

    def exit(self) -> None:
        """Back to the friendly REPL."""
        self.port.write(b"\r\x02")

    def exec(self, code: str, timeout: float | None = None) -> str:
        """Run `code` on the device; its printed output. ProvisionError with the traceback if it raised."""
        self._write(code.encode())
        self.port.write(b"\x04")
        self._read_until(b"OK", timeout)
        out = self._read_until(b"\x04", timeout)[:-1]
        err = self._read_until(b"\x04", timeout)[:-1]
        self._read_until(b">", timeout)
        if err:
            raise ProvisionError(f"device error: {err.decode(errors='replace').strip()}")
        return out.decode(errors="replace")


_PRELUDE = """\
import os, hashlib, binascii
def _mkdirs(p):
    d = ''
    for part in p.split('/')[:-1]:
        d = d + part if not d else d + '/' + part
        try:
            os.mkdir(d)
        except OSError:
            pass
def _sha(p):
    h = hashlib.sha256()
    with open(p, 'rb') as f:
        while True:
            b = f.read(512)
            if not b:
                break
            h.update(b)
    return binascii.hexlify(h.digest()).decode()
"""


def write_file(repl: RawRepl, path: str, data: bytes) -> str:
    """Write `data` to `path` on the device, then return the device's sha256 of the file."""
    repl.exec(f"_mkdirs({path!r})\n_f = open({path!r}, 'wb')")
    try:
        for start in range(0, len(data), CHUNK):
            encoded = base64.b64encode(data[start:start + CHUNK]).decode()
            repl.exec(f"_f.write(binascii.a2b_base64({encoded!r}))")
    finally:
        repl.exec("_f.close()")
    return repl.exec(f"print(_sha({path!r}))").strip()


def provision(port: Any, files: list[tuple[str, bytes]], log: Callable[[str], None] = lambda line: None) -> None:
    """Write (path, content) pairs to the board on `port` over the raw REPL, verifying each by sha256."""
    repl = RawRepl(port)
    repl.enter()
    try:
        repl.exec(_PRELUDE)
        for path, data in files:
            want = hashlib.sha256(data).hexdigest()
            got = write_file(repl, path, data)
            if got != want:
                raise ProvisionError(f"{path}: sha256 on the device is {got}, expected {want}")
            log(f"{path}: {len(data)} bytes, sha256 ok")
    finally:
        repl.exit()


def bundle_files(bundle: Path) -> list[tuple[str, bytes]]:
    """The (path, content) pairs of a built firmware bundle, its manifest included, checked against it."""
    from simulator.firmware_build import read_manifest
    from simulator.ota import MANIFEST, BundleError

    try:
        manifest = read_manifest(bundle)
    except BundleError as exc:
        raise ProvisionError(str(exc)) from exc
    files = [(entry["path"], (bundle / entry["path"]).read_bytes()) for entry in manifest["files"]]
    files.append((MANIFEST, (bundle / MANIFEST).read_bytes()))
    return files


def provision_device(port_name: str, config: dict, bundle: Path | None = None, baudrate: int = 115200,
                     log: Callable[[str], None] = lambda line: None) -> None:
    """Open the serial port and write the bundle's files (if any), then the config as config.json."""
    import serial

    files = bundle_files(Path(bundle)) if bundle is not None else []
    files.append((CONFIG_PATH, (json.dumps(config, indent=1) + "\n").encode()))
    try:
        port = serial.Serial(port_name, baudrate, timeout=0.1)
    except serial.SerialException as exc:
        raise ProvisionError(f"cannot open {port_name}: {exc}") from exc
    with port:
        provision(port, files, log)


def esptool_command(port: str, image: Path, baud: int = 460800, chip: str = "esp32",
                    offset: str = "0x1000", erase: bool = False) -> list[list[str]]:
    """The esptool invocations that write the MicroPython image `image` (erase first if asked)."""
    base = [sys.executable, "-m", "esptool", "--chip", chip, "--port", port, "--baud", str(baud)]
    commands = [base + ["erase_flash"]] if erase else []
    commands.append(base + ["write_flash", "-z", offset, str(image)])
    return commands


def flash_image(port: str, image: Path, baud: int = 460800, chip: str = "esp32", offset: str = "0x1000",
                erase: bool = False, run: Callable[..., Any] = subprocess.run) -> None:
    """Write a MicroPython firmware image to the chip with esptool."""
    image = Path(image)
    if not image.is_file():
        raise ProvisionError(f"firmware image {image} does not exist")
    if importlib.util.find_spec("esptool") is None:
        raise ProvisionError("esptool is not installed: pip install esptool")
    for command in esptool_command(port, image, baud, chip, offset, erase):
        if run(command, check=False).returncode != 0:
            raise ProvisionError(f"esptool failed: {' '.join(command)}")
