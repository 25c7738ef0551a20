"""What the firmware tests share: the school and device they play, and waiting on a condition."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

SCHOOL = "T001"
DEVICE = "esp32-a1b2c3d4e5f6"
WAIT_S = 20.0


def poll(condition: Callable[[], Any], timeout: float = WAIT_S, what: str = "condition") -> Any:
    """Poll `condition` until it is truthy; its value. AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
