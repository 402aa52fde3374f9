"""A service-wide loop owned by one object: :meth:`BackgroundLoop.start` runs its ``_run`` as a
task named after it, :meth:`BackgroundLoop.aclose` cancels and awaits that task (idempotent)."""

from __future__ import annotations

import abc
import asyncio


class BackgroundLoop(abc.ABC):
    name = "background-loop"
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    @abc.abstractmethod
    async def _run(self) -> None:
        """The loop itself; runs until cancelled (or returns when its work is done)."""
