"""The chat context of one conversation: the persona's instructions, the todo list, the history.

History is only ever changed in whole steps: a user message, an assistant message, or an
assistant tool-call message together with every one of its tool results. That is what keeps an
interrupted turn from leaving an orphaned tool message behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from agents.providers.base import ChatMessage, ImagePart, ToolCall


class FrameSource(Protocol):
    """What the vision side offers a voice turn: the latest images of a speaker."""

    def latest_images(self, speaker: str) -> list[ImagePart]: ...


class ChatContext:
    def __init__(self, *, instructions: str, max_messages: int = 40) -> None:
        self.instructions = instructions
        self._history: list[ChatMessage] = []
        self._max = max_messages

    @property
    def history(self) -> tuple[ChatMessage, ...]:
        return tuple(self._history)

    def restore(self, messages: Sequence[ChatMessage]) -> None:
        """Start from an earlier leg's history (failover), trimmed as :meth:`_append` trims."""
        self._history.clear()
        self._append([m for m in messages if m.role != "system"])

    def add_user(
        self, text: str, *, speaker: str | None = None, images: Sequence[ImagePart] = ()
    ) -> None:
        self._append([ChatMessage(role="user", content=text, name=speaker, images=tuple(images))])

    def add_assistant(self, text: str) -> None:
        if text.strip():
            self._append([ChatMessage(role="assistant", content=text)])

    def add_tool_round(
        self, *, text: str, calls: Sequence[ToolCall], results: dict[str, str]
    ) -> None:
        """An assistant message with tool calls and one result per call, all or nothing."""
        missing = [c.id for c in calls if c.id not in results]
        if missing:
            raise ValueError(f"tool calls without results: {missing}")
        msgs = [ChatMessage(role="assistant", content=text, tool_calls=tuple(calls))]
        msgs += [
            ChatMessage(role="tool", content=results[c.id], tool_call_id=c.id, name=c.name)
            for c in calls
        ]
        self._append(msgs)

    def messages(self, *, todo_context: str = "", knowledge_context: str = "") -> list[ChatMessage]:
        """What goes to the model: system (instructions + todo list + this turn's approved
        knowledge, which is not kept in the history), then the history.

        Only the latest user message keeps its images (they are large and stale after a turn).
        """
        system = self.instructions
        if todo_context:
            system = f"{system}\n\n{todo_context}"
        if knowledge_context:
            system = f"{system}\n\n{knowledge_context}"
        out = [ChatMessage(role="system", content=system)]
        last_user = max(
            (i for i, m in enumerate(self._history) if m.role == "user"), default=-1
        )
        for i, m in enumerate(self._history):
            if m.images and i != last_user:
                m = ChatMessage(role=m.role, content=m.content, name=m.name)
            out.append(m)
        return out

    def copy(self) -> ChatContext:
        """A copy to build on, leaving this context as it is (a speculative answer's)."""
        twin = ChatContext(instructions=self.instructions, max_messages=self._max)
        twin._history = list(self._history)
        return twin

    def _append(self, msgs: list[ChatMessage]) -> None:
        self._history.extend(msgs)
        if len(self._history) <= self._max:
            return
        # Trim from the front, never starting on a tool result or splitting a tool round.
        cut = len(self._history) - self._max
        while cut < len(self._history) and self._history[cut].role == "tool":
            cut += 1
        del self._history[:cut]
