"""The agent's state as its participant attribute ``lk.agent.state``, the one LiveKit's frontends
read (``initializing``, then ``listening``, ``thinking``, ``speaking``).

It is set to ``initializing`` the moment the agent is in the room, and follows every
``agent_status`` message after that. The first value also announces the agent: livekit-server
tells the room about a participant that publishes nothing only in its batch every 3 s, but
about an attribute change at once. The caller sees the agent when it joins, not when its track
is published or the batch comes.

Values are sent in order, one at a time, and only the latest one waiting is sent: a burst of
changes costs one update per round trip. A server that refuses the update (the token has no
``canUpdateOwnMetadata``) gets a warning in the job's record and no further attempts; a failed
or slow update is logged and counted, and the next change tries again; a room already left ends
the attempts quietly. Never raises into the job; nothing is sent after :meth:`aclose`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agents.record import JobRecorder
from agents.transport.base import AttributesRefused, RoomTransport, TransportError

AGENT_STATE = "lk.agent.state"

SET_TIMEOUT = 5.0
"""Seconds one update may take before it is given up (the next change tries again)."""


class AgentStateAttribute:
    def __init__(self, transport: RoomTransport, *, recorder: JobRecorder, log: Any) -> None:
        self._transport = transport
        self._recorder = recorder
        self._log = log
        self._wanted: str | None = None
        self._sent: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False  # refused, the room left, or closed: nothing more is sent

    @property
    def sent(self) -> str | None:
        """The last value the server took."""
        return self._sent

    def set(self, state: str) -> None:
        """Make ``state`` the attribute's value, soon (does not wait for the server)."""
        self._wanted = state
        if not self._stopped and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(
                self._send(), name="agent-state.attribute")

    async def _send(self) -> None:
        while self._wanted is not None and self._wanted != self._sent:
            value = self._wanted
            try:
                async with asyncio.timeout(SET_TIMEOUT):
                    await self._transport.set_attributes({AGENT_STATE: value})
            except AttributesRefused as e:
                self._stopped = True
                self._recorder.count("agent_state_failed")
                self._recorder.warn(f"the {AGENT_STATE} attribute is not set: {e.reason}")
                self._log.warning("agent_state_failed", state=value, error=e.reason)
                return
            except TransportError as e:
                if not e.retryable:  # the room is gone: nobody is left to tell
                    self._stopped = True
                    self._log.info("agent_state_not_sent", state=value, error=e.reason)
                    return
                self._recorder.count("agent_state_failed")
                self._log.warning("agent_state_failed", state=value, error=e.reason)
                return
            except TimeoutError:
                self._recorder.count("agent_state_failed")
                self._log.warning("agent_state_failed", state=value,
                                  error=f"no answer within {SET_TIMEOUT:g} s")
                return
            if self._sent is None:  # the room has just been told the agent is here
                self._log.info("agent_announced", state=value)
            self._sent = value

    async def aclose(self) -> None:
        """Stop an update in flight and send nothing more (before the transport closes).
        Idempotent."""
        self._stopped = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
