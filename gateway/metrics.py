"""Counters and gauges the gateway keeps about itself, rendered in the Prometheus text format."""

from __future__ import annotations

import threading
from collections import Counter, deque

SAMPLES_KEPT = 100_000
QUANTILES = (0.5, 0.9, 0.99)


class Metrics:
    """Thread-safe counters (by name and label) and gauges."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: Counter[tuple[str, str]] = Counter()
        self._gauges: dict[str, float] = {}
        self._samples: dict[str, deque[float]] = {}

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

    def observe_many(self, name: str, values: list[float]) -> None:
        """Record several observations at once."""
        with self._lock:
            self._samples.setdefault(name, deque(maxlen=SAMPLES_KEPT)).extend(values)

    def quantile(self, name: str, q: float) -> float:
        """The q-quantile of the recent observations of `name` (0 when there are none)."""
        with self._lock:
            values = sorted(self._samples.get(name, ()))
        if not values:
            return 0.0
        return values[min(len(values) - 1, int(q * len(values)))]

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
            for q in QUANTILES:
                out[f"{name}{{quantile={q}}}"] = self.quantile(name, q)
        return out

    def render_prometheus(self, label_name: str = "reason") -> str:
        """The figures in Prometheus' text exposition format."""
        lines = []
        with self._lock:
            for (name, label), value in sorted(self._counters.items()):
                metric = f"classops_gateway_{name}_total"
                if label:
                    lines.append(f'{metric}{{{label_name}="{label}"}} {value}')
                else:
                    lines.append(f"{metric} {value}")
            for name, gauge in sorted(self._gauges.items()):
                lines.append(f"classops_gateway_{name} {gauge}")
            names = sorted(self._samples)
        for name in names:
            for q in QUANTILES:
                lines.append(f'classops_gateway_{name}{{quantile="{q}"}} {self.quantile(name, q)}')
        return "\n".join(lines) + "\n"
