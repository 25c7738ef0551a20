"""App updates over the air on the real firmware, from a bundle served over HTTP as the gateway will."""

from __future__ import annotations

import functools
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from protocol import messages, topics
from simulator.firmware import EXIT_RESTART, FirmwareProcess
from simulator.ota import build_bundle
from tests.firmware.helpers import DEVICE, WAIT_S

OLD = "0.1.0"
NEW = "0.2.0"


class BundleServer:
    """http.server on 127.0.0.1 serving one folder; `corrupt` names files served with a flipped byte."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.corrupt: set[str] = set()
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.requests.append(self.path)
                rel = self.path.lstrip("/")
                if rel in server.corrupt:
                    data = bytearray((server.root / rel).read_bytes())
                    data[len(data) // 2] ^= 0xFF
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(bytes(data))
                    return
                super().do_GET()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[BundleServer]:
    srv = BundleServer(tmp_path / "www")
    yield srv
    srv.stop()


def keep_running(proc: FirmwareProcess, until: Callable[[], object], timeout: float = 60) -> object:
    """Start the VM again whenever it exits to restart, as a chip's reset does, until `until()`."""
    deadline = time.monotonic() + timeout
    while True:
        value = until()
        if value:
            return value
        if proc.returncode == EXIT_RESTART:
            proc.start()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; firmware log:\n{proc.log_tail()}")
        time.sleep(0.05)


def _ota(observer, cid: str, args: dict) -> None:
    observer.send(DEVICE, topics.COMMAND, messages.command(cid, "ota", args, time.time() + 300))


def _ack(observer, cid):
    return observer.select(messages.ACK, DEVICE, cid=cid)


def _births(observer):
    return [r.msg for r in observer.select(messages.BIRTH, DEVICE)]


def test_good_bundle_is_committed_after_its_self_test(launch, observer, server, tmp_path):
    build_bundle(server.root / "v2", NEW)
    proc = launch(ota_selftest_s=20)
    assert observer.wait_for(messages.BIRTH, DEVICE)[0].msg["app"] == OLD
    _ota(observer, "c-ota", {"url": server.url + "v2/", "version": NEW})
    ack = keep_running(proc, lambda: _ack(observer, "c-ota"))[0].msg
    assert ack["result"] == "ok" and NEW in ack["detail"]
    assert _births(observer)[-1]["app"] == NEW
    state = json.loads((tmp_path / DEVICE / "flash" / "ota.json").read_text())
    assert state["trial"] is None and state["active"] in ("a", "b")
    # Committed: a power cut now boots the new version again.
    proc.kill()
    proc.start()
    observer.wait_for(messages.BIRTH, DEVICE, where=lambda r: r.msg["app"] == NEW, count=2)
    assert "/v2/manifest.json" in server.requests


@pytest.mark.parametrize("fault", ["corrupt_in_transit", "wrong_hash", "bad_manifest"])
def test_bad_download_is_refused_and_nothing_switches(launch, observer, server, fault):
    manifest = build_bundle(server.root / "v2", NEW, wrong_hash="app/mqtt.mpy" if fault == "wrong_hash" else None)
    if fault == "corrupt_in_transit":
        server.corrupt.add("v2/app/device.mpy")
    args = {"url": server.url + "v2/", "version": NEW}
    if fault == "bad_manifest":
        manifest["files"][0]["path"] = "../../etc/passwd.py"
        args["manifest"] = manifest
    proc = launch()
    observer.wait_for(messages.BIRTH, DEVICE)
    _ota(observer, "c-bad", args)
    ack = observer.wait_for(messages.ACK, DEVICE, cid="c-bad")[0].msg
    assert ack["result"] == "error"
    expected = {"corrupt_in_transit": "sha256", "wrong_hash": "sha256", "bad_manifest": "is not under"}
    assert expected[fault] in ack["detail"]
    assert proc.is_running and len(_births(observer)) == 1


def test_version_that_cannot_start_is_rolled_back(launch, observer, server):
    build_bundle(server.root / "v2", NEW, patch=lambda rel, text: text + "\nraise ImportError('broken build')\n"
                 if rel == "app/device.py" else text)
    proc = launch()
    observer.wait_for(messages.BIRTH, DEVICE)
    _ota(observer, "c-crash", {"url": server.url + "v2/", "version": NEW, "manifest": "manifest.json"})
    ack = keep_running(proc, lambda: _ack(observer, "c-crash"))[0].msg
    assert ack["result"] == "error" and "does not start" in ack["detail"]
    assert all(b["app"] == OLD for b in _births(observer))


def test_version_failing_its_self_test_is_rolled_back(launch, observer, server, tmp_path):
    # The new version's MQTT client speaks a protocol level the broker refuses: no broker, no commit.
    build_bundle(server.root / "v2", NEW, patch=lambda rel, text: text.replace("pkt[pos] = 4", "pkt[pos] = 9")
                 if rel == "app/mqtt.py" else text)
    proc = launch(ota_selftest_s=3)
    observer.wait_for(messages.BIRTH, DEVICE)
    _ota(observer, "c-st", {"url": server.url + "v2/", "version": NEW})
    ack = keep_running(proc, lambda: _ack(observer, "c-st"))[0].msg
    assert ack["result"] == "error" and "self-test failed" in ack["detail"]
    assert all(b["app"] == OLD for b in _births(observer))
    assert "app 0.2.0 failed its self-test" in proc.log_text()


def test_power_cut_during_the_switch_leaves_a_bootable_device(launch, observer, server, tmp_path):
    build_bundle(server.root / "v2", NEW)
    flash = tmp_path / DEVICE / "flash"
    proc = launch(ota_selftest_s=20)
    observer.wait_for(messages.BIRTH, DEVICE)
    _ota(observer, "c-cut", {"url": server.url + "v2/", "version": NEW})
    deadline = time.monotonic() + WAIT_S
    while "staged" not in proc.log_text() and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.kill()
    # And a torn state file from an interrupted write: the rename never happened, so it is ignored.
    (flash / "ota.json.tmp").write_bytes(b'{"active": "b", "tri')
    proc.start()
    ack = keep_running(proc, lambda: _ack(observer, "c-cut"))
    assert ack[0].msg["result"] in ("ok", "error")
    state = json.loads((flash / "ota.json").read_text())
    assert state["trial"] is None
    app = _births(observer)[-1]["app"]
    assert app == (NEW if ack[0].msg["result"] == "ok" else OLD)


def test_update_is_refused_in_a_shared_vm(launch, observer, server):
    build_bundle(server.root / "v2", NEW)
    launch(device_ids=[DEVICE, "esp32-0a0b0c0d0e0f"])
    observer.wait_for(messages.BIRTH, DEVICE)
    _ota(observer, "c-shared", {"url": server.url + "v2/", "version": NEW})
    ack = observer.wait_for(messages.ACK, DEVICE, cid="c-shared")[0].msg
    assert ack["result"] == "rejected" and "several devices" in ack["detail"]
