"""A conversation with per-job tool connections: wraps the job's conversation and holds the
job's MCP connections (:class:`~agents.mcp_tools.JobTools`) for exactly as long as it runs.
The connections start with the conversation and do not hold it up: a server still connecting
offers its tools from the first turn after it is up."""

from __future__ import annotations

from typing import Any

from agents.io import Conversation, WrappedConversation
from agents.mcp_tools import JobTools


class ToolingConversation(WrappedConversation):
    def __init__(self, *, inner: Conversation, tools: JobTools) -> None:
        super().__init__(inner)
        self._tools = tools

    async def run(self) -> str:
        try:
            self._tools.start()
            return await self._inner.run()
        finally:
            await self._tools.aclose()

    def record(self) -> dict[str, Any]:
        record = dict(self._inner.record())
        record["mcp_calls"] = list(self._tools.calls)
        return record
