"""App update bundles for the firmware's `ota` command, built from this checkout's firmware/app.

A bundle is a folder: `manifest.json` ({"version", "files": [{"path", "sha256", "size"}, ...]}, the
format firmware/app/ota.py documents) beside the app package compiled with mpy-cross, with
app/__init__.py's VERSION set to the bundle's version. Serve the folder over HTTP and send its URL in
the command; the firmware checks every file against the manifest.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from simulator.firmware import firmware_dir, mpy_cross_binary

MANIFEST = "manifest.json"
_VERSION_LINE = re.compile(r'^VERSION = "[^"]*"$', re.MULTILINE)


class BundleError(RuntimeError):
    """The bundle could not be built."""


def build_bundle(root: Path, version: str, patch: Callable[[str, str], str] | None = None,
                 wrong_hash: str | None = None) -> dict:
    """Build the bundle of app version `version` in `root`; its manifest.

    For rehearsing failed updates: `patch(path, text)` rewrites a source (path relative to firmware/,
    e.g. "app/device.py") before it is compiled, and `wrong_hash` names a bundle file (e.g.
    "app/mqtt.mpy") whose manifest digest is made wrong.
    """
    compiler = mpy_cross_binary()
    if compiler is None:
        raise BundleError("mpy-cross is not installed")
    app = firmware_dir()
    files = []
    root.mkdir(parents=True, exist_ok=True)
    # The patched sources go to a folder of their own: the bundle's folder is served as it is.
    with tempfile.TemporaryDirectory(prefix="bundle-src-") as scratch:
        for source in sorted((app / "app").rglob("*.py")):
            rel = source.relative_to(app).as_posix()
            text = source.read_text()
            if rel == "app/__init__.py":
                text, found = _VERSION_LINE.subn(f'VERSION = "{version}"', text)
                if found != 1:
                    # Without it the new code would report the old version and never pass as updated.
                    raise BundleError("app/__init__.py has no single VERSION = \"...\" line")
            if patch is not None:
                text = patch(rel, text)
            src = Path(scratch) / rel
            src.parent.mkdir(parents=True, exist_ok=True)
            src.write_text(text)
            target = root / rel.replace(".py", ".mpy")
            target.parent.mkdir(parents=True, exist_ok=True)
            done = subprocess.run([compiler, "-o", str(target), str(src)], capture_output=True, text=True,
                                  check=False)
            if done.returncode != 0:
                raise BundleError(f"mpy-cross failed on {rel}: {done.stderr.strip()}")
            data = target.read_bytes()
            path = target.relative_to(root).as_posix()
            digest = hashlib.sha256(data + b"x" if path == wrong_hash else data).hexdigest()
            files.append({"path": path, "sha256": digest, "size": len(data)})
    manifest = {"version": version, "files": files}
    (root / MANIFEST).write_text(json.dumps(manifest))
    return manifest
