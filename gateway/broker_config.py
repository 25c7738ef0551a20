"""The school's Mosquitto configuration: tuning, per-device credentials and an ACL, written by the gateway.

Each device logs in with its own id as user name and a password derived from the school's device secret,
so the gateway can write the password file for any list of devices without storing their passwords, and
a technician can look up one device's password for provisioning. The ACL lets a device publish only
under its own topic prefix and read only its own downlink.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Iterable
from pathlib import Path

from gateway.errors import ConfigError
from protocol import limits, topics

PBKDF2_ITERATIONS = 101
SALT_BYTES = 12


def device_password(device_secret: str, device_id: str) -> str:
    """The MQTT password of one device: an HMAC of its id under the school's device secret."""
    return hmac.new(device_secret.encode(), device_id.encode(), hashlib.sha256).hexdigest()[:32]


def password_entry(username: str, password: str, salt: bytes | None = None) -> str:
    """One line of a Mosquitto 2 password file (PBKDF2-SHA512, the `$7$` format of mosquitto_passwd)."""
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS, 64)
    salt_text, digest_text = base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
    return f"{username}:$7${PBKDF2_ITERATIONS}${salt_text}${digest_text}"


def acl_text(school: str, gateway_user: str) -> str:
    """The ACL: the gateway reads every device's uplink and writes every downlink; a device only its own."""
    gateway_read, gateway_write, device_write, device_read = topics.broker_acl(school)
    return (
        f"# ClassOps broker ACL for school {school}: written by `classops gateway mosquitto-config`.\n"
        f"user {gateway_user}\n"
        f"topic read {gateway_read}\n"
        f"topic write {gateway_write}\n\n"
        "# Every other user is a device whose user name is its device id.\n"
        f"pattern write {device_write}\n"
        f"pattern read {device_read}\n"
    )


def mosquitto_conf(port: int, data_dir: Path, *, host: str = "0.0.0.0", persistence: bool = True,
                   password_file: Path | None = None, acl_file: Path | None = None,
                   run_as: str | None = None) -> str:
    """A Mosquitto configuration tuned for a school: one gateway takes QoS 1 at full speed.

    Mosquitto's defaults (Nagle on, 20 messages in flight) hold a fast QoS 1 consumer to well under a
    hundred messages a second. With a password file every client's id is its user name, so that no
    credential can take another client's place (connecting with a client id already connected
    disconnects the first client: the gateway, or a device whose will then says it is offline).
    """
    lines = [f"listener {port} {host}"]
    if password_file is not None:
        # A listener setting; without a password file clients may have no user name, and would be refused.
        lines.append("use_username_as_clientid true")
    lines += [
        "set_tcp_nodelay true",
        "max_inflight_messages 1000",
        "max_queued_messages 200000",
        "max_packet_size 65536",
        # Bigger payloads are dropped by the broker itself, before they cost the gateway anything.
        f"message_size_limit {limits.MAX_MESSAGE_BYTES}",
        f"persistence {'true' if persistence else 'false'}",
        f"persistence_location {data_dir}/",
        "log_dest stdout",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_timestamp true",
    ]
    if password_file is not None:
        lines += ["allow_anonymous false", f"password_file {password_file}"]
    else:
        lines.append("allow_anonymous true")
    if acl_file is not None:
        lines.append(f"acl_file {acl_file}")
    if run_as is not None:
        lines.append(f"user {run_as}")
    return "\n".join(lines) + "\n"


def read_device_list(path: Path) -> list[str]:
    """Device ids from a file, one per line; blank lines and `#` comments are skipped."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"device list {path}: {exc.strerror}") from exc
    devices = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if not topics.is_device_id(text):
            raise ConfigError(f"device list {path}, line {number}: {text!r} is not esp32-<12 hex digits>")
        devices.append(text)
    return devices


def _give_to_broker(path: Path) -> None:
    # Debian's broker drops root for the `mosquitto` user, which must be able to read its files.
    if os.geteuid() != 0:
        return
    try:
        import grp

        os.chown(path, 0, grp.getgrnam("mosquitto").gr_gid)
    except (KeyError, OSError):
        pass


def write_broker_files(out_dir: Path, *, school: str, device_secret: str, gateway_user: str,
                       gateway_password: str, devices: Iterable[str], port: int,
                       host: str = "0.0.0.0") -> dict[str, Path]:
    """Write mosquitto.conf, passwd and acl for a school into `out_dir`; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    passwd, acl, conf = out_dir / "passwd", out_dir / "acl", out_dir / "mosquitto.conf"
    entries = [password_entry(gateway_user, gateway_password)]
    entries += [password_entry(d, device_password(device_secret, d)) for d in sorted(set(devices))]
    # Written then renamed, so a broker reloading mid-write never reads half a file.
    for path, text in ((passwd, "\n".join(entries) + "\n"), (acl, acl_text(school, gateway_user))):
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o640 if path == passwd else 0o644)
        _give_to_broker(tmp)
        tmp.replace(path)
    (out_dir / "data").mkdir(exist_ok=True)
    conf.write_text(mosquitto_conf(port, out_dir / "data", host=host, password_file=passwd, acl_file=acl))
    return {"conf": conf, "passwd": passwd, "acl": acl}
