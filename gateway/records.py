"""What the store takes in and gives back: accepted and rejected messages, a commit's result, and which
errors mean the store cannot write at all (as opposed to a record it cannot hold)."""

from __future__ import annotations

import errno
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from gateway.errors import StoreUnwritable
from protocol import messages

# Bytes of a message kept in the quarantine: enough to see what a device sent, never a whole flood.
QUARANTINE_PAYLOAD_BYTES = 4096
QUARANTINE_TOPIC_CHARS = 256
# The reason of a record that passed the protocol but that the store refused for its content.
STORE_REJECTED = "store_rejected"
# Errors that a record's content causes (a value a column cannot hold, a constraint, a type SQLite cannot
# bind): that record is quarantined and the rest of its batch committed. Any other error is the store's
# own (unwritable() tells which of those is a full disk or an I/O error) and the batch is retried whole.
CONTENT_ERRORS = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError, sqlite3.ProgrammingError,
                  OverflowError, ValueError, TypeError)

# SQLite's primary result codes that say the database cannot be written at all, whatever is being written
# (a damaged file too: no record is at fault, and it takes a person to mend).
_UNWRITABLE_CODES = frozenset((sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY,
                               sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB))
_UNWRITABLE_ERRNOS = frozenset((errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES))


def unwritable(exc: BaseException) -> StoreUnwritable | None:
    """The StoreUnwritable that an error amounts to, or None when it is about what was being written."""
    if isinstance(exc, StoreUnwritable):
        return exc
    if isinstance(exc, sqlite3.Error) and (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _UNWRITABLE_CODES:
        return StoreUnwritable(f"the store cannot write: {exc}")
    if isinstance(exc, OSError) and exc.errno in _UNWRITABLE_ERRNOS:
        return StoreUnwritable(f"the store cannot write: {exc}")
    return None


class Accepted(NamedTuple):
    """A validated device message, ready to be committed; `body_json` is `body` as stored.

    In the store worker `body` is None for kinds whose fields the store never reads (see ingest.py).
    """

    kind: str
    device: str
    boot: str
    seq: int | None
    ts: float
    body: dict[str, Any] | None
    body_json: str

    @classmethod
    def from_message(cls, msg: dict[str, Any]) -> Accepted:
        """Split a validated protocol message into its key and its own fields."""
        return cls.from_decoded(dict(msg))

    @classmethod
    def from_decoded(cls, msg: dict[str, Any]) -> Accepted:
        """As from_message, taking `msg` over (its envelope fields are removed from it)."""
        kind = msg.pop("kind")
        del msg["v"]
        device = msg.pop("device")
        boot = msg.pop("boot")
        if kind == messages.WILL:
            msg.pop("seq", None)
            msg.pop("ts", None)
            seq, ts = None, time.time()
        else:
            seq, ts = msg.pop("seq"), float(msg.pop("ts"))
        return cls(kind, device, boot, seq, ts, msg, orjson.dumps(msg).decode())


@dataclass
class Rejected:
    """A message that broke the protocol, or that the store refused, kept for inspection."""

    topic: str
    reason: str
    detail: str
    payload: bytes

    @classmethod
    def of(cls, topic: str, reason: str, detail: str, payload: bytes) -> Rejected:
        """A rejection with its topic and raw payload cut to what the quarantine keeps."""
        return cls(topic[:QUARANTINE_TOPIC_CHARS], reason, detail[:QUARANTINE_PAYLOAD_BYTES],
                   bytes(payload[:QUARANTINE_PAYLOAD_BYTES]))


def quarantined(acc: Accepted, school: str, detail: str) -> Rejected:
    """A record the store refused, as a quarantine entry: its topic and the message as decoded.

    The raw bytes stayed with the broker link; this is the same message re-encoded (a card UID already
    pseudonymised).
    """
    leaf = messages.leaf_of(acc.kind)
    topic = f"classops/v1/{school}/up/{acc.device}/{leaf}"
    try:
        head = orjson.dumps({"v": messages.PROTOCOL_VERSION, "kind": acc.kind, "device": acc.device,
                             "boot": acc.boot, "seq": acc.seq, "ts": acc.ts})
        body = acc.body_json.encode()
        payload = head[:-1] + (b"," + body[1:] if len(body) > 2 else b"}")
    except (TypeError, ValueError, AttributeError):
        payload = repr(acc).encode()
    return Rejected.of(topic, STORE_REJECTED, detail, payload)


@dataclass
class CommitResult:
    """What a commit did: per accepted message, whether it was new, and presence changes it made."""

    inserted: list[bool] = field(default_factory=list)
    presence_changes: list[tuple[str, str]] = field(default_factory=list)
    # Indexes of the accepted messages the store refused for their content (commit_each), now quarantined.
    refused: list[int] = field(default_factory=list)
