"""Firmware entry point.

Host: `micropython main.py CONFIG.json [CONFIG.json ...]`, one virtual device per config file.
Chip: boot runs this file, which reads /config.json.

Exit codes: 0 normal end, 2 bad config, 3 the (single) device asked to be restarted by a reboot
command, so the supervisor that started the VM starts it again.
"""

import asyncio
import sys

import hal
from app import config
from app.device import RESTART, Device

CHIP_CONFIG = "/config.json"


async def _supervise(cfg, alone):
    while True:
        device = Device(cfg, hal.create(cfg))
        code = await device.run()
        if alone or code != RESTART:
            return code
        # Devices that share a VM restart in place: exiting would reboot the neighbours too.


async def _run_all(cfgs):
    if len(cfgs) == 1:
        return await _supervise(cfgs[0], True)
    await asyncio.gather(*[_supervise(cfg, False) for cfg in cfgs])
    return 0


def main(argv):
    """Load the configs named in argv (or the chip's) and run their devices; return the exit code."""
    paths = argv[1:] or [CHIP_CONFIG]
    try:
        cfgs = [config.load(path) for path in paths]
    except config.ConfigError as exc:
        print("config error:", exc)
        return 2
    ids = [cfg["device_id"] for cfg in cfgs]
    for i in range(len(ids)):
        if ids[i] is not None and ids[i] in ids[i + 1:]:
            print("config error: device %s configured twice" % ids[i])
            return 2
    return asyncio.run(_run_all(cfgs))


sys.exit(main(sys.argv))
