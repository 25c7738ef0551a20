"""Ingest: raw broker messages validated and pseudonymised (`prepare`), then committed within the
store's quota (`Ingestor`, which runs in the store worker process, see store_worker.py).
"""

from __future__ import annotations

import functools
import gc
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.config import GatewaySettings
from gateway.privacy import pseudonymizer
from gateway.records import CONTENT_ERRORS, STORE_REJECTED, Accepted, Rejected
from gateway.rules import RuleEngine
from gateway.store import Store
from protocol import limits, messages, topics

log = logging.getLogger(__name__)

REJECTIONS_LOGGED_PER_BATCH = 5
# The reason of a message that passed the protocol but could not be made into a record.
BAD_RECORD = "bad_record"
# Kinds whose fields the store and the edge rules read; the others are only stored as JSON.
_BODY_KINDS = frozenset((messages.BIRTH, messages.ACK, messages.TELEMETRY))


# Young-object collections at most every this many allocations: a batch allocates tens of thousands of
# short-lived objects, none of them in reference cycles.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Collect young objects less often, and leave what start-up made out of the collector's passes."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


@functools.lru_cache(maxsize=65536)
def _parse_topic(topic: str) -> tuple[str, str, str, str]:
    # A school's devices publish on a few hundred topics all day; parse each once.
    return topics.parse(topic)  # type: ignore[no-any-return]


@dataclass
class Prepared:
    """A batch of raw broker messages, validated and pseudonymised, ready for the store."""

    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    empty: int = 0

    def __reduce__(self) -> tuple[Any, ...]:
        # Plain tuples cross the pipe to the store worker several times faster than named ones, and
        # only the kinds whose fields the store looks into keep their body beside its JSON.
        rows = [(a.kind, a.device, a.boot, a.seq, a.ts, a.body if a.kind in _BODY_KINDS else None, a.body_json)
                for a in self.accepted]
        return _restore_prepared, (rows, self.rejected, self.empty)

    def event_keys(self, unstored: Collection[tuple[str, str, int]] = ()) -> dict[str, list[list[Any]]]:
        """The keys of the batch's events by device, for the devices' end-to-end acks.

        Replays are acknowledged again: the device must be told to let go of them too. Events the store
        refused (`unstored`, their keys) are not: nothing of theirs was committed.
        """
        keys: dict[str, list[list[Any]]] = {}
        for acc in self.accepted:
            if acc.kind in messages.EVENT_KINDS and (not unstored or (acc.device, acc.boot, acc.seq) not in unstored):
                keys.setdefault(acc.device, []).append([acc.boot, acc.seq])
        return keys


def _restore_prepared(rows: list[tuple[Any, ...]], rejected: list[Rejected], empty: int) -> Prepared:
    return Prepared([Accepted._make(row) for row in rows], rejected, empty)


def prepare(school: str, secret: str, raw: list[tuple[str, bytes]]) -> Prepared:
    """Validate a batch of delivered messages and make them storable; bad ones become Rejected.

    This is pure computation: the gateway runs it in the broker link's process, so that the store
    worker's core is left for the store.
    """
    out = Prepared()
    accepted, rejected = out.accepted, out.rejected
    loads, parse, decode, build = orjson.loads, _parse_topic, messages.decode_uplink, Accepted.from_decoded
    attendance = messages.ATTENDANCE
    pseudonym = pseudonymizer(secret)
    # A device's ts may be at most a day ahead of this clock, if this clock is set at all.
    now: float | None = time.time()
    if now is not None and now < limits.MIN_CLOCK_OK_TS:
        now = None
    for topic, payload in raw:
        if not payload:
            # An empty retained message is how an admin clears a topic; it carries no data.
            out.empty += 1
            continue
        # Every message is contained on its own: whatever fails in it rejects it alone, never the batch.
        try:
            msg_school, _device, msg = decode(topic, payload, loads, parse, now)
            if msg_school != school:
                raise messages.ProtocolError(messages.BAD_TOPIC, f"message for school {msg_school}")
            if msg["kind"] == attendance:
                msg["card"] = pseudonym(msg["card"])
            acc = build(msg)
        except messages.ProtocolError as exc:
            rejected.append(Rejected.of(topic, exc.reason, exc.detail, payload))
            continue
        except Exception as exc:
            rejected.append(Rejected.of(str(topic), BAD_RECORD, f"{type(exc).__name__}: {exc}", payload))
            continue
        accepted.append(acc)
    return out


@dataclass
class IngestResult:
    """What one batch did, for the gateway's acks, eacks and metrics."""

    new: int = 0
    duplicate: int = 0
    empty: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    rejected_examples: list[tuple[str, str]] = field(default_factory=list)
    event_keys: dict[str, list[list[Any]]] = field(default_factory=dict)
    presence_changes: list[tuple[str, str]] = field(default_factory=list)
    births: list[tuple[str, int | None]] = field(default_factory=list)
    alarms_changed: int = 0
    samples_downsampled: int = 0
    samples_refused: int = 0
    store_usage: float = 0.0
    # Keys of the events the store refused for their content: quarantined, never end-to-end acked.
    unstored: set[tuple[str, str, int]] = field(default_factory=set)


class Ingestor:
    """Turns raw broker messages into committed records, keeping the store inside its quota.

    As the store fills, samples give way so that events never have to: above `downsample_at` of the
    quota each device keeps one health and one telemetry sample per `downsample_interval_s`; above
    `refuse_samples_at` samples are refused and the gateway raises a `store_quota` alarm, cleared once
    usage is back under `downsample_at`. Events are never refused here; only a truly full disk stops
    them, and then nothing is acknowledged and the devices keep them.
    """

    def __init__(self, settings: GatewaySettings, store: Store) -> None:
        self._school = settings.school
        self._secret = settings.school_secret
        self._quota = settings.store
        self._quota_bytes = settings.store.max_mb * 1024 * 1024
        self._last_kept: dict[tuple[str, str], float] = {}
        self._quota_alarm = False
        self.store = store
        self.rules = RuleEngine(settings, store)

    def ingest(self, raw: list[tuple[str, bytes]], now: float | None = None) -> IngestResult:
        """Validate and commit a batch in one transaction; bad messages go to the quarantine."""
        prepared = prepare(self._school, self._secret, raw)
        result = self.commit(prepared, now)
        result.event_keys = prepared.event_keys(result.unstored)
        return result

    def commit(self, prepared: Prepared, now: float | None = None) -> IngestResult:
        """Commit a prepared batch in one transaction; its rejected messages go to the quarantine.

        The result's `event_keys` is left empty: the caller has the prepared batch to take them from.
        """
        result = IngestResult(empty=prepared.empty)
        accepted = prepared.accepted
        for bad in prepared.rejected:
            result.rejected[bad.reason] = result.rejected.get(bad.reason, 0) + 1
            if len(result.rejected_examples) < REJECTIONS_LOGGED_PER_BATCH:
                result.rejected_examples.append((bad.topic, f"{bad.reason}: {bad.detail}"))
        usage = self.store.usage_bytes() / self._quota_bytes
        result.store_usage = usage
        self._check_quota_alarm(usage, now)
        if usage >= self._quota.downsample_at:
            accepted = self._shed_samples(accepted, usage, result, now)
        try:
            commit = self.store.commit(accepted, prepared.rejected, now)
        except CONTENT_ERRORS as exc:
            # Some record's content is what failed: find it (them) record by record, keep the rest.
            log.warning("a batch of %d failed to commit (%s: %s); committing it record by record",
                        len(accepted), type(exc).__name__, exc)
            commit = self.store.commit_each(accepted, prepared.rejected, now, self._school)
        if commit.refused:
            refused = set(commit.refused)
            result.rejected[STORE_REJECTED] = len(refused)
            for i in commit.refused:
                acc = accepted[i]
                result.unstored.add((acc.device, acc.boot, acc.seq))
                if len(result.rejected_examples) < REJECTIONS_LOGGED_PER_BATCH:
                    result.rejected_examples.append((f"{acc.device}/{acc.kind}", f"{STORE_REJECTED}: seq {acc.seq}"))
            accepted = [acc for i, acc in enumerate(accepted) if i not in refused]
            commit.inserted = [new for i, new in enumerate(commit.inserted) if i not in refused]
        result.new = sum(commit.inserted)
        result.duplicate = len(commit.inserted) - result.new
        result.presence_changes = commit.presence_changes
        now = time.time() if now is None else now
        answered = [acc.body["cid"] for acc in accepted if acc.kind == messages.ACK]
        if answered:
            self.store.commands_answered(answered)
        birth, telemetry = messages.BIRTH, messages.TELEMETRY
        for acc, new in zip(accepted, commit.inserted, strict=True):
            if new and acc.kind == birth:
                result.births.append((acc.device, acc.body.get("config_version")))
            elif new and acc.kind == telemetry:
                result.alarms_changed += self.rules.on_telemetry(acc.device, acc.body, now)
        return result

    def _shed_samples(self, accepted: list[Accepted], usage: float, result: IngestResult,
                      now: float | None) -> list[Accepted]:
        now = time.time() if now is None else now
        kept = []
        for acc in accepted:
            if acc.kind not in messages.SAMPLE_KINDS:
                kept.append(acc)
            elif usage >= self._quota.refuse_samples_at:
                result.samples_refused += 1
            else:
                slot = (acc.device, acc.kind)
                if now - self._last_kept.get(slot, 0.0) >= self._quota.downsample_interval_s:
                    self._last_kept[slot] = now
                    kept.append(acc)
                else:
                    result.samples_downsampled += 1
        return kept

    def _check_quota_alarm(self, usage: float, now: float | None) -> None:
        if not self._quota_alarm and usage >= self._quota.refuse_samples_at:
            self._quota_alarm = True
            self.store.gateway_alarm("store_quota", "raise",
                                     f"store at {usage:.0%} of its quota: samples are refused", now)
        elif self._quota_alarm and usage < self._quota.downsample_at:
            self._quota_alarm = False
            self.store.gateway_alarm("store_quota", "clear", f"store back at {usage:.0%} of its quota", now)

    def evaluate_rules(self, now: float | None = None) -> int:
        """Run the time-driven edge rules; return how many alarms were raised or cleared."""
        return self.rules.evaluate(time.time() if now is None else now)

    def prune(self, now: float | None = None) -> int:
        """Delete synced records past their retention; under quota pressure, any synced records."""
        now = time.time() if now is None else now
        usage = self.store.usage_bytes() / self._quota_bytes
        horizon = now if usage >= self._quota.downsample_at else now - self._quota.retention_days * 86400
        return self.store.prune(horizon)
