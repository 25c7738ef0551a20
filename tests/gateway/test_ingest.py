"""The store side of ingest: validation, pseudonyms, the quota policy and the priority lane."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from gateway.config import GatewaySettings
from gateway.errors import StoreWorkerError
from gateway.ingest import Ingestor, prepare
from gateway.privacy import card_pseudonym
from gateway.store import Store
from gateway.store_worker import Op, StoreWorker
from protocol import messages, topics

SCHOOL = "S001"
SECRET = "school-secret-0123456789"
DEV = "esp32-246f28000001"
BOOT = "00000001"


def settings(tmp_path: Path, **store: float) -> GatewaySettings:
    return GatewaySettings(school=SCHOOL, school_secret=SECRET, data_dir=tmp_path, store=store)


def raw(kind: str, seq: int, **fields) -> tuple[str, bytes]:
    base = {
        messages.ATTENDANCE: {"card": f"{seq:08x}"},
        messages.HEALTH: {"uptime_s": seq, "heap_free": 1, "heap_max_block": 1, "errors": {}, "buffered": 0},
        messages.TELEMETRY: {"readings": {"temp_c": 21.0}},
        messages.ALARM: {"code": "sensor_fault", "state": "raise"},
        messages.BIRTH: {"role": "sensor", "fw": "1", "app": "1", "reset": "power_on", "health_s": 60},
    }[kind]
    base.update(fields)
    msg = messages.message(kind, DEV, BOOT, seq, 1795454769 + seq, base)
    return topics.up(SCHOOL, DEV, messages.leaf_of(kind)), messages.encode(msg)


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "gw.db")
    yield s
    s.close()


def test_cards_are_stored_only_as_pseudonyms(tmp_path: Path, store: Store) -> None:
    result = Ingestor(settings(tmp_path), store).ingest([raw(messages.ATTENDANCE, 1, card="04a1b2c3")])
    assert result.new == 1 and result.event_keys == {DEV: [[BOOT, 1]]}
    (record,) = store.pending(10)
    assert record["body"]["card"] == card_pseudonym(SECRET, "04a1b2c3")
    assert b"04a1b2c3" not in (tmp_path / "gw.db").read_bytes()


def test_a_message_for_another_school_is_rejected(tmp_path: Path, store: Store) -> None:
    topic, payload = raw(messages.ATTENDANCE, 1)
    result = Ingestor(settings(tmp_path), store).ingest([(topic.replace(SCHOOL, "S999"), payload)])
    assert result.rejected == {messages.BAD_TOPIC: 1}
    assert store.pending(10) == []


def test_a_filling_store_sheds_samples_never_events(tmp_path: Path, store: Store) -> None:
    # A quota the empty store already fills to about 80%: samples are down-sampled, events all kept.
    quota_mb = store.usage_bytes() / 0.8 / 1024 / 1024
    ingestor = Ingestor(settings(tmp_path, max_mb=quota_mb, downsample_at=0.7, refuse_samples_at=0.99,
                                 downsample_interval_s=3600), store)
    ingestor.ingest([raw(messages.BIRTH, 0)])
    batch = [raw(messages.HEALTH, seq) for seq in range(1, 11)]
    batch += [raw(messages.ATTENDANCE, seq) for seq in range(11, 21)]
    result = ingestor.ingest(batch)
    assert result.samples_downsampled == 9
    assert result.new == 11
    kinds = [r["kind"] for r in store.pending(100)]
    assert kinds.count("attendance") == 10 and kinds.count("health") == 1


def test_a_full_store_refuses_samples_and_raises_one_alarm_until_pruned(tmp_path: Path, store: Store) -> None:
    quota_mb = 2 * store.usage_bytes() / 1024 / 1024
    ingestor = Ingestor(settings(tmp_path, max_mb=quota_mb, retention_days=7), store)
    ingestor.ingest([raw(messages.BIRTH, 0)])
    seq = 1
    while store.usage_bytes() < 0.9 * quota_mb * 1024 * 1024:
        result = ingestor.ingest([raw(messages.ATTENDANCE, s) for s in range(seq, seq + 20)])
        assert result.new == 20
        seq += 20
    for _ in range(3):
        result = ingestor.ingest([raw(messages.HEALTH, seq), raw(messages.ATTENDANCE, seq + 1)])
        assert result.samples_refused == 1 and result.new == 1
        seq += 2
    alarms = [r["body"] for r in store.pending(1000, "priority") if r["kind"] == "gateway_alarm"]
    assert [(a["code"], a["state"]) for a in alarms] == [("store_quota", "raise")]
    # Once the cloud has everything, pruning under pressure frees the space and the alarm clears.
    store.mark_synced([r["gseq"] for r in store.pending(100_000)], [])
    while ingestor.prune() > 0:
        pass
    assert ingestor.ingest([raw(messages.HEALTH, seq)]).new == 1
    alarms = [r["body"]["state"] for r in store.pending(1000, "priority") if r["kind"] == "gateway_alarm"]
    assert alarms == ["clear"]


def test_the_priority_lane_carries_alarms_ahead_of_the_backlog(tmp_path: Path, store: Store) -> None:
    ingestor = Ingestor(settings(tmp_path), store)
    ingestor.ingest([raw(messages.BIRTH, 0)] + [raw(messages.ATTENDANCE, s) for s in range(1, 101)])
    ingestor.ingest([raw(messages.ALARM, 101)])
    assert [r["kind"] for r in store.pending(10, "priority")] == ["alarm"]
    bulk = store.pending(1000, "bulk")
    assert len(bulk) == 101 and "alarm" not in {r["kind"] for r in bulk}


def test_synced_records_are_pruned_after_their_retention(tmp_path: Path, store: Store) -> None:
    ingestor = Ingestor(settings(tmp_path, retention_days=1), store)
    ingestor.ingest([raw(messages.BIRTH, 0), raw(messages.ATTENDANCE, 1), raw(messages.ATTENDANCE, 2)])
    first, *_ = store.pending(10)
    store.mark_synced([first["gseq"]], [], now=1000.0)
    assert ingestor.prune(now=1000.0 + 3600) == 0
    assert ingestor.prune(now=1000.0 + 86400 + 1) == 1
    assert len(store.pending(10)) == 2


@pytest.fixture
def worker(tmp_path: Path):
    worker = StoreWorker(settings(tmp_path))
    worker.start()
    yield worker
    worker.close()


def test_the_worker_process_answers_and_reports_failures(worker: StoreWorker) -> None:
    result = worker.call(Op.INGEST, [raw(messages.BIRTH, 0), (topics.up(SCHOOL, DEV, "health"), b"{")])
    assert result.new == 1 and result.rejected == {messages.BAD_JSON: 1}
    assert worker.call(Op.BACKLOG)[0] == 1
    with pytest.raises(StoreWorkerError, match="TypeError"):
        worker.call(Op.DESIRED_CONFIG)
    # A worker that dies is replaced on the next call, and the store is still there.
    worker._process.kill()
    worker._process.join()
    assert worker.call(Op.BACKLOG)[0] == 1
    assert worker.restarts == 1
    assert json.loads(json.dumps(worker.call(Op.DEVICES)))[0]["id"] == DEV


def test_commits_sent_ahead_of_a_failed_one_wait_for_it(worker: StoreWorker) -> None:
    """The gateway sends the next batch before the last one's answer; after a failed commit the worker
    refuses the ones sent after it until told to resume, so batches are committed in their order."""
    good = prepare(SCHOOL, SECRET, [raw(messages.BIRTH, 0), raw(messages.ATTENDANCE, 1)])
    broken = prepare(SCHOOL, SECRET, [raw(messages.ATTENDANCE, 2)])
    # A request the store fails as a whole (not a record's content, which would be quarantined alone),
    # as it would on a full disk.
    broken.accepted[0] = broken.accepted[0]._replace(kind=messages.BIRTH, body=None)
    first, second = worker.submit(Op.COMMIT, broken), worker.submit(Op.COMMIT, good)
    with pytest.raises(StoreWorkerError, match="AttributeError"):
        first.result(30)
    with pytest.raises(StoreWorkerError, match="earlier commit failed"):
        second.result(30)
    # Other requests are answered meanwhile; nothing was committed.
    assert worker.call(Op.BACKLOG)[0] == 0
    worker.call(Op.RESUME)
    assert worker.call(Op.COMMIT, good).new == 2
    answers = [worker.submit(Op.COMMIT, prepare(SCHOOL, SECRET, [raw(messages.ATTENDANCE, seq)]))
               for seq in range(3, 13)]
    assert [answer.result(30).new for answer in answers] == [1] * 10
    assert [record["seq"] for record in worker.call(Op.PENDING, 100)] == [0, 1, *range(3, 13)]


def test_requests_waiting_on_a_worker_that_dies_fail_and_the_next_one_restarts_it(worker: StoreWorker) -> None:
    worker.call(Op.COMMIT, prepare(SCHOOL, SECRET, [raw(messages.BIRTH, 0)]))
    # Stopped, the worker cannot answer what is sent to it before it is killed.
    os.kill(worker._process.pid, signal.SIGSTOP)
    tap = prepare(SCHOOL, SECRET, [raw(messages.ATTENDANCE, 1)])
    waiting = [worker.submit(Op.BACKLOG), worker.submit(Op.COMMIT, tap)]
    worker._process.kill()
    worker._process.join()
    for answer in waiting:
        with pytest.raises(StoreWorkerError, match="died"):
            answer.result(30)
    assert worker.call(Op.BACKLOG)[0] == 1
    assert worker.restarts == 1


def test_an_answer_nobody_waits_for_any_more_does_not_stop_the_answers_after_it(worker: StoreWorker) -> None:
    os.kill(worker._process.pid, signal.SIGSTOP)
    abandoned = worker.submit(Op.BACKLOG)
    wanted = worker.submit(Op.COMMIT, prepare(SCHOOL, SECRET, [raw(messages.BIRTH, 0)]))
    assert abandoned.cancel()
    os.kill(worker._process.pid, signal.SIGCONT)
    assert wanted.result(30).new == 1
    assert worker.call(Op.BACKLOG)[0] == 1


def test_a_chained_commit_never_reaches_a_worker_that_replaced_the_one_before(worker: StoreWorker) -> None:
    os.kill(worker._process.pid, signal.SIGSTOP)
    first = worker.submit(Op.COMMIT, prepare(SCHOOL, SECRET, [raw(messages.BIRTH, 0)]))
    worker._process.kill()
    worker._process.join()
    # Something else restarts the worker before the next commit is sent.
    assert worker.call(Op.BACKLOG)[0] == 0
    second = worker.submit(Op.COMMIT, prepare(SCHOOL, SECRET, [raw(messages.ATTENDANCE, 1)]), chained=True)
    for answer in (first, second):
        with pytest.raises(StoreWorkerError):
            answer.result(30)
    assert worker.call(Op.BACKLOG)[0] == 0


def poison_birth(depth: int) -> bytes:
    """A birth that carries an extra field nested `depth` deep: valid JSON, refused by the protocol."""
    topic, payload = raw(messages.BIRTH, 0)
    return payload.replace(b'"role"', b'"x":' + b"[" * depth + b"]" * depth + b',"role"')


def test_poison_messages_are_rejected_alone_and_the_batch_goes_on() -> None:
    status = topics.up(SCHOOL, DEV, topics.STATUS)
    attendance = topics.up(SCHOOL, DEV, topics.ATTENDANCE)
    huge_seq = raw(messages.ATTENDANCE, 5)[1].replace(b'"seq":5', b'"seq":%d' % 2**63)
    huge_health_s = raw(messages.BIRTH, 0)[1].replace(b'"health_s":60', b'"health_s":%d' % 2**63)
    prepared = prepare(SCHOOL, SECRET, [
        raw(messages.ATTENDANCE, 1), (status, poison_birth(300)), (status, b"[" * 100_000),
        (attendance, huge_seq), (status, huge_health_s), raw(messages.ATTENDANCE, 2),
    ])
    assert [acc.seq for acc in prepared.accepted] == [1, 2]
    assert [bad.reason for bad in prepared.rejected] == [
        messages.TOO_DEEP, messages.TOO_LARGE, messages.OUT_OF_RANGE, messages.OUT_OF_RANGE]
    # The quarantine keeps at most 4 KiB of what was sent.
    assert len(prepared.rejected[1].payload) == 4096


def test_a_batch_with_records_the_store_refuses_commits_the_rest(worker: StoreWorker) -> None:
    prepared = prepare(SCHOOL, SECRET, [raw(messages.BIRTH, 0)]
                       + [raw(messages.ATTENDANCE, seq) for seq in range(1, 2000)])
    assert len(prepared.accepted) == 2000
    # Records the protocol would have refused, as a gateway with other bounds might let through: SQLite
    # cannot hold the first two seqs, the third makes its insert fail on a type it cannot bind.
    for i, bad in ((7, {"seq": 2**63}), (1000, {"seq": 2**64}), (1999, {"ts": {"not": "a time"}})):
        prepared.accepted[i] = prepared.accepted[i]._replace(**bad)
    result = worker.call(Op.COMMIT, prepared)
    assert result.new == 1997
    assert result.rejected == {"store_rejected": 3}
    assert result.unstored == {(DEV, BOOT, 2**63), (DEV, BOOT, 2**64), (DEV, BOOT, 1999)}
    acked = prepared.event_keys(result.unstored)[DEV]
    assert len(acked) == 1996 and [BOOT, 2**63] not in acked
    pending = worker.call(Op.PENDING, 3000)
    assert len(pending) == 1997
    assert {7, 1000, 1999}.isdisjoint(r["seq"] for r in pending)
    quarantine = worker.call(Op.QUARANTINE, 10)
    assert [q["reason"] for q in quarantine] == ["store_rejected"] * 3
    assert json.loads(quarantine[-1]["payload"])["seq"] == 2**63
    assert all(q["topic"] == topics.up(SCHOOL, DEV, topics.ATTENDANCE) for q in quarantine)
    # The store's memory matches its database after the undone records: the next batch goes in as usual.
    assert worker.call(Op.COMMIT, prepare(SCHOOL, SECRET, [raw(messages.ATTENDANCE, 2000)])).new == 1
