"""A conversation with per-job tool connections: wraps the job's conversation and holds the
job's MCP connections (:class:`~agents.mcp_tools.JobTools`) for exactly as long as it runs.
The connections start with the conversation and do not hold it up: a server still connecting
offers its tools from the first turn after it is up."""

from __future__ import annotations

from typing import Any

from livekit import rtc

from agents.io import Conversation, is_busy
from agents.mcp_tools import JobTools


class ToolingConversation:
    def __init__(self, *, inner: Conversation, tools: JobTools) -> None:
        self._inner = inner
        self._tools = tools

    def push_audio(self, speaker: str, frame: rtc.AudioFrame) -> None:
        self._inner.push_audio(speaker, frame)

    def push_text(self, speaker: str, text: str) -> None:
        self._inner.push_text(speaker, text)

    def push_video(self, speaker: str, source: str, frame: rtc.VideoFrame) -> None:
        self._inner.push_video(speaker, source, frame)

    def speaker_left(self, speaker: str) -> None:
        self._inner.speaker_left(speaker)

    def busy(self) -> bool:
        return is_busy(self._inner)

    def audio_gap(self, speaker: str, ms: float) -> None:
        gap = getattr(self._inner, "audio_gap", None)
        if gap is not None:
            gap(speaker, ms)

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
