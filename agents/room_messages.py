"""What the agent publishes to the room's clients: the conversation's
:class:`~agents.io.MessageOutput` over the room transport. Reliable, topic = type; what matters
is kept in the job record; the latest ``agent_status`` and ``todo_list`` are remembered, so a
client that joined late (or missed the first copies) can be sent the current state. Each
``agent_status`` is also handed to ``on_status`` (the ``lk.agent.state`` attribute)."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from agents.messages import AgentStatus, OutboundMessage
from agents.record import JobRecorder
from agents.transport.base import RoomTransport, TransportError

log = structlog.get_logger("agents.participant")

_STATE_TYPES = ("agent_status", "todo_list")


class RoomMessageOutput:
    """The conversation's :class:`~agents.io.MessageOutput`: reliable, topic = type. Keeps what
    matters in the job record. A failed send is logged and counted, never raised: losing one
    status message must not end the call."""

    def __init__(
        self, *, transport: RoomTransport, recorder: JobRecorder, agent_identity: str,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        self._transport = transport
        self._on_status = on_status
        self._recorder = recorder
        self._agent_identity = agent_identity
        self._state: dict[str, OutboundMessage] = {}

    async def publish(self, message: OutboundMessage) -> None:
        self._recorder.outbound(message, agent_identity=self._agent_identity)
        if message.type in _STATE_TYPES:
            self._state[message.type] = message
        if isinstance(message, AgentStatus) and self._on_status is not None:
            self._on_status(message.data.status)
        await self._send(message, None)

    async def send_state(self, to: list[str] | None = None) -> None:
        """The agent's current status and todo list again, to ``to`` only (or everyone): what a
        client that joined late, or missed the first copies, needs to show."""
        for message in list(self._state.values()):
            await self._send(message, to)

    async def _send(self, message: OutboundMessage, to: list[str] | None) -> None:
        try:
            await self._transport.publish_data(message.encode(), topic=message.topic,
                                               destinations=to)
        except TransportError as e:
            self._recorder.count("publish_failed")
            log.warning("data_publish_failed", topic=message.topic, error=e.reason)
        else:
            self._recorder.count(f"sent_{message.type}")
