"""Counters and gauges the gateway keeps about itself, rendered in the Prometheus text format."""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric

SAMPLES_KEPT = 100_000
QUANTILES = (0.5, 0.9, 0.99)
PREFIX = "classops_gateway_"
# The `# HELP` of the figures docs/gateway.md describes; any other figure's help is its name.
HELP = {
    "messages_in": "Messages delivered by the broker.",
    "messages_committed": "Messages committed to the store for the first time.",
    "messages_duplicate": "Messages the store already had (a device or the broker sent them again).",
    "messages_rejected": "Messages refused and quarantined, by reason.",
    "messages_empty": "Empty (retained-clearing) messages, which carry no data.",
    "records_synced": "Records the cloud confirmed.",
    "sync_failures": "Sync requests that failed, by lane.",
    "backlog_records": "Records waiting for the cloud.",
    "backlog_age_seconds": "Age of the oldest record waiting for the cloud.",
    "devices_online": "Devices online.",
    "devices_known": "Devices the gateway has heard from.",
    "samples_downsampled": "Samples dropped to keep the store within its quota.",
    "samples_refused": "Samples refused while the store is full or cannot write.",
    "store_quota_used_ratio": "Share of the store's quota in use.",
    "alarms_changed": "Alarms raised or cleared.",
    "commit_latency_seconds": "Time from a message's delivery to its commit.",
    "store_commit_seconds": "The store worker's time per batch.",
    "write_batch_messages": "Messages per committed batch.",
    "store_last_commit_timestamp_seconds": "Unix time of the last commit.",
    "store_writable": "1 while the store writes, 0 while it cannot.",
    "store_unwritable_errors": "Store operations that failed because the store cannot write.",
    "store_errors": "Batch commits that failed and were sent again.",
    "store_worker_restarts": "Times the store worker process was replaced.",
    "task_failures": "Gateway task failures, by task.",
}


class _Quantiles:
    """The quantiles of one figure's recent observations, computed again only after new ones."""

    __slots__ = ("observed", "computed_at", "values")

    def __init__(self) -> None:
        self.observed = 0
        self.computed_at = -1
        self.values: tuple[float, ...] = ()


class Metrics:
    """Thread-safe counters (by name and label) and gauges."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: Counter[tuple[str, str]] = Counter()
        self._gauges: dict[str, float] = {}
        self._samples: dict[str, deque[float]] = {}
        self._quantiles: dict[str, _Quantiles] = {}
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self)

    def inc(self, name: str, amount: int = 1, label: str = "") -> None:
        """Add to a counter; `label` distinguishes e.g. rejection reasons."""
        with self._lock:
            self._counters[(name, label)] += amount

    def set(self, name: str, value: float) -> None:
        """Set a gauge."""
        with self._lock:
            self._gauges[name] = value

    def observe(self, name: str, value: float) -> None:
        """Record one observation (e.g. a latency); the most recent ones give quantiles."""
        with self._lock:
            self._samples.setdefault(name, deque(maxlen=SAMPLES_KEPT)).append(value)
            self._quantiles.setdefault(name, _Quantiles()).observed += 1

    def observe_many(self, name: str, values: list[float]) -> None:
        """Record several observations at once."""
        with self._lock:
            self._samples.setdefault(name, deque(maxlen=SAMPLES_KEPT)).extend(values)
            self._quantiles.setdefault(name, _Quantiles()).observed += 1

    def _recent_quantiles(self, name: str) -> tuple[float, ...]:
        # Each scrape would otherwise sort up to SAMPLES_KEPT observations per quantile, holding the lock
        # the writer needs: they are copied under it, sorted once outside it, and only after new ones.
        with self._lock:
            state = self._quantiles.setdefault(name, _Quantiles())
            observed = state.observed
            if state.computed_at == observed:
                return state.values
            values = list(self._samples.get(name, ()))
        values.sort()
        result = tuple(values[min(len(values) - 1, int(q * len(values)))] if values else 0.0 for q in QUANTILES)
        with self._lock:
            if state.computed_at < observed:
                state.computed_at, state.values = observed, result
        return result

    def get(self, name: str, label: str = "") -> float:
        """Current value of a counter, or of a gauge when no counter has that name."""
        with self._lock:
            if (name, label) in self._counters:
                return self._counters[(name, label)]
            return self._gauges.get(name, 0)

    def snapshot(self) -> dict[str, float]:
        """All figures as a flat dict, labels as `name{label}`."""
        with self._lock:
            out: dict[str, float] = {
                (f"{n}{{{lbl}}}" if lbl else n): v for (n, lbl), v in self._counters.items()
            }
            out.update(self._gauges)
        for name in list(self._samples):
            for q, value in zip(QUANTILES, self._recent_quantiles(name), strict=True):
                out[f"{name}{{quantile={q}}}"] = value
        return out

    def collect(self) -> Iterator[Metric]:
        """The figures as Prometheus metric families (the registry's collector interface)."""
        with self._lock:
            counters = sorted(self._counters.items())
            gauges = sorted(self._gauges.items())
            names = sorted(self._samples)
        families: dict[str, Metric] = {}
        for (name, label), value in counters:
            family = families.get(name)
            if family is None:
                family = families[name] = Metric(PREFIX + name, HELP.get(name, name), "counter")
            family.add_sample(f"{PREFIX}{name}_total", {"reason": label} if label else {}, value)
        yield from families.values()
        for name, gauge in gauges:
            family = Metric(PREFIX + name, HELP.get(name, name), "gauge")
            family.add_sample(PREFIX + name, {}, gauge)
            yield family
        for name in names:
            family = Metric(PREFIX + name, HELP.get(name, name), "summary")
            for q, quantile in zip(QUANTILES, self._recent_quantiles(name), strict=True):
                family.add_sample(PREFIX + name, {"quantile": str(q)}, quantile)
            yield family

    def render_prometheus(self) -> str:
        """The figures in Prometheus' text exposition format, with their # HELP and # TYPE."""
        return generate_latest(self._registry).decode()
