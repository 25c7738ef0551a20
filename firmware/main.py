"""Firmware entry point: `micropython main.py CONFIG.json [CONFIG.json ...]`; see entry.py."""

import sys

import entry

sys.exit(entry.main(sys.argv))
