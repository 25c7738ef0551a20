"""`python -m cloud ...`, the same commands as `classops cloud ...`."""

import argparse
import logging
import sys

from cloud import cli


def main(argv: list[str] | None = None) -> int:
    """Run the cloud's command line."""
    parser = argparse.ArgumentParser(prog="python -m cloud", description="The ClassOps cloud service.")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    cli.add_commands(parser.add_subparsers(dest="cloud_command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
