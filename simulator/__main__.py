"""`python -m simulator ...` is `classops sim ...`."""

import sys

from classops_cli import main

sys.exit(main(["sim", *sys.argv[1:]]))
