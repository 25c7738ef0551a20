"""Token buckets per gateway, in memory: each API worker limits what reaches it."""

import threading
import time
from collections.abc import Callable


class TokenBuckets:
    """One bucket per key, refilled at `rate` tokens a second up to `burst`."""

    def __init__(self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        # Sync routes run in a thread pool, so two requests of one gateway may arrive at once.
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend a token of `key`'s bucket: 0.0 if there was one, else the seconds until there is."""
        with self._lock:
            now = self._clock()
            tokens, then = self._buckets.get(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - then) * self._rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self._rate
