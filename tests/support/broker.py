"""A real Mosquitto broker for tests, on a free port of 127.0.0.1, tuned as FACTS.md recommends."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


class BrokerError(RuntimeError):
    """The broker could not be found, started or stopped."""


def mosquitto_binary() -> str:
    """Path of the mosquitto executable."""
    for candidate in MOSQUITTO_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("mosquitto")
    if found is None:
        raise BrokerError("mosquitto is not installed")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_accepts(host: str, port: int) -> bool:
    """True if a TCP connection to (host, port) succeeds."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Mosquitto:
    """One broker process with its config and log in `workdir`; keeps its port across restarts."""

    def __init__(self, workdir: str | os.PathLike[str], port: int | None = None,
                 host: str = "127.0.0.1", extra_config: str = "") -> None:
        self.workdir = Path(workdir)
        self.host = host
        self.port = port or free_port(host)
        self.extra_config = extra_config
        self.conf_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def config_text(self) -> str:
        """The broker config: anonymous, no persistence, QoS 1 tuning for fast consumers."""
        return (
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "set_tcp_nodelay true\n"
            "max_inflight_messages 1000\n"
            "max_queued_messages 200000\n"
            "log_dest stdout\n"
            + self.extra_config
        )

    @property
    def is_running(self) -> bool:
        """True while the broker process lives."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start the broker and wait until its port accepts connections."""
        if self.is_running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.config_text())
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf_path)],
                                          stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not port_accepts(self.host, self.port):
            if self._proc.poll() is not None:
                raise BrokerError(f"mosquitto exited with {self._proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"mosquitto did not listen on {self.port} within {timeout} s")
            time.sleep(0.02)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop the broker (SIGTERM, then SIGKILL)."""
        if not self.is_running:
            return
        assert self._proc is not None
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def kill(self) -> None:
        """SIGKILL the broker: everything it held in memory is lost."""
        if self.is_running:
            assert self._proc is not None
            self._proc.kill()
            self._proc.wait()

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the broker's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
