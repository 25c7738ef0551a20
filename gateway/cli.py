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
    print(f"waiting for the cloud: {count} records, oldest {age:.0f}s")
    online = sum(1 for d in devices if d["presence"] == "online")
    print(f"devices: {online} online of {len(devices)}")
    for d in devices:
        print(f"  {d['id']}  {d['role'] or '?':<10}  {d['presence']}")
    if args.json and status is not None:
        print(json.dumps(status["metrics"], indent=2, sort_keys=True))
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
