"""What a turn may draw on besides the transcript, persona and built-in tools: approved
knowledge retrieved before the model call, and further tools (MCP servers' tools).

The pipeline sees only these protocols; :mod:`agents.knowledge` and :mod:`agents.mcp_tools`
implement them, and the conversation factory hands a job's :class:`TurnExtras` to its pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from agents.providers.base import ToolCall, ToolSpec


class Retrieved(Protocol):
    def context(self) -> str:
        """The block for the system message ("" when nothing was found)."""
        ...

    def summary(self) -> dict[str, Any]:
        """For ``agent_metrics`` and the job record (passages used, retrieval ms)."""
        ...


class Retriever(Protocol):
    async def retrieve(self, text: str) -> Retrieved: ...


class ExtraTools(Protocol):
    def specs(self) -> list[ToolSpec]: ...

    def handles(self, name: str) -> bool: ...

    async def call(self, call: ToolCall) -> str:
        """Run the call; the tool message's content. Never raises (but may be cancelled)."""
        ...


@dataclass(frozen=True, kw_only=True, slots=True)
class TurnExtras:
    knowledge: Retriever | None = None
    tools: ExtraTools | None = None
