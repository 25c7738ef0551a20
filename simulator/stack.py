"""Start and stop the real parts of ClassOps as processes: Mosquitto, the cloud, a school gateway.

The demo, the simulator and the end-to-end tests all bring the system up through these classes, so
what the tests exercise is what a person runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gateway.broker_config import mosquitto_conf

STOP_TIMEOUT_S = 10.0


class StackError(RuntimeError):
    """A part of the stack could not be started or did not become ready."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `condition` until it returns something truthy; raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def port_open(host: str, port: int) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def classops_command() -> list[str]:
    """How to run the `classops` CLI with the interpreter running this code."""
    return [sys.executable, "-m", "classops_cli"]


def mosquitto_binary() -> str:
    """Path of the mosquitto broker; Debian installs it in /usr/sbin, often not on a user's PATH."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise StackError("mosquitto is not installed: run `make setup` (apt-get install mosquitto)")
    return found


class ManagedProcess:
    """A child process with its output in a log file, stopped gently and then firmly."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start the process, appending its output to the log file."""
        if self.running:
            raise StackError(f"{self.name} is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=self.cwd, start_new_session=True,
            )

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`."""
        if not self.running or self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up, as in a power cut."""
        if self.running and self.proc is not None:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the process's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> bool:
        """Raise StackError with the log's tail if the process has died; False otherwise, so that it can
        stand in a wait condition: `ready() or process.check_alive()`."""
        if not self.running:
            code = self.proc.returncode if self.proc else None
            raise StackError(f"{self.name} exited with {code}:\n{self.log_tail()}")
        return False


class Mosquitto(ManagedProcess):
    """A real Mosquitto broker on its own port, that can be stopped and started again."""

    def __init__(self, workdir: Path, port: int | None = None, persistence: bool = False,
                 password_file: Path | None = None, acl_file: Path | None = None,
                 config: Path | None = None) -> None:
        """`config` runs the broker on a configuration written elsewhere (by `classops gateway
        mosquitto-config`), on the port of its listener; the other settings then do not apply."""
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "mosquitto.conf"
        # Run as root would otherwise drop to the `mosquitto` user, who cannot read a private work dir.
        run_as = "root" if os.geteuid() == 0 else None
        if config is not None:
            text = config.read_text()
            listeners = [line.split() for line in text.splitlines() if line.startswith("listener ")]
            if not listeners:
                raise StackError(f"{config} has no listener")
            self.port = int(listeners[0][1])
            conf.write_text(text + (f"user {run_as}\n" if run_as else ""))
        else:
            self.port = port or free_port()
            conf.write_text(mosquitto_conf(self.port, workdir, host="127.0.0.1", persistence=persistence,
                                           password_file=password_file, acl_file=acl_file, run_as=run_as))
        super().__init__("mosquitto", [mosquitto_binary(), "-c", str(conf)], workdir / "mosquitto.log")

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and wait until it accepts connections."""
        super().start()
        wait_for(lambda: port_open("127.0.0.1", self.port) or self.check_alive(), timeout,
                 f"mosquitto on port {self.port}")

    def restart(self) -> None:
        """Stop the broker and start it again on the same port."""
        self.stop()
        self.start()


def http_json(method: str, url: str, body: Any = None, token: str | None = None,
              timeout: float = 10.0) -> tuple[int, Any]:
    """A small blocking JSON request, for orchestration and tests that talk to the cloud's API."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        with exc:
            raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode(errors="replace")


class CloudServer(ManagedProcess):
    """The cloud service as a real HTTP server (uvicorn) on its own port and database."""

    def __init__(self, workdir: Path, database_url: str | None = None, port: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url or f"sqlite:///{workdir / 'cloud.db'}"
        super().__init__(
            "cloud",
            [*classops_command(), "cloud", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--database-url", self.database_url],
            workdir / "cloud.log",
            env=env,
        )

    @property
    def url(self) -> str:
        """Base URL of the API."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until its health endpoint answers."""
        super().start()
        wait_for(lambda: self._healthy() or self.check_alive(), timeout, f"the cloud on port {self.port}",
                 interval=0.1)

    def _healthy(self) -> bool:
        try:
            status, _ = http_json("GET", self.url + "/api/v1/healthz", timeout=1.0)
        except OSError:
            return False
        return status == 200

    def admin(self, *args: str) -> str:
        """Run a `classops cloud` administration command against this server's database."""
        argv = [*classops_command(), "cloud", *args, "--database-url", self.database_url]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise StackError(f"classops cloud {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def add_school(self, code: str, name: str) -> None:
        """Register a school."""
        self.admin("add-school", "--code", code, "--name", name)

    def add_gateway(self, school: str) -> dict[str, str]:
        """Register a school's gateway; returns {"gateway_id", "token"}."""
        out = self.admin("add-gateway", "--school", school)
        return dict(json.loads(out.strip().splitlines()[-1]))

    def add_user(self, username: str, password: str, role: str, school: str | None = None) -> None:
        """Create a user account."""
        args = ["add-user", "--username", username, "--password", password, "--role", role]
        if school:
            args += ["--school", school]
        self.admin(*args)

    def login(self, username: str, password: str) -> str:
        """Log in through the API and return the bearer token."""
        status, body = http_json("POST", self.url + "/api/v1/auth/login",
                                 {"username": username, "password": password})
        if status != 200:
            raise StackError(f"login as {username} failed: {status} {body}")
        return str(body["access_token"])


def gateway_toml(*, school: str, school_secret: str, data_dir: Path, broker_port: int, cloud_url: str,
                 cloud_token: str, broker_host: str = "127.0.0.1", heartbeat_s: float = 15.0,
                 presence_check_s: float = 5.0, status_port: int = 0, extra_toml: str = "",
                 broker_password: str = "", device_secret: str = "") -> str:
    """A gateway configuration file; `extra_toml` adds tables after the others (e.g. [calendar], [rules]).

    `broker_password` and `device_secret` are the [broker] keys of a broker with per-device credentials
    (see `classops gateway mosquitto-config`)."""
    return (
        f'school = "{school}"\n'
        f'school_secret = "{school_secret}"\n'
        f'data_dir = "{data_dir}"\n'
        f"presence_check_s = {presence_check_s}\n\n"
        "[broker]\n"
        f'host = "{broker_host}"\n'
        f"port = {broker_port}\n"
        + (f'password = "{broker_password}"\n' if broker_password else "")
        + (f'device_secret = "{device_secret}"\n' if device_secret else "")
        + "\n"
        "[cloud]\n"
        f'url = "{cloud_url}"\n'
        f'token = "{cloud_token}"\n'
        f"heartbeat_s = {heartbeat_s}\n"
        "backoff_max_s = 5.0\n\n"
        "[status]\n"
        f"port = {status_port}\n"
        + (f"\n{extra_toml}" if extra_toml else "")
    )


class GatewayProcess(ManagedProcess):
    """One school's gateway as a real process, configured by a TOML file."""

    @property
    def status_url(self) -> str:
        """Base URL of the gateway's status page and /metrics."""
        return f"http://127.0.0.1:{self.status_port}"

    def __init__(self, workdir: Path, *, school: str, school_secret: str, broker_port: int,
                 cloud_url: str, cloud_token: str, heartbeat_s: float = 15.0, presence_check_s: float = 5.0,
                 extra_toml: str = "", broker_password: str = "", device_secret: str = "") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "gateway.toml"
        self.status_port = free_port()
        self.config_path.write_text(gateway_toml(
            school=school, school_secret=school_secret, data_dir=workdir / "data",
            broker_port=broker_port, cloud_url=cloud_url, cloud_token=cloud_token,
            status_port=self.status_port, heartbeat_s=heartbeat_s, presence_check_s=presence_check_s,
            extra_toml=extra_toml, broker_password=broker_password, device_secret=device_secret,
        ))
        self.db_path = workdir / "data" / "gateway.db"
        super().__init__(
            f"gateway-{school}",
            [*classops_command(), "gateway", "run", "--config", str(self.config_path)],
            workdir / "gateway.log",
        )
