"""Task housekeeping.

``asyncio.wait_for`` on Python 3.11 can swallow a cancellation that arrives just as the awaited
thing completes (CPython gh-86296); the provider bases use it, so one ``cancel()`` is not always
enough to stop a task. :func:`cancel_and_wait` cancels again until the task is really done.
"""

from __future__ import annotations

import asyncio
from typing import Any

_RECANCEL_SECONDS = 0.05


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel ``tasks`` and return once every one of them has finished. Their results and
    exceptions are consumed (the owner has given up on them)."""
    live: list[asyncio.Task[Any]] = [t for t in tasks if t is not None and not t.done()]
    for task in live:
        task.cancel()
    while live:
        await asyncio.wait(live, timeout=_RECANCEL_SECONDS)
        live = [t for t in live if not t.done()]
        for task in live:
            task.cancel()
    for finished in tasks:
        if finished is not None and finished.done() and not finished.cancelled():
            finished.exception()  # mark retrieved


def loop_running() -> bool:
    """Whether this thread is running an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def current_task_cancelling() -> bool:
    """Whether the current task has been asked to cancel (its own cancellation, as opposed to
    a cancellation of something it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
