"""The gateway's durable store: SQLite in WAL mode, the school's memory while the cloud is away.

Every accepted device message becomes a record with a gateway sequence number (`gseq`, the row id).
Records from devices are unique on their key (device, boot, seq), so a replay or a broker redelivery
adds nothing. A record stays pending until the cloud confirms its gseq.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import orjson

from gateway.records import CONTENT_ERRORS, Accepted, CommitResult, Rejected, quarantined, unwritable
from gateway.store_schema import SCHEMA
from protocol import messages

PENDING, CONFIRMED, REJECTED = 0, 1, 2
QUARANTINE_KEEP = 1000
INSERT_CHUNK = 500
PRUNE_CHUNK = 5000
# Alarms and command acks reach the cloud ahead of any backlog of samples: the priority lane.
PRIORITY_KINDS = ("alarm", "ack", "gateway_alarm", "command_status")
GATEWAY_ALARM = "gateway_alarm"


class Store:
    """The gateway's SQLite store; use from one thread at a time."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: an acknowledged event must survive a power cut, not only a process kill; commits are
        # batched, so the fsyncs stay few.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        # The store is the only writer, so an in-memory copy of each device's boot and presence saves a
        # query per message on the hot path.
        self._presence_added = 0
        self._devices: dict[str, list[Any]] = {}
        # Set when memory may no longer match the database; the store worker then exits and is replaced.
        self.needs_reopen = False
        self._reload()

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def commit(self, accepted: Sequence[Accepted], rejected: Iterable[Rejected] = (),
               now: float | None = None) -> CommitResult:
        """Store a batch in one transaction: records, presence, and the quarantine of bad messages."""
        now = time.time() if now is None else now
        result = CommitResult()
        seen: dict[str, float] = {}
        health: dict[str, str] = {}
        inserted = [False] * len(accepted)
        run: list[int] = []
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            for i, acc in enumerate(accepted):
                state = self._devices.get(acc.device)
                if (state is not None and state[1] == "online" and acc.seq is not None
                        and acc.kind not in messages.STATE_KINDS):
                    run.append(i)
                    continue
                # Anything that may change presence goes one by one, in order after what came before it.
                self._insert_run(cur, accepted, run, inserted, now, seen, health)
                run = []
                inserted[i] = self._apply(cur, acc, now, result, seen, health)
            self._insert_run(cur, accepted, run, inserted, now, seen, health)
            self._finish(cur, now, seen, health, list(rejected))
        except BaseException as exc:
            self._fail(exc)
        result.inserted = inserted
        self._pending += sum(inserted) + self._presence_added
        self._presence_added = 0
        return result

    def commit_each(self, accepted: Sequence[Accepted], rejected: Iterable[Rejected] = (),
                    now: float | None = None, school: str = "") -> CommitResult:
        """As commit, one record at a time: a record refused for its content is quarantined, the rest kept.

        For a batch whose commit failed with one of CONTENT_ERRORS. Each record goes in under a savepoint,
        so a bad one is undone alone, in memory as in the database; the batch is still one transaction.
        """
        now = time.time() if now is None else now
        result = CommitResult()
        seen: dict[str, float] = {}
        health: dict[str, str] = {}
        inserted = [False] * len(accepted)
        bad = list(rejected)
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            for i, acc in enumerate(accepted):
                state = self._devices.get(acc.device)
                before = (None if state is None else list(state), len(result.presence_changes),
                          self._presence_added, seen.get(acc.device), health.get(acc.device))
                cur.execute("SAVEPOINT record")
                try:
                    inserted[i] = self._apply(cur, acc, now, result, seen, health)
                except CONTENT_ERRORS as exc:
                    cur.execute("ROLLBACK TO record")
                    self._forget(acc.device, before, result, seen, health)
                    result.refused.append(i)
                    bad.append(quarantined(acc, school, f"{type(exc).__name__}: {exc}"))
                cur.execute("RELEASE record")
            self._finish(cur, now, seen, health, bad)
        except BaseException as exc:
            self._fail(exc)
        result.inserted = inserted
        self._pending += sum(inserted) + self._presence_added
        self._presence_added = 0
        return result

    def _finish(self, cur: sqlite3.Cursor, now: float, seen: dict[str, float], health: dict[str, str],
                bad: list[Rejected]) -> None:
        """Write a batch's device marks and quarantined messages, and commit its transaction."""
        cur.executemany("UPDATE device SET last_seen=? WHERE id=?", [(t, d) for d, t in seen.items()])
        cur.executemany("UPDATE device SET last_health=? WHERE id=?", [(h, d) for d, h in health.items()])
        if bad:
            cur.executemany(
                "INSERT INTO quarantine(received_at, topic, reason, detail, payload) VALUES (?,?,?,?,?)",
                [(now, r.topic, r.reason, r.detail, r.payload) for r in bad],
            )
            cur.execute("DELETE FROM quarantine WHERE id <= (SELECT MAX(id) FROM quarantine) - ?", (QUARANTINE_KEEP,))
        cur.execute("COMMIT")

    def _fail(self, exc: BaseException) -> NoReturn:
        """Undo a failed batch (memory too) and raise why: StoreUnwritable when the store itself failed."""
        self._abandon(reload=True)
        failure = unwritable(exc)
        if failure is not None and failure is not exc:
            raise failure from exc
        raise exc

    def _forget(self, device: str, before: tuple[Any, ...], result: CommitResult, seen: dict[str, float],
                health: dict[str, str]) -> None:
        """Put memory back as it was before a record that was rolled back to its savepoint."""
        state, changes, presence_added, last_seen, last_health = before
        if state is None:
            self._devices.pop(device, None)
        else:
            self._devices[device] = state
        del result.presence_changes[changes:]
        self._presence_added = presence_added
        for memo, value in ((seen, last_seen), (health, last_health)):
            if value is None:
                memo.pop(device, None)
            else:
                memo[device] = value

    def _abandon(self, reload: bool) -> None:
        """Undo a failed transaction and, if asked, forget what memory holds of it."""
        # SQLite rolls back by itself on some errors (a full disk, an I/O error): a ROLLBACK then fails
        # with "no transaction is active" and would hide the error that matters. One that fails anyway
        # leaves the connection in doubt, as does a reload that cannot read: the worker then starts over.
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            if reload:
                self._reload()
        except sqlite3.Error:
            self.needs_reopen = True

    def _insert_run(self, cur: sqlite3.Cursor, accepted: Sequence[Accepted], run: list[int],
                    inserted: list[bool], now: float, seen: dict[str, float], health: dict[str, str]) -> None:
        """Insert messages of online devices with one statement; mark which were new."""
        for start in range(0, len(run), INSERT_CHUNK):
            chunk = run[start:start + INSERT_CHUNK]
            params: list[Any] = []
            keys = []
            for i in chunk:
                acc = accepted[i]
                key = (self._devices[acc.device][2], int(acc.boot, 16), acc.seq)
                keys.append(key)
                params += (acc.kind, acc.device, acc.boot, acc.seq, *key[:2], acc.ts,
                           acc.body_json, now)
            rows = cur.execute(
                "INSERT OR IGNORE INTO record(kind, device, boot, seq, device_no, boot_no, ts, body, "
                "received_at) VALUES "
                + ",".join(["(?,?,?,?,?,?,?,?,?)"] * len(chunk))
                + " RETURNING device_no, boot_no, seq",
                params,
            ).fetchall()
            new = set(rows)
            for i, key in zip(chunk, keys, strict=True):
                acc = accepted[i]
                if key in new:
                    # A key twice in one batch: only its first copy counts as new.
                    new.discard(key)
                    inserted[i] = True
                    seen[acc.device] = now
                    if acc.kind == messages.HEALTH:
                        health[acc.device] = acc.body_json

    def _reload(self) -> None:
        self._alarms: set[tuple[str, str]] = set(self._db.execute("SELECT device, code FROM alarm_state"))
        self._devices = {
            d: [b, p, n] for d, b, p, n in self._db.execute("SELECT id, boot, presence, no FROM device")
        }
        (pending,) = self._db.execute("SELECT COUNT(*) FROM record WHERE sync_state = 0").fetchone()
        self._pending = int(pending)
        self._presence_added = 0

    def _insert(self, cur: sqlite3.Cursor, acc: Accepted, now: float) -> bool:
        cur.execute(
            "INSERT OR IGNORE INTO record(kind, device, boot, seq, device_no, boot_no, ts, body, "
            "received_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (acc.kind, acc.device, acc.boot, acc.seq, self._devices[acc.device][2], int(acc.boot, 16),
             acc.ts, acc.body_json, now),
        )
        return cur.rowcount == 1

    def _apply(self, cur: sqlite3.Cursor, acc: Accepted, now: float, result: CommitResult,
               seen: dict[str, float], health: dict[str, str]) -> bool:
        state = self._devices.get(acc.device)
        if state is None:
            cur.execute("INSERT INTO device(id, presence_since) VALUES (?, ?)", (acc.device, now))
            state = self._devices[acc.device] = [None, "unknown", cur.lastrowid]
        boot, presence = state[0], state[1]
        if acc.kind == messages.WILL:
            # A will from an older boot, or one redelivered after we already marked the device offline,
            # says nothing new.
            if (boot is not None and acc.boot != boot) or presence == "offline":
                return False
            cur.execute(
                "UPDATE device SET presence='offline', presence_since=? WHERE id=?", (now, acc.device)
            )
            state[1] = "offline"
            result.presence_changes.append((acc.device, "offline"))
            return self._insert(cur, acc, now)
        if not self._insert(cur, acc, now):
            return False
        seen[acc.device] = now
        if acc.kind == messages.BIRTH:
            cur.execute(
                "UPDATE device SET role=?, boot=?, presence='online', presence_since=?, health_s=? "
                "WHERE id=?",
                (acc.body.get("role"), acc.boot, now, acc.body.get("health_s"), acc.device),
            )
            state[0], state[1] = acc.boot, "online"
            result.presence_changes.append((acc.device, "online"))
            return True
        if acc.kind == messages.HEALTH:
            health[acc.device] = acc.body_json
        if presence != "online" and boot == acc.boot:
            # A device we had given up on after missed health periods is heard again.
            self._presence_record(cur, acc.device, acc.boot, "online", "heard_again", now)
            result.presence_changes.append((acc.device, "online"))
        return True

    def _presence_record(self, cur: sqlite3.Cursor, device: str, boot: str | None, state: str,
                         reason: str, now: float) -> None:
        self._devices[device][1] = state
        self._presence_added += 1
        cur.execute(
            "UPDATE device SET presence=?, presence_since=? WHERE id=?", (state, now, device)
        )
        cur.execute(
            "INSERT INTO record(kind, device, boot, seq, device_no, ts, body, received_at) "
            "VALUES ('presence', ?, ?, NULL, ?, ?, ?, ?)",
            (device, boot, self._devices[device][2], now,
             json.dumps({"state": state, "reason": reason}), now),
        )

    def mark_missing(self, missed_periods: int, now: float | None = None) -> list[str]:
        """Mark offline every online device silent for `missed_periods` health periods; return them."""
        now = time.time() if now is None else now
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            rows = cur.execute(
                "SELECT id, boot FROM device WHERE presence='online' AND health_s IS NOT NULL "
                "AND last_seen < ? - health_s * ?",
                (now, missed_periods),
            ).fetchall()
            for device, boot in rows:
                self._presence_record(cur, device, boot, "offline", "missed_health", now)
            cur.execute("COMMIT")
            self._pending += self._presence_added
            self._presence_added = 0
        except BaseException as exc:
            self._abandon(reload=True)
            failure = unwritable(exc)
            if failure is not None and failure is not exc:
                raise failure from exc
            raise
        return [r[0] for r in rows]

    def pending(self, limit: int, lane: str = "all") -> list[dict[str, Any]]:
        """The oldest records not yet confirmed by the cloud, as sync records.

        `lane` is "priority" (alarms and acks only), "bulk" (everything else) or "all".
        """
        where = {
            "all": "",
            "priority": "AND kind IN ('alarm', 'ack', 'gateway_alarm', 'command_status')",
            "bulk": "AND kind NOT IN ('alarm', 'ack', 'gateway_alarm', 'command_status')",
        }[lane]
        rows = self._db.execute(
            f"SELECT gseq, kind, device, boot, seq, ts, body FROM record WHERE sync_state = 0 {where} "
            "ORDER BY gseq LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            {"gseq": g, "kind": k, "device": d, "boot": b, "seq": s, "ts": t, "body": orjson.loads(body)}
            for g, k, d, b, s, t, body in rows
        ]

    def mark_synced(self, confirmed: Iterable[int], rejected: Iterable[tuple[int, str]],
                    now: float | None = None) -> None:
        """Record the cloud's answer: confirmed gseqs and rejected (gseq, reason) pairs."""
        now = time.time() if now is None else now
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.executemany(
                "UPDATE record SET sync_state=1, synced_at=? WHERE gseq=? AND sync_state=0",
                [(now, g) for g in confirmed],
            )
            done = cur.rowcount
            cur.executemany(
                "UPDATE record SET sync_state=2, synced_at=?, reject_reason=? WHERE gseq=? AND sync_state=0",
                [(now, reason, g) for g, reason in rejected],
            )
            done += cur.rowcount
            cur.execute("COMMIT")
            self._pending -= done
        except BaseException as exc:
            self._abandon(reload=False)
            failure = unwritable(exc)
            if failure is not None and failure is not exc:
                raise failure from exc
            raise

    def gateway_alarm(self, code: str, state: str, detail: str, now: float | None = None,
                      device: str | None = None) -> None:
        """Record an alarm the gateway raised or cleared (about itself, or a device), for the cloud."""
        now = time.time() if now is None else now
        body = json.dumps({"code": code, "state": state, "detail": detail})
        with self._db:
            self._db.execute(
                "INSERT INTO record(kind, device, ts, body, received_at) VALUES (?, ?, ?, ?, ?)",
                (GATEWAY_ALARM, device, now, body, now),
            )
        self._pending += 1

    def set_alarm(self, device: str, code: str, active: bool, detail: str, now: float | None = None) -> bool:
        """Raise or clear an edge alarm on a device; True if that changed anything (each is sent once)."""
        if ((device, code) in self._alarms) == active:
            # Most samples change nothing: answered from memory, without touching the database.
            return False
        now = time.time() if now is None else now
        with self._db:
            if active:
                changed = self._db.execute(
                    "INSERT OR IGNORE INTO alarm_state(device, code, raised_at, detail) VALUES (?,?,?,?)",
                    (device, code, now, detail),
                ).rowcount == 1
            else:
                changed = self._db.execute(
                    "DELETE FROM alarm_state WHERE device=? AND code=?", (device, code)
                ).rowcount == 1
            if changed:
                if active:
                    self._alarms.add((device, code))
                else:
                    self._alarms.discard((device, code))
                self._db.execute(
                    "INSERT INTO record(kind, device, ts, body, received_at) VALUES (?, ?, ?, ?, ?)",
                    (GATEWAY_ALARM, device, now,
                     json.dumps({"code": code, "state": "raise" if active else "clear", "detail": detail}), now),
                )
                self._pending += 1
        return changed

    def active_alarms(self, device: str | None = None, prefix: str = "") -> list[str]:
        """Codes of the active edge alarms (of one device), optionally only those starting `prefix`."""
        rows = sorted((d, c) for d, c in self._alarms if (device is None or d == device) and c.startswith(prefix))
        return [code if device else f"{dev}/{code}" for dev, code in rows]

    def queue_commands(self, commands: list[dict[str, Any]], now: float | None = None) -> list[str]:
        """Keep commands pulled from the cloud until their device is there; return the new cids."""
        now = time.time() if now is None else now
        new = []
        with self._db:
            for c in commands:
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO command(cid, device, name, args, exp, received_at) VALUES (?,?,?,?,?,?)",
                    (c["cid"], c["device"], c["name"], json.dumps(c.get("args") or {}), float(c["exp"]), now),
                )
                if cur.rowcount == 1:
                    new.append(c["cid"])
        return new

    def open_commands(self, device: str | None = None, unpublished_only: bool = False,
                      now: float | None = None) -> list[dict[str, Any]]:
        """Commands not yet answered by their device and not expired (of one device, or all)."""
        now = time.time() if now is None else now
        states = "('queued')" if unpublished_only else "('queued', 'published')"
        rows = self._db.execute(
            f"SELECT cid, device, name, args, exp FROM command WHERE state IN {states} "
            "AND exp > ? AND (? IS NULL OR device = ?) ORDER BY received_at",
            (now, device, device),
        ).fetchall()
        return [{"cid": c, "device": d, "name": n, "args": json.loads(a), "exp": e} for c, d, n, a, e in rows]

    def command_published(self, cid: str, now: float | None = None) -> None:
        """The command went to the device's broker: tell the cloud it is delivered (once)."""
        now = time.time() if now is None else now
        with self._db:
            cur = self._db.execute(
                "UPDATE command SET state='published', published_at=? WHERE cid=? AND state='queued'", (now, cid)
            )
            if cur.rowcount == 1:
                device = self._db.execute("SELECT device FROM command WHERE cid=?", (cid,)).fetchone()[0]
                self._db.execute(
                    "INSERT INTO record(kind, device, ts, body, received_at) VALUES ('command_status', ?, ?, ?, ?)",
                    (device, now, json.dumps({"cid": cid, "state": "delivered"}), now),
                )
                self._pending += 1

    def commands_answered(self, cids: list[str]) -> None:
        """The devices acknowledged these commands: stop offering them."""
        with self._db:
            self._db.executemany("UPDATE command SET state='answered' WHERE cid=?", [(c,) for c in cids])

    def set_desired_configs(self, configs: list[dict[str, Any]], cursor: int | None) -> list[dict[str, Any]]:
        """Keep each device's latest desired config; return the ones that are newer than what was kept."""
        changed = []
        with self._db:
            for c in configs:
                cur = self._db.execute(
                    "INSERT INTO desired_config(device, version, body) VALUES (?,?,?) "
                    "ON CONFLICT(device) DO UPDATE SET version=excluded.version, body=excluded.body "
                    "WHERE excluded.version > desired_config.version",
                    (c["device"], int(c["version"]), json.dumps(c["values"])),
                )
                if cur.rowcount == 1:
                    changed.append(c)
            if cursor is not None:
                self._db.execute(
                    "INSERT INTO meta(key, value) VALUES ('config_cursor', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (str(cursor),),
                )
        return changed

    def desired_config(self, device: str) -> dict[str, Any] | None:
        """The latest desired config of a device, if the cloud has set one."""
        row = self._db.execute("SELECT version, body FROM desired_config WHERE device=?", (device,)).fetchone()
        return None if row is None else {"device": device, "version": row[0], "values": json.loads(row[1])}

    def config_cursor(self) -> int:
        """How far the gateway has read the cloud's config changes."""
        row = self._db.execute("SELECT value FROM meta WHERE key='config_cursor'").fetchone()
        return int(row[0]) if row else 0

    def probe_write(self, now: float | None = None) -> None:
        """Write one small row and make it durable: raises StoreUnwritable while the store cannot write."""
        now = time.time() if now is None else now
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO meta(key, value) VALUES ('write_probe', ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (repr(now),),
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._abandon(reload=False)
            failure = unwritable(exc)
            if failure is not None:
                raise failure from exc
            raise

    def usage_bytes(self) -> int:
        """Bytes of the database in use (free pages not counted)."""
        (pages,) = self._db.execute("PRAGMA page_count").fetchone()
        (free,) = self._db.execute("PRAGMA freelist_count").fetchone()
        (size,) = self._db.execute("PRAGMA page_size").fetchone()
        return int((pages - free) * size)

    def prune(self, older_than: float, limit: int = PRUNE_CHUNK) -> int:
        """Delete up to `limit` records the cloud has answered for before `older_than` (epoch s)."""
        with self._db:
            cur = self._db.execute(
                "DELETE FROM record WHERE gseq IN (SELECT gseq FROM record WHERE sync_state != 0 "
                "AND synced_at < ? ORDER BY synced_at LIMIT ?)",
                (older_than, limit),
            )
        return cur.rowcount

    def backlog(self) -> tuple[int, float]:
        """(number of records waiting for the cloud, age in seconds of the oldest)."""
        row = self._db.execute(
            "SELECT received_at FROM record WHERE sync_state = 0 ORDER BY gseq LIMIT 1"
        ).fetchone()
        return self._pending, (time.time() - row[0]) if row is not None else 0.0

    def devices(self) -> list[dict[str, Any]]:
        """Every device the gateway has heard of, with its presence."""
        rows = self._db.execute(
            "SELECT id, role, boot, presence, presence_since, last_seen FROM device ORDER BY id"
        ).fetchall()
        keys = ("id", "role", "boot", "presence", "presence_since", "last_seen")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def quarantine(self, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent rejected messages, newest first."""
        rows = self._db.execute(
            "SELECT received_at, topic, reason, detail, payload FROM quarantine ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        keys = ("received_at", "topic", "reason", "detail", "payload")
        return [dict(zip(keys, r, strict=True)) for r in rows]
