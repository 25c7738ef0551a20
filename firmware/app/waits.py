"""Waiting for a wake-up with a deadline: how the device's tasks sleep until their next job."""

import asyncio


async def wait_event_ms(event, ms):
    """Return when `event` is set or after `ms` milliseconds, whichever comes first."""
    try:
        await asyncio.wait_for_ms(event.wait(), ms)
    except asyncio.TimeoutError:
        pass
