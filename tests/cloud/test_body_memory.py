"""What a large request body costs the real server (`classops cloud serve`): its resident memory, from /proc."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.stack import CloudServer

pytestmark = pytest.mark.slow

SYNC = "/api/v1/gateway/sync"
MB = 1024 * 1024
# What a body nobody may send can cost the server at most, in kB of resident memory.
MAX_GROWTH_KB = 5 * 1024
CHUNK = 64 * 1024


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0])
    raise AssertionError(f"/proc/{pid}/status has no {field}")


def _post(port: int, head: bytes, body: Iterator[bytes]) -> int:
    """Send a request while reading its answer, as a client pushing a body it was told not to would; the
    answer's status (0 if there was none)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:

        def push() -> None:
            try:
                sock.sendall(head)
                for chunk in body:
                    sock.sendall(chunk)
            except OSError:
                # The server closed the connection on the rest of the body: what it should do.
                pass

        sender = threading.Thread(target=push, daemon=True)
        sender.start()
        answer = b""
        try:
            while b"\r\n" not in answer:
                data = sock.recv(4096)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
        sender.join(timeout=60)
    return int(answer.split()[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def _head(port: int, *lines: str) -> bytes:
    return ("\r\n".join([f"POST {SYNC} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json",
                         *lines]) + "\r\n\r\n").encode()


def _filler(total: int) -> Iterator[bytes]:
    """`total` bytes of one JSON string's inside, in chunks."""
    chunk = b"x" * CHUNK
    for _ in range(total // CHUNK):
        yield chunk


def _chunked(chunks: Iterator[bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        yield b"%x\r\n%s\r\n" % (len(chunk), chunk)
    yield b"0\r\n\r\n"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    # Nothing in the background, so that what the server holds is what the requests made it hold.
    server = CloudServer(
        tmp_path_factory.mktemp("cloud"),
        env={"CLASSOPS_CLOUD_MAINTENANCE_INTERVAL_S": "0", "CLASSOPS_CLOUD_OPERATIONS_INTERVAL_S": "0"},
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _growth_kb(cloud: CloudServer, send) -> tuple[int, int]:
    """The status `send()` got, and how far the server's peak resident memory rose above where it was."""
    assert cloud.proc is not None
    pid = cloud.proc.pid
    # Warm up: the first requests of each kind load what answering them needs.
    send(1 * MB)
    send(1 * MB)
    # Writing 5 makes the peak (VmHWM) the present resident size again.
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = _status_kb(pid, "VmRSS")
    status = send(50 * MB)
    return status, _status_kb(pid, "VmHWM") - before


def test_fifty_megabytes_with_their_length_and_no_token_cost_almost_nothing(cloud):
    def send(size: int) -> int:
        head = _head(cloud.port, f"Content-Length: {size + 2}")
        return _post(cloud.port, head, iter([b'"', *_filler(size), b'"']))

    status, growth = _growth_kb(cloud, send)

    assert status == 413
    assert growth < MAX_GROWTH_KB, f"the server grew by {growth} kB"


def test_fifty_megabytes_streamed_without_a_token_cost_almost_nothing(cloud):
    def send(size: int) -> int:
        head = _head(cloud.port, "Transfer-Encoding: chunked")
        return _post(cloud.port, head, _chunked(iter([b'"', *_filler(size), b'"'])))

    status, growth = _growth_kb(cloud, send)

    assert status == 401
    assert growth < MAX_GROWTH_KB, f"the server grew by {growth} kB"


def test_a_batch_within_the_limit_is_not_parsed_for_an_unknown_token(cloud):
    # 20 MB of taps: a body the sync route takes from its gateway, but parsing it would cost far more.
    record = json.dumps({"gseq": 1, "kind": "attendance", "device": "esp32-aabbccddee01", "boot": "0badf00d",
                         "seq": 1, "ts": 1767225600.0, "body": {"card": "p" * 32, "hist": False}}).encode()

    def send(size: int) -> int:
        count = (size * 20 // 50) // (len(record) + 1)
        records = b",".join([record] * count)
        body = b'{"records":[' + records + b'],"sent_at":1767225600.0}'
        head = _head(cloud.port, f"Content-Length: {len(body)}", "Authorization: Bearer not-a-gateway")
        return _post(cloud.port, head, (body[start : start + CHUNK] for start in range(0, len(body), CHUNK)))

    status, growth = _growth_kb(cloud, send)

    assert status == 401
    assert growth < MAX_GROWTH_KB, f"the server grew by {growth} kB"


def test_a_gateways_oversized_health_report_is_refused_and_device_lists_stay_small(cloud):
    cloud.add_school("S001", "School 1")
    cloud.add_user("admin", "school-pass-123", "school_admin", "S001")
    token = cloud.add_gateway("S001")["token"]
    device = "esp32-aabbccddee01"

    def health(gseq: int, errors: dict) -> dict:
        return {"gseq": gseq, "kind": "health", "device": device, "boot": "0badf00d", "seq": gseq,
                "ts": 1767225600.0 + gseq, "body": {"uptime_s": 60, "heap_free": 90_000, "errors": errors}}

    def sync(records: list[dict]) -> tuple[int, dict]:
        connection = http.client.HTTPConnection("127.0.0.1", cloud.port, timeout=60)
        try:
            connection.request("POST", SYNC, json.dumps({"records": records, "sent_at": 1767225600.0}),
                               {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    def sync_padded(size: int) -> int:
        body = json.dumps({"records": [health(3, {"mqtt": 3})]}).encode()
        head = _head(cloud.port, f"Content-Length: {len(body) + size}", f"Authorization: Bearer {token}")
        return _post(cloud.port, head, iter([body, *_filler(size)]))

    # 10 MB of error counts, in a body the sync route takes; and a body of 50 MB, which it does not.
    status, answer = sync([health(1, {"mqtt": 1}), health(2, {f"e{n}": n for n in range(700_000)})])
    refused = sync_padded(50 * MB)

    assert status == 200
    assert answer["confirmed"] == [1]
    assert [(r["gseq"], r["reason"]) for r in answer["rejected"]] == [(2, "too_large")]
    assert refused == 413
    admin = cloud.login("admin", "school-pass-123")
    request = urllib.request.Request(cloud.url + "/api/v1/devices", headers={"Authorization": f"Bearer {admin}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        listed = response.read()
    assert len(listed) < 5_000
    assert [d["last_health"]["errors"] for d in json.loads(listed)] == [{"mqtt": 1}]
