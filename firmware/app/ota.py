"""Over-the-air update of the app files, downloaded from the school gateway over HTTP.

The `ota` command's args:

    url       base URL of the bundle, "http://HOST[:PORT]/PATH/"; file paths are relative to it
    version   the version the bundle holds (the manifest must say the same)
    manifest  the manifest itself (an object), or its URL (absolute, or relative to url);
              default "manifest.json"
    image     optional: {"path", "sha256", "size"} of a whole firmware image (chip only, esp32.Partition)

A manifest: {"version": "0.2.0", "files": [{"path": "app/device.mpy", "sha256": "<64 hex>",
"size": 5935}, ...]}. Paths lie under app/, hal/ or protocol/ and end in .py or .mpy; a bundle replaces
whole packages, so every package it touches must be complete in it.

Steps: every file is streamed into the slot the running code does not use, hashed as it comes; any
mismatch aborts with the old version untouched. Then loader.py's state is switched in one atomic
rename to "trial", and the device restarts into the new version. That version is committed only after
its self-test passes (broker reachable, role hardware answering) within ota_selftest_s; otherwise, or
if it cannot start TRIAL_BOOTS times, the old version comes back. The command's ack is sent by
whichever version runs at the end, with the outcome.
"""

import asyncio
import gc
import hashlib
import json
import os
from binascii import hexlify

import loader

MAX_FILES = 64
MAX_BUNDLE = 512 * 1024
MAX_MANIFEST = 8192
# The checked file list, one JSON array [path, sha256, size] a line, in the OTA folder while downloading.
LISTING = "files.jsonl"
CHUNK = 512
HTTP_TIMEOUT_S = 20
PACKAGES = ("app", "hal", "protocol")
_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-."


class OtaError(Exception):
    """The update cannot go on; the message goes into the command's ack."""


def parse_url(url):
    """(host, port, path) of an http:// URL."""
    if not isinstance(url, str) or not url.startswith("http://"):
        raise OtaError("url must be http://HOST[:PORT]/PATH")
    rest = url[7:]
    cut = rest.find("/")
    hostport, path = (rest, "/") if cut < 0 else (rest[:cut], rest[cut:])
    port = 80
    if ":" in hostport:
        hostport, port_text = hostport.split(":", 1)
        try:
            port = int(port_text)
        except ValueError:
            raise OtaError("bad port in url")
    if not hostport:
        raise OtaError("url has no host")
    return hostport, port, path


async def http_get(url, sink, limit):
    """GET `url` and pass the body to sink(chunk) in pieces; the body's length."""
    host, port, path = parse_url(url)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), HTTP_TIMEOUT_S)
    try:
        writer.write(("GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path, host)).encode())
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), HTTP_TIMEOUT_S)
        parts = status.split()
        if len(parts) < 2 or parts[1] != b"200":
            raise OtaError("GET %s: %s" % (path, status.decode().strip() or "no answer"))
        while True:
            line = await asyncio.wait_for(reader.readline(), HTTP_TIMEOUT_S)
            if line in (b"\r\n", b"\n", b""):
                break
        total = 0
        # One buffer for the whole body: a heap of a few tens of KB has no room for a new chunk
        # object per read.
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while True:
            n = await asyncio.wait_for(reader.readinto(buf), HTTP_TIMEOUT_S)
            if not n:
                return total
            total += n
            if total > limit:
                raise OtaError("GET %s: more than %d bytes" % (path, limit))
            sink(view[:n])
    finally:
        writer.close()
        sock = getattr(writer, "s", None)
        if sock is not None:
            sock.close()


def _check_path(path):
    if not isinstance(path, str) or not (path.endswith(".py") or path.endswith(".mpy")):
        raise OtaError("bad file path %r" % (path,))
    parts = path.split("/")
    if parts[0] not in PACKAGES:
        raise OtaError("file %s is not under %s" % (path, "/".join(PACKAGES)))
    for part in parts:
        if not part or part in (".", ".."):
            raise OtaError("bad file path %r" % (path,))
        for ch in part:
            if ch not in _NAME_CHARS:
                raise OtaError("bad file path %r" % (path,))
    return parts


def check_manifest(manifest, version):
    """The manifest's file list, checked; OtaError says what is wrong."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise OtaError("manifest must be an object with a files list")
    if manifest.get("version") != version:
        raise OtaError("manifest is for version %r, not %r" % (manifest.get("version"), version))
    files = manifest["files"]
    if not files or len(files) > MAX_FILES:
        raise OtaError("a bundle has 1 to %d files" % MAX_FILES)
    total = 0
    for item in files:
        if not isinstance(item, dict):
            raise OtaError("manifest file entries are objects")
        _check_path(item.get("path"))
        digest = item.get("sha256")
        if not isinstance(digest, str) or len(digest) != 64:
            raise OtaError("file %s needs a sha256 of 64 hex digits" % item.get("path"))
        size = item.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise OtaError("file %s needs its size" % item.get("path"))
        total += size
    if total > MAX_BUNDLE:
        raise OtaError("bundle of %d bytes is larger than %d" % (total, MAX_BUNDLE))
    return files


def _makedirs(path):
    cur = "/" if path.startswith("/") else ""
    for part in path.split("/"):
        if part:
            cur += part
            try:
                os.mkdir(cur)
            except OSError:
                pass
            cur += "/"


def _wipe(path):
    try:
        entries = list(os.ilistdir(path))
    except OSError:
        return
    for entry in entries:
        child = path + "/" + entry[0]
        if entry[1] == 0x4000:
            _wipe(child)
        else:
            os.remove(child)
    os.rmdir(path)


async def _fetch_file(url, target, digest, size):
    h = hashlib.sha256()
    with open(target, "wb") as f:
        def sink(chunk):
            h.update(chunk)
            f.write(chunk)

        got = await http_get(url, sink, size)
    if got != size:
        raise OtaError("%s: %d bytes, manifest says %d" % (url, got, size))
    if hexlify(h.digest()).decode() != digest.lower():
        raise OtaError("%s: sha256 does not match the manifest" % url)


def _write_listing(path, files):
    # JSON lines: any string a manifest may hold (a path is checked, a digest only for its length)
    # comes back from json.loads unchanged, newlines in it escaped.
    with open(path, "w") as f:
        for item in files:
            f.write(json.dumps([item["path"], item["sha256"], item["size"]]))
            f.write("\n")


async def stage(ddir, args, active):
    """Download and verify the bundle into the slot `active` does not use; that slot."""
    base = args.get("url")
    version = args.get("version")
    parse_url(base)
    if not isinstance(version, str) or not version:
        raise OtaError("version must be a string")
    if not base.endswith("/"):
        base += "/"
    manifest = args.get("manifest", "manifest.json")
    if isinstance(manifest, str):
        # Through a file: parsing from a stream needs no contiguous block as large as the manifest.
        gc.collect()
        _makedirs(ddir + "/" + loader.OTA_DIR)
        path = ddir + "/" + loader.OTA_DIR + "/manifest.json"
        with open(path, "wb") as f:
            await http_get(manifest if manifest.startswith("http://") else base + manifest,
                           f.write, MAX_MANIFEST)
        try:
            with open(path) as f:
                manifest = json.load(f)
        except ValueError:
            raise OtaError("manifest is not JSON")
        os.remove(path)
    files = check_manifest(manifest, version)
    # The parsed manifest (a few hundred bytes of heap a file) goes before the first download: the
    # downloads read the checked list back from flash one line at a time, so what they hold on the
    # heap does not grow with the bundle. (An inline manifest stays, as part of the command's args.)
    _makedirs(ddir + "/" + loader.OTA_DIR)
    listing = ddir + "/" + loader.OTA_DIR + "/" + LISTING
    _write_listing(listing, files)
    files = manifest = None
    slot = loader.SLOTS[1] if active == loader.SLOTS[0] else loader.SLOTS[0]
    folder = loader.slot_dir(ddir, slot)
    _wipe(folder)
    try:
        with open(listing) as f:
            while True:
                line = f.readline()
                if not line:
                    break
                path, digest, size = json.loads(line)
                cut = path.rfind("/")
                _makedirs(folder + "/" + path[:cut])
                gc.collect()
                await _fetch_file(base + path, folder + "/" + path, digest, size)
    except Exception:
        _wipe(folder)
        raise
    finally:
        os.remove(listing)
    return slot


async def run(device, cid, args):
    """Carry out an `ota` command: (result, detail) now, or (None, None) when the device restarts into
    the new version and the ack comes from the outcome."""
    hal = device.hal
    if getattr(hal, "shared", False):
        return "rejected", "this VM hosts several devices; app updates need a VM of their own"
    ddir = hal.data_dir
    st = loader.ota_state(ddir)
    if st["trial"] is not None:
        return "rejected", "an update is already on trial"
    image = args.get("image")
    try:
        if image is not None:
            updater = hal.firmware_image()
            if updater is None:
                return "rejected", "no firmware image update on this hardware"
            await updater.update(args.get("url"), image)
        slot = await stage(ddir, args, st["active"])
    except OtaError as exc:
        return "error", str(exc)
    except (OSError, asyncio.TimeoutError) as exc:
        return "error", "download failed: %r" % (exc,)
    device.log("ota: version %s staged in slot %s; switching" % (args["version"], slot))
    st["trial"] = slot
    st["tries"] = 0
    st["cid"] = cid
    st["version"] = args["version"]
    st["outcome"] = None
    loader.save_ota(ddir, st)
    device.restart("app update to %s" % args["version"])
    return None, None
