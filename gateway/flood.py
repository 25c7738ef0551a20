"""Holds each device to a steady rate where the broker link's messages enter the gateway.

A healthy device sends a few messages a minute, and a few hundred at once when it replays its event
buffer after a reconnect; one that sends thousands a second is broken or hostile. Each device has a token
bucket (`[broker] device_rate_per_s`, `device_burst`); a message beyond it is flood: acknowledged to the
broker and dropped before it costs the store anything, so the broker's in-flight window stays open for
the other devices and their messages do not queue behind it. An event dropped this way is not lost: it
stays in the device's flash buffer until an `eack` names it, and none is sent for it.

A device gets a `device_flood` alarm once it has been over its rate for as long as its bucket takes to
fill (`device_burst / device_rate_per_s`), and it is cleared once the device has stayed under its rate
that long. A shorter excess is dropped without an alarm: when the gateway comes back after a while away,
the broker delivers what it kept meanwhile at once, and a device that resent its unacknowledged events
every few seconds during the outage looks like a flood for a few seconds; its copies are duplicates.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from gateway.broker import Incoming

DEVICE_FLOOD = "device_flood"


class FloodChange(NamedTuple):
    """A device that started or stopped flooding, and how many of its messages were dropped meanwhile."""

    device: str
    flooding: bool
    dropped: int


class _Episode:
    """A device's time over its rate: from its first dropped message until its bucket is full again."""

    __slots__ = ("started", "last", "dropped", "raised")

    def __init__(self, started: float, raised: bool = False) -> None:
        self.started = started
        self.last = started
        self.dropped = 0
        self.raised = raised


class FloodGuard:
    """Per-device token buckets over the messages the broker delivers.

    `admit` runs in the broker link's thread on each read; `changes` in the event loop, about once a
    second, to raise and clear alarms. One lock, taken once per read, guards both."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._alarm_after = burst / rate_per_s
        self._lock = threading.Lock()
        # device -> (tokens left, when they were counted); a device without one has a full bucket
        self._buckets: dict[str, tuple[float, float]] = {}
        self._episodes: dict[str, _Episode] = {}

    def admit(self, batch: list[Incoming]) -> tuple[list[Incoming], list[Incoming]]:
        """Split one read's messages into (those to store, the flood to ack and drop), in order."""
        if not batch:
            return batch, []
        now = batch[0].received
        rate, burst = self._rate, self._burst
        # Uplink topics are classops/v1/<school>/up/<device>/<leaf> (protocol.topics.parse): counted by
        # what precedes the leaf, whose last level is the device, in one pass at C speed.
        counts = Counter([message.topic.rpartition("/")[0] for message in batch])
        with self._lock:
            buckets = self._buckets
            over: dict[str, float] = {}
            for prefix, count in counts.items():
                device = prefix.rpartition("/")[2]
                tokens, stamp = buckets.get(device, (burst, now))
                tokens = min(burst, tokens + (now - stamp) * rate)
                if count <= tokens:
                    buckets[device] = (tokens - count, now)
                else:
                    over[prefix] = tokens
                    buckets[device] = (tokens % 1.0, now)
            if not over:
                return batch, []
            kept: list[Incoming] = []
            excess: list[Incoming] = []
            dropped: dict[str, int] = {}
            for message in batch:
                prefix = message.topic.rpartition("/")[0]
                tokens = over.get(prefix)
                if tokens is None:
                    kept.append(message)
                elif tokens >= 1.0:
                    over[prefix] = tokens - 1.0
                    kept.append(message)
                else:
                    excess.append(message)
                    dropped[prefix] = dropped.get(prefix, 0) + 1
            for prefix, count in dropped.items():
                device = prefix.rpartition("/")[2]
                episode = self._episodes.get(device)
                if episode is None:
                    episode = self._episodes[device] = _Episode(now)
                episode.last = now
                episode.dropped += count
        return kept, excess

    def flooding(self, devices: list[str], now: float) -> None:
        """Take the devices whose `device_flood` alarm the store holds raised, at a (re)start: each is
        cleared once calm, and a flood whose alarm the store never took is raised again."""
        raised = set(devices)
        with self._lock:
            for device, episode in self._episodes.items():
                episode.raised = device in raised
            for device in raised:
                self._episodes.setdefault(device, _Episode(now, raised=True))

    def changes(self, now: float) -> list[FloodChange]:
        """Devices whose flood has lasted long enough for an alarm, and flooding devices whose bucket is
        full again (`now` on the clock of the messages' `received`). Full buckets are forgotten, so
        memory is bounded by the devices sending right now."""
        out: list[FloodChange] = []
        with self._lock:
            for device, (tokens, stamp) in list(self._buckets.items()):
                if tokens + (now - stamp) * self._rate >= self._burst:
                    del self._buckets[device]
            for device, episode in list(self._episodes.items()):
                if device not in self._buckets:
                    del self._episodes[device]
                    if episode.raised:
                        out.append(FloodChange(device, False, episode.dropped))
                elif not episode.raised and episode.last - episode.started >= self._alarm_after:
                    episode.raised = True
                    out.append(FloodChange(device, True, episode.dropped))
        return out
