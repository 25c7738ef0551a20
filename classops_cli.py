"""The `classops` command: one entry point, a subcommand per part of the system."""

import argparse
import logging
import sys


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, each part contributing its own subcommands."""
    from cloud import cli as cloud_cli
    from gateway import cli as gateway_cli
    from simulator import cli as simulator_cli

    parser = argparse.ArgumentParser(prog="classops", description="ClassOps: school IT equipment O&M.")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    parts = parser.add_subparsers(dest="part", required=True, metavar="PART")
    cloud_cli.register(parts)
    gateway_cli.register(parts)
    simulator_cli.register(parts)
    __import__("simulator.firmware_cli", fromlist=["register"]).register(parts)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `classops` command line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
