"""Task housekeeping.

``asyncio.wait_for`` on Python 3.11 can swallow a cancellation that arrives just as the awaited
thing completes (CPython gh-86296); the provider bases use it, so one ``cancel()`` is not always
enough to stop a task. :func:`cancel_and_wait` cancels again until the task is really done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

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


class TaskSet:
    """Named tasks an owner holds while they run (each leaves the set when it ends), so none is
    garbage-collected mid-flight and :meth:`cancel` stops every one still running."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def cancel(self) -> None:
        """Cancel the running tasks and wait until each has finished (see
        :func:`cancel_and_wait`)."""
        await cancel_and_wait(*self._tasks)

    async def wait(self) -> None:
        """Wait until the running tasks have finished on their own (their errors consumed)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


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
