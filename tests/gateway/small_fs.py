"""A real small filesystem for the gateway's data folder, to fill up or make read-only.

The tests run as root, so a tmpfs of a few megabytes can be mounted in the test's temporary folder; where
mounting is refused (no root, a container without CAP_SYS_ADMIN) the test is skipped and says why.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

FILL_CHUNK = 64 * 1024


@contextlib.contextmanager
def small_filesystem(path: Path, size: str = "8m") -> Iterator[Path]:
    """Mount a tmpfs of `size` on `path` for the block; it is unmounted afterwards, even after a failure."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem at {path}: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield path
    finally:
        # A process still holding a file there makes a plain umount fail: detach it then.
        if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@contextlib.contextmanager
def thin_ext4(path: Path, room: Path, size: str = "64m", room_size: str = "24m") -> Iterator[Path]:
    """Mount on `path` an ext4 (without a journal, errors=continue) of `size` whose image lives on a tmpfs
    of only `room_size` mounted on `room`: once `room` is full, the ext4's writes fail with EIO, as on a
    failing disk or an overcommitted thin volume, and succeed again when room is made."""
    with small_filesystem(room, size=room_size):
        image = room / "disk.img"
        subprocess.run(["truncate", "-s", size, str(image)], check=True)
        made = subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "^has_journal", str(image)],
                              capture_output=True, text=True, check=False)
        if made.returncode != 0:
            pytest.skip(f"cannot make an ext4 image: {made.stderr.strip()}")
        path.mkdir(parents=True, exist_ok=True)
        mounted = subprocess.run(["mount", "-o", "loop,errors=continue", str(image), str(path)],
                                 capture_output=True, text=True, check=False)
        if mounted.returncode != 0:
            pytest.skip(f"cannot loop-mount an ext4 image at {path}: {mounted.stderr.strip()}")
        try:
            yield path
        finally:
            if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode != 0:
                subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def fill(folder: Path) -> Path:
    """Write a file in `folder` until its filesystem has no space left; return the file."""
    filler = folder / "filler"
    chunk = b"\0" * FILL_CHUNK
    with open(filler, "ab", buffering=0) as out:
        size = FILL_CHUNK
        while size:
            try:
                out.write(chunk[:size])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                # Down to the last bytes: nothing is left for another page of anyone's file.
                size //= 2
    return filler


def remount(path: Path, mode: str) -> None:
    """Remount the filesystem on `path` read-only ("ro") or read-write ("rw")."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True, capture_output=True)
    os.sync()
