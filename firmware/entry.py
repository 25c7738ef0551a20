"""What main.py runs, kept in a module so that it is precompiled like the rest (a script is compiled
on the device, in its heap) and is never replaced over the air.

Host: `micropython main.py CONFIG.json [CONFIG.json ...]`, one virtual device per config file.
Chip: boot runs main.py, which reads /config.json.

Before the application is imported, loader.py picks the app code to run (an update on trial, the
committed one, or the factory code) and counts failed boots; an update that cannot even be imported
is rolled back at once. Exit codes: 0 normal end, 2 bad config (and no good copy), 3 the (single)
device restarts (reboot command, app update, recovery), so the supervisor that started the VM starts
it again.
"""

import asyncio
import sys

import loader

CHIP_CONFIG = "/config.json"
RESTART = 3


def _restart_chip():
    if sys.platform == "esp32":
        import machine

        machine.reset()


async def _supervise(cfg, problem, alone, hal, Device, restart_code):
    while True:
        dev_hal = hal.create(cfg, not alone)
        ddir = dev_hal.data_dir
        boots = loader.count_boot(ddir)
        boot = {
            "safe": boots > cfg["safe_after"],
            "boots": boots - 1,
            "config_problem": problem,
            "ota": loader.ota_state(ddir) if alone else None,
        }
        device = Device(cfg, dev_hal, boot)
        code = await device.run()
        if alone or code != restart_code:
            return code
        # Devices that share a VM restart in place: exiting would reboot the neighbours too.


async def _run_all(cfgs, hal, Device, restart_code):
    if len(cfgs) == 1:
        return await _supervise(cfgs[0][0], cfgs[0][1], True, hal, Device, restart_code)
    await asyncio.gather(*[_supervise(c, p, False, hal, Device, restart_code) for c, p in cfgs])
    return 0


def main(argv):
    """Load the configs named in argv (or the chip's) and run their devices; return the exit code."""
    paths = argv[1:] or [CHIP_CONFIG]
    ota = None
    if len(paths) == 1:
        ddir = loader.data_dir(loader.raw_config(paths[0]))
        try:
            ota = loader.select_code(ddir)
        except OSError as exc:
            print("app selection failed:", exc)
    try:
        import hal
        from app import config
        from app.device import RESTART as restart_code
        from app.device import Device
    except Exception as exc:
        if ota is None or ota["trial"] is None:
            raise
        print("app update does not start:", repr(exc))
        loader.finish_trial(ddir, False, "rolled back: version %s does not start: %r" % (ota["version"], exc))
        _restart_chip()
        return RESTART
    cfgs = []
    for path in paths:
        try:
            cfg, problem = config.load_with_fallback(path)
        except config.ConfigError as exc:
            print("config error:", exc)
            return 2
        if problem:
            print("config error, running the last good config:", problem)
        cfgs.append((cfg, problem))
    ids = [c[0]["device_id"] for c in cfgs]
    for i in range(len(ids)):
        if ids[i] is not None and ids[i] in ids[i + 1:]:
            print("config error: device %s configured twice" % ids[i])
            return 2
    code = asyncio.run(_run_all(cfgs, hal, Device, restart_code))
    if code == restart_code:
        _restart_chip()
    return code


