"""Counters and gauges the gateway keeps about itself, rendered in the Prometheus text format."""

from __future__ import annotations

import threading
from collections import Counter


class Metrics:
    """Thread-safe counters (by name and label) and gauges."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: Counter[tuple[str, str]] = Counter()
        self._gauges: dict[str, float] = {}

    def inc(self, name: str, amount: int = 1, label: str = "") -> None:
        """Add to a counter; `label` distinguishes e.g. rejection reasons."""
        with self._lock:
            self._counters[(name, label)] += amount

    def set(self, name: str, value: float) -> None:
        """Set a gauge."""
        with self._lock:
            self._gauges[name] = value

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
        return "\n".join(lines) + "\n"
