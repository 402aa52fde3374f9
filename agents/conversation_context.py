"""What a conversation factory gets to build one conversation: :class:`ConversationContext`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agents.config import AgentConfig, PersonaConfig
from agents.io import AudioOutput, Conversation, MessageOutput
from agents.job import JobSpec
from agents.resume import ConversationCheckpoint, Resumption


def _audience_present() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


@dataclass(frozen=True, kw_only=True, slots=True)
class ConversationContext:
    """What a conversation factory gets to build one job's conversation."""

    spec: JobSpec
    config: AgentConfig
    persona: PersonaConfig
    """The configured persona with this job's metadata overrides applied."""
    overrides: dict[str, Any]
    """The allowlisted metadata overrides that were present (already validated)."""
    audio: AudioOutput
    messages: MessageOutput
    agent_identity: str
    audience: asyncio.Event = field(default_factory=_audience_present)
    """Set once someone the agent serves is in the room and can hear it; a conversation waits
    for it before its greeting, so the greeting is not spoken into an empty room."""
    resume: Resumption | None = None
    """Set when the job continues after failover (:mod:`agents.resume`)."""
    checkpoint: Callable[[dict[str, Any]], None] | None = None
    """Where the conversation hands its :func:`~agents.resume.conversation_state` after every
    turn and tool round."""

    @property
    def resumed_conversation(self) -> ConversationCheckpoint | None:
        """What the conversation goes on from after failover (empty when the earlier leg had
        not checkpointed yet); ``None`` for a job that starts afresh."""
        if self.resume is None:
            return None
        return self.resume.conversation or ConversationCheckpoint()


ConversationFactory = Callable[[ConversationContext], Conversation]
