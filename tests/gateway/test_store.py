"""The gateway's SQLite store: de-duplication, presence, sync bookkeeping, durability."""

from pathlib import Path

import pytest

from gateway.records import Accepted, Rejected
from gateway.store import QUARANTINE_KEEP, Store
from protocol import messages

DEV = "esp32-0a0b0c0d0e0f"
BOOT = "00c0ffee"


def attendance(seq: int, boot: str = BOOT, device: str = DEV) -> Accepted:
    msg = messages.message(messages.ATTENDANCE, device, boot, seq, 1795454769 + seq,
                           {"card": "c" * 32, "hist": False})
    return Accepted.from_message(msg)


def birth(boot: str = BOOT, health_s: int = 10) -> Accepted:
    msg = messages.message(messages.BIRTH, DEV, boot, 0, 1795454769, {
        "role": "attendance", "fw": "1.0.0", "app": "1.0.0", "reset": "power_on", "health_s": health_s,
    })
    return Accepted.from_message(msg)


def will(boot: str = BOOT) -> Accepted:
    return Accepted.from_message(messages.will(DEV, boot))


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "gw.db")
    yield s
    s.close()


def test_a_replayed_event_is_stored_once(store: Store) -> None:
    first = store.commit([attendance(1), attendance(2)])
    again = store.commit([attendance(2), attendance(3)])
    assert first.inserted == [True, True]
    assert again.inserted == [False, True]
    assert [r["seq"] for r in store.pending(100)] == [1, 2, 3]


def test_the_same_seq_in_another_boot_is_a_new_event(store: Store) -> None:
    store.commit([attendance(1), attendance(1, boot="0badf00d")])
    assert len(store.pending(100)) == 2


def test_pending_keeps_gateway_order_and_confirmed_records_leave_it(store: Store) -> None:
    store.commit([attendance(i) for i in range(1, 6)])
    batch = store.pending(3)
    gseqs = [r["gseq"] for r in batch]
    assert gseqs == sorted(gseqs)
    store.mark_synced(gseqs[:2], [(gseqs[2], "bad_field")])
    assert [r["seq"] for r in store.pending(100)] == [4, 5]
    assert store.backlog()[0] == 2


def test_records_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    s = Store(path)
    s.commit([attendance(1)])
    s.close()
    s = Store(path)
    assert [r["seq"] for r in s.pending(10)] == [1]
    assert s.commit([attendance(1)]).inserted == [False]
    s.close()


def test_birth_and_will_drive_presence(store: Store) -> None:
    store.commit([birth()])
    assert store.devices()[0]["presence"] == "online"
    result = store.commit([will()])
    assert result.presence_changes == [(DEV, "offline")]
    assert store.devices()[0]["presence"] == "offline"
    # The retained will, delivered again after a gateway restart, changes nothing and is not resent.
    assert store.commit([will()]).inserted == [False]
    kinds = [r["kind"] for r in store.pending(10)]
    assert kinds == ["birth", "will"]


def test_a_will_from_an_earlier_boot_is_ignored(store: Store) -> None:
    store.commit([birth(boot="11111111")])
    assert store.commit([will(boot="22222222")]).inserted == [False]
    assert store.devices()[0]["presence"] == "online"


def test_missed_health_periods_make_a_device_offline_until_heard_again(store: Store) -> None:
    store.commit([birth(health_s=10)], now=1000.0)
    assert store.mark_missing(3, now=1025.0) == []
    assert store.mark_missing(3, now=1031.0) == [DEV]
    assert store.devices()[0]["presence"] == "offline"
    result = store.commit([attendance(5)], now=1040.0)
    assert result.presence_changes == [(DEV, "online")]
    presence = [r["body"] for r in store.pending(10) if r["kind"] == "presence"]
    assert presence == [{"state": "offline", "reason": "missed_health"},
                        {"state": "online", "reason": "heard_again"}]


def test_quarantine_is_bounded(store: Store) -> None:
    bad = [Rejected("t", messages.BAD_JSON, "x", b"{") for _ in range(QUARANTINE_KEEP + 50)]
    store.commit([], bad)
    store.commit([], [Rejected("t", messages.BAD_FIELD, "newest", b"{}")])
    kept = store.quarantine(limit=QUARANTINE_KEEP * 2)
    assert len(kept) == QUARANTINE_KEEP
    assert kept[0]["detail"] == "newest"


def test_a_batch_mixing_births_events_and_repeats_counts_each_key_once(store: Store) -> None:
    other = "esp32-0a0b0c0d0e10"
    batch = [birth(), attendance(1), attendance(2), attendance(1), attendance(1, device=other),
             attendance(3), attendance(2)]
    assert store.commit(batch).inserted == [True, True, True, False, True, True, False]
    assert store.backlog()[0] == 5
    assert store.commit([attendance(3), attendance(4)]).inserted == [False, True]
    assert store.backlog()[0] == 6


def test_commands_wait_for_their_device_and_leave_once_answered(store: Store) -> None:
    cmd = {"cid": "c1", "device": DEV, "name": "power_off", "args": {}, "exp": 2000.0}
    assert store.queue_commands([cmd, {**cmd, "cid": "c0", "exp": 500.0}], now=100.0) == ["c1", "c0"]
    assert store.queue_commands([cmd], now=101.0) == []
    assert [c["cid"] for c in store.open_commands(DEV, now=1000.0)] == ["c1"]
    store.command_published("c1", now=1000.0)
    store.command_published("c1", now=1001.0)
    statuses = [r["body"] for r in store.pending(10, "priority")]
    assert statuses == [{"cid": "c1", "state": "delivered"}]
    assert store.open_commands(unpublished_only=True, now=1000.0) == []
    store.commands_answered(["c1"])
    assert store.open_commands(DEV, now=1000.0) == []


def test_only_a_newer_desired_config_replaces_the_kept_one(store: Store) -> None:
    v2 = {"device": DEV, "version": 2, "values": {"health_s": 30}}
    assert store.set_desired_configs([v2], cursor=7) == [v2]
    assert store.set_desired_configs([{**v2, "version": 1}], cursor=8) == []
    assert store.desired_config(DEV) == v2
    assert store.config_cursor() == 8
