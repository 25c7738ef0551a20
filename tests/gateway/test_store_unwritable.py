"""The store on a real filesystem that fills up or turns read-only: the error says so, nothing is half
written, and the store writes again by itself once it can; the store worker passes the kind of failure on."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.config import load_settings
from gateway.errors import StoreUnwritable
from gateway.ingest import Prepared
from gateway.records import Accepted
from gateway.store import Store
from gateway.store_worker import Op, StoreWorker
from protocol import messages
from simulator.stack import wait_for
from tests.gateway.small_fs import fill, remount, small_filesystem

DEV = "esp32-0a0b0c0d0e0f"
BOOT = "00c0ffee"


def taps(first: int, count: int) -> list[Accepted]:
    # Cards of a realistic size and some bulk, so that a few batches fill a small filesystem.
    return [Accepted.from_message(messages.message(messages.ATTENDANCE, DEV, BOOT, seq, 1795454769 + seq,
                                                   {"card": f"{seq:032x}", "hist": False}))
            for seq in range(first, first + count)]


def stored_keys(path: Path) -> list[int]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return [s for (s,) in db.execute("SELECT seq FROM record WHERE kind = 'attendance' ORDER BY seq")]


def answers(worker: StoreWorker) -> bool:
    try:
        worker.call(Op.BACKLOG)
    except StoreUnwritable:
        return False
    return True


def test_a_full_disk_is_reported_as_such_and_the_store_writes_again_when_space_returns(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "data", size="2m") as data:
        store = Store(data / "gateway.db")
        try:
            store.commit(taps(1, 10))
            filler = fill(data)
            seq, failure = 11, None
            # WAL pages already allocated can take a few small commits: go on until a page is needed.
            for _ in range(200):
                try:
                    store.commit(taps(seq, 200))
                except StoreUnwritable as exc:
                    failure = exc
                    break
                seq += 200
            assert failure is not None, "the store kept writing on a full filesystem"
            # The error that matters, not "cannot rollback - no transaction is active".
            assert "full" in str(failure)
            assert isinstance(failure.__cause__, sqlite3.OperationalError)
            before = stored_keys(data / "gateway.db")
            assert before == list(range(1, seq))
            assert store.backlog()[0] == len(before)
            assert not store.needs_reopen

            filler.unlink()
            again = store.commit(taps(seq, 200))
            assert again.inserted == [True] * 200
            assert stored_keys(data / "gateway.db") == list(range(1, seq + 200))
            assert store.backlog()[0] == seq + 199
            store.mark_synced(list(range(1, 11)), [])
            assert store.backlog()[0] == seq + 189
        finally:
            store.close()


def test_mark_synced_on_a_full_disk_raises_the_disk_error_and_changes_nothing(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "data", size="2m") as data:
        store = Store(data / "gateway.db")
        try:
            store.commit(taps(1, 2000))
            fill(data)
            with pytest.raises(StoreUnwritable, match="full"):
                for first in range(1, 2001, 100):
                    store.mark_synced(list(range(first, first + 100)), [])
            pending = store.backlog()[0]
            with sqlite3.connect(f"file:{data / 'gateway.db'}?mode=ro", uri=True) as db:
                (on_disk,) = db.execute("SELECT COUNT(*) FROM record WHERE sync_state = 0").fetchone()
            assert pending == on_disk > 0
        finally:
            store.close()


def test_a_read_only_data_folder_cannot_open_the_store_says_so_and_is_not_retried_in_a_loop(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "data", size="8m") as data:
        config = tmp_path / "gateway.toml"
        config.write_text(f'school = "S1"\nschool_secret = "{"x" * 32}"\ndata_dir = "{data}"\n'
                          '[cloud]\nurl = "http://127.0.0.1:9"\ntoken = "t"\n')
        worker = StoreWorker(load_settings(config))
        worker.start()
        try:
            worker.call(Op.COMMIT, Prepared(taps(1, 5)))
            worker.close()
            # A filesystem the kernel turned read-only after an error, found at the worker's next start.
            remount(data, "ro")
            with pytest.raises(StoreUnwritable, match="could not open"):
                worker.start()
            # Requests try to start a worker; after two failures in a row they fail at once for a while,
            # instead of each waiting for a worker that cannot open the store.
            for _ in range(2):
                with pytest.raises(StoreUnwritable, match="could not open"):
                    worker.call(Op.BACKLOG)
            with pytest.raises(StoreUnwritable, match="next try in"):
                worker.call(Op.BACKLOG)
            remount(data, "rw")
            wait_for(lambda: answers(worker), 30, "a worker on the writable folder")
            worker.call(Op.COMMIT, Prepared(taps(6, 5)))
            assert stored_keys(data / "gateway.db") == list(range(1, 11))
        finally:
            worker.close()
