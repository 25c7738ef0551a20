"""`python -m gateway ...` is `classops gateway ...`."""

import sys

from classops_cli import main

sys.exit(main(["gateway", *sys.argv[1:]]))
