"""`classops gateway ...` subcommands."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
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


def register(parts: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `gateway` part to the root command."""
    part = parts.add_parser("gateway", help="the school gateway")
    sub = part.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run the gateway until SIGINT or SIGTERM")
    run.add_argument("--config", type=Path, default=None,
                     help="TOML file (CLASSOPS_GATEWAY_* variables override it)")
    run.set_defaults(func=_run)
