"""`classops firmware build|flash` and `classops device provision`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _build(args: argparse.Namespace) -> int:
    from simulator.firmware_build import build_firmware
    from simulator.ota import BundleError

    try:
        manifest = build_firmware(Path(args.out))
    except BundleError as exc:
        print(f"classops firmware build: {exc}", file=sys.stderr)
        return 1
    size = sum(entry["size"] for entry in manifest["files"])
    print(f"firmware {manifest['version']}: {len(manifest['files'])} files, {size} bytes in {args.out}")
    return 0


def _flash(args: argparse.Namespace) -> int:
    from simulator.provision import ProvisionError, flash_image

    try:
        flash_image(args.port, Path(args.image), baud=args.baud, chip=args.chip, offset=args.offset,
                    erase=args.erase)
    except ProvisionError as exc:
        print(f"classops firmware flash: {exc}", file=sys.stderr)
        return 2
    return 0


def _provision(args: argparse.Namespace) -> int:
    from simulator.provision import ProvisionError, device_config, provision_device

    try:
        config = device_config(
            device_id=args.device_id, school=args.school, role=args.role, wifi_ssid=args.wifi_ssid,
            wifi_password=args.wifi_password, broker_host=args.broker_host, broker_port=args.broker_port,
            username=args.username, password=args.password,
        )
    except ProvisionError as exc:
        print(f"classops device provision: {exc}", file=sys.stderr)
        return 2
    try:
        provision_device(args.port, config, Path(args.bundle) if args.bundle else None, baudrate=args.baud,
                         log=print)
    except ProvisionError as exc:
        print(f"classops device provision: {exc}", file=sys.stderr)
        return 1
    print("provisioned; reset the board to start the firmware")
    return 0


def register(parts: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `firmware` and `device` to the `classops` command."""
    firmware = parts.add_parser("firmware", help="build the firmware bundle, flash MicroPython onto a chip")
    sub = firmware.add_subparsers(dest="command", required=True, metavar="COMMAND")
    build = sub.add_parser("build", help="compile firmware/ and protocol/ with mpy-cross into a bundle with a manifest")
    build.add_argument("--out", default="build/firmware", help="bundle folder (default build/firmware)")
    build.set_defaults(func=_build)
    flash = sub.add_parser("flash", help="write a MicroPython image to an ESP32 with esptool")
    flash.add_argument("--port", required=True, help="serial port of the chip, e.g. /dev/ttyUSB0")
    flash.add_argument("--image", required=True, help="MicroPython firmware image (.bin)")
    flash.add_argument("--baud", type=int, default=460800, help="flashing baud rate (default 460800)")
    flash.add_argument("--chip", default="esp32", help="esptool chip type (default esp32)")
    flash.add_argument("--offset", default="0x1000", help="flash offset of the image (default 0x1000, ESP32)")
    flash.add_argument("--erase", action="store_true", help="erase the whole flash first")
    flash.set_defaults(func=_flash)

    device = parts.add_parser("device", help="set up a device over its serial REPL")
    dsub = device.add_subparsers(dest="command", required=True, metavar="COMMAND")
    prov = dsub.add_parser("provision", help="write config.json (and a firmware bundle) over the MicroPython REPL")
    prov.add_argument("--port", required=True, help="serial port of the board")
    prov.add_argument("--baud", type=int, default=115200, help="REPL baud rate (default 115200)")
    prov.add_argument("--role", required=True, help="sensor, attendance or blackboard")
    prov.add_argument("--school", required=True, help="school code")
    prov.add_argument("--device-id", help="esp32-<12 hex>; on a chip the MAC's id when omitted")
    prov.add_argument("--wifi-ssid", required=True)
    prov.add_argument("--wifi-password")
    prov.add_argument("--broker-host", required=True, help="MQTT broker (the school gateway)")
    prov.add_argument("--broker-port", type=int, default=1883)
    prov.add_argument("--username", help="MQTT user name")
    prov.add_argument("--password", help="MQTT password")
    prov.add_argument("--bundle", help="firmware bundle folder from `classops firmware build` to write too")
    prov.set_defaults(func=_provision)
