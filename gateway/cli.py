"""`classops gateway ...` subcommands."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import urllib.request
from pathlib import Path

from gateway.errors import ConfigError

log = logging.getLogger(__name__)


def _run(args: argparse.Namespace) -> int:
    from gateway.app import Gateway
    from gateway.config import load_settings

    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"classops gateway: {exc}", file=sys.stderr)
        return 2
    asyncio.run(Gateway(settings).run())
    return 0


def _status(args: argparse.Namespace) -> int:
    from gateway.config import load_settings
    from gateway.store import Store

    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"classops gateway: {exc}", file=sys.stderr)
        return 2
    status = None
    if settings.status.enabled and settings.status.port:
        url = f"http://{settings.status.host}:{settings.status.port}/api/status"
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                status = json.loads(resp.read())
        except OSError:
            status = None
    if status is None:
        if not settings.db_path.exists():
            print(f"gateway for school {settings.school}: not running, and no store at {settings.db_path}")
            return 1
        store = Store(settings.db_path)
        try:
            count, age = store.backlog()
            devices = store.devices()
        finally:
            store.close()
        print(f"gateway for school {settings.school}: NOT RUNNING (figures from its store)")
    else:
        count, age, devices = status["backlog_records"], status["backlog_age_s"], status["devices"]
        print(f"gateway for school {settings.school}: running, broker "
              f"{'connected' if status['broker_connected'] else 'NOT connected'}, cloud "
              + ("never reached" if status["cloud_last_ok_s_ago"] is None
                 else f"reached {status['cloud_last_ok_s_ago']:.0f}s ago"))
        store = status.get("store") or {"writable": True, "error": ""}
        if not store["writable"]:
            print(f"STORE CANNOT WRITE for {store['unwritable_for_s']}s (alarm store_unwritable): "
                  f"{store['detail']}; nothing new is acknowledged, samples are refused")
        elif store["error"]:
            print(f"store did not answer: {store['error']}")
    print(f"waiting for the cloud: {count} records, oldest {age:.0f}s")
    online = sum(1 for d in devices if d["presence"] == "online")
    print(f"devices: {online} online of {len(devices)}")
    for d in devices:
        print(f"  {d['id']}  {d['role'] or '?':<10}  {d['presence']}")
    if args.json and status is not None:
        print(json.dumps(status["metrics"], indent=2, sort_keys=True))
    return 0


def _mosquitto_config(args: argparse.Namespace) -> int:
    from gateway.broker_config import read_device_list, write_broker_files
    from gateway.config import load_settings

    try:
        settings = load_settings(args.config)
        if len(settings.broker.device_secret) < 16:
            raise ConfigError("[broker] device_secret must be set, at least 16 characters: it derives "
                              "each device's MQTT password")
        if not settings.broker.password:
            raise ConfigError("[broker] password must be set: the gateway's own MQTT password")
        devices = read_device_list(args.devices) if args.devices else []
    except ConfigError as exc:
        print(f"classops gateway: {exc}", file=sys.stderr)
        return 2
    if settings.db_path.exists():
        from gateway.store import Store

        store = Store(settings.db_path)
        try:
            devices += [d["id"] for d in store.devices()]
        finally:
            store.close()
    paths = write_broker_files(args.out, school=settings.school, device_secret=settings.broker.device_secret,
                               gateway_user=settings.broker_user, gateway_password=settings.broker.password,
                               devices=devices, port=settings.broker.port, host=args.listen)
    print(f"wrote {paths['conf']}, {paths['passwd']} ({len(set(devices))} devices) and {paths['acl']}")
    print(f"start the broker with: mosquitto -c {paths['conf']}")
    return 0


def _device_password(args: argparse.Namespace) -> int:
    from gateway.broker_config import device_password
    from gateway.config import load_settings
    from protocol import topics

    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"classops gateway: {exc}", file=sys.stderr)
        return 2
    if not topics.is_device_id(args.device):
        print(f"classops gateway: {args.device!r} is not a device id (esp32-<12 hex digits>)",
              file=sys.stderr)
        return 2
    if len(settings.broker.device_secret) < 16:
        print("classops gateway: [broker] device_secret is not set", file=sys.stderr)
        return 2
    print(device_password(settings.broker.device_secret, args.device))
    return 0


def register(parts: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `gateway` part to the root command."""
    part = parts.add_parser("gateway", help="the school gateway")
    sub = part.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run the gateway until SIGINT or SIGTERM")
    run.add_argument("--config", type=Path, default=None,
                     help="TOML file (CLASSOPS_GATEWAY_* variables override it)")
    run.set_defaults(func=_run)
    status = sub.add_parser("status", help="what the gateway is doing (works when it is down, too)")
    status.add_argument("--config", type=Path, default=None, help="the gateway's TOML file")
    status.add_argument("--json", action="store_true", help="also print every metric")
    status.set_defaults(func=_status)
    broker = sub.add_parser("mosquitto-config",
                            help="write the school broker's config, password file and ACL")
    broker.add_argument("--config", type=Path, default=None, help="the gateway's TOML file")
    broker.add_argument("--devices", type=Path, default=None,
                        help="file of device ids, one a line (devices the gateway knows are added)")
    broker.add_argument("--out", type=Path, default=Path("/etc/mosquitto/classops"),
                        help="where to write mosquitto.conf, passwd and acl")
    broker.add_argument("--listen", default="0.0.0.0", help="address the broker listens on")
    broker.set_defaults(func=_mosquitto_config)
    password = sub.add_parser("device-password", help="a device's MQTT password, for provisioning it")
    password.add_argument("--config", type=Path, default=None, help="the gateway's TOML file")
    password.add_argument("device", help="device id, esp32-<12 hex digits>")
    password.set_defaults(func=_device_password)
