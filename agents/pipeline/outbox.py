"""One conversation's outgoing data messages: queued without blocking from anywhere on the loop,
published in order by one named task, flushed (briefly) on the way out."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from agents.io import MessageOutput
from agents.messages import OutboundMessage
from agents.pipeline.aio import cancel_and_wait

log = structlog.get_logger("agents.pipeline.outbox")


class Outbox:
    def __init__(self, *, output: MessageOutput, drain_seconds: float = 2.0) -> None:
        self._output = output
        self._queue: asyncio.Queue[OutboundMessage] = asyncio.Queue()
        self._drain_seconds = drain_seconds
        self._task: asyncio.Task[None] | None = None

    def put(self, message: OutboundMessage) -> None:
        """Queue ``message``; never blocks. Sent once :meth:`start` has been called."""
        self._queue.put_nowait(message)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._send_loop(), name="pipeline-sender")

    async def aclose(self) -> None:
        """Send what is queued (up to ``drain_seconds``), then stop. Idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout=self._drain_seconds)
        await cancel_and_wait(task)

    async def _send_loop(self) -> None:
        while True:
            message = await self._queue.get()
            try:
                await self._output.publish(message)
            except Exception as e:  # noqa: BLE001 (a lost message must not end the call)
                log.warning("publish_failed", type=message.type, error=str(e))
            finally:
                self._queue.task_done()
