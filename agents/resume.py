"""What a job hands the service to go on from if its replica is lost, and how it goes on.

After every turn and every tool round the conversation describes itself
(:func:`conversation_state`: the chat history without images, the todo board with its notes, the
transcript of turns so far); the participant adds what its recorder has seen (the transcript of
data messages, the todo list, the speakers) and hands the whole to
:meth:`agents.job.JobReporter.checkpoint`. With failover on, the service fences it into Redis;
when the job continues on another replica, :attr:`agents.job.JobSpec.resume` carries it back and
:func:`parse_resume` turns it into a :class:`Resumption` (anything malformed is dropped with a
warning: the call goes on afresh rather than not at all).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.messages import TodoItem
from agents.providers.base import ChatMessage, ToolCall
from agents.todo import TodoBoard

CHECKPOINT_VERSION = 1
MAX_RESUMED_ENTRIES = 5000


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SavedToolCall(_Loose):
    id: str
    name: str
    arguments: str


class SavedMessage(_Loose):
    role: Literal["user", "assistant", "tool"]
    content: str = ""
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[SavedToolCall] = Field(default_factory=list)

    def message(self) -> ChatMessage:
        return ChatMessage(
            role=self.role, content=self.content, name=self.name,
            tool_call_id=self.tool_call_id,
            tool_calls=tuple(ToolCall(id=c.id, name=c.name, arguments=c.arguments)
                             for c in self.tool_calls),
        )


class ConversationCheckpoint(_Loose):
    """The voice pipeline's side: what the model knows and the todo board."""

    history: list[SavedMessage] = Field(default_factory=list)
    todo_items: list[TodoItem] = Field(default_factory=list)
    todo_notes: dict[str, str] = Field(default_factory=dict)
    transcript: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_RESUMED_ENTRIES)
    turns: int = 0

    def board(self) -> TodoBoard:
        return TodoBoard.restored(items=self.todo_items, notes=self.todo_notes)

    def chat_history(self) -> list[ChatMessage]:
        return [m.message() for m in self.history]


class RecordCheckpoint(_Loose):
    """The recorder's side: what the room saw."""

    transcript: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_RESUMED_ENTRIES)
    todo_list: list[dict[str, Any]] = Field(default_factory=list)
    speakers: list[str] = Field(default_factory=list)
    handoff: dict[str, Any] | None = None


class Resumption(_Loose):
    """A job's checkpoint as the leg that takes it over reads it."""

    v: int = CHECKPOINT_VERSION
    conversation: ConversationCheckpoint | None = None
    record: RecordCheckpoint = Field(default_factory=RecordCheckpoint)


def parse_resume(data: dict[str, Any] | None, *, problems: list[str]) -> Resumption | None:
    """``None`` for a job that starts afresh; a :class:`Resumption` (perhaps empty) for one that
    continues. A checkpoint that does not parse resumes empty and says why in ``problems``."""
    if data is None:
        return None
    try:
        resumed = Resumption.model_validate(data)
    except ValidationError as e:
        problems.append(f"checkpoint ignored: {e.error_count()} invalid field(s)")
        return Resumption()
    if resumed.v != CHECKPOINT_VERSION:
        problems.append(f"checkpoint ignored: version {resumed.v}, expected {CHECKPOINT_VERSION}")
        return Resumption()
    return resumed


def conversation_state(
    *, history: Sequence[ChatMessage], board: TodoBoard, transcript: Sequence[dict[str, Any]],
    turns: int,
) -> dict[str, Any]:
    """The voice pipeline's checkpoint (images are left out: large, and stale after a turn)."""
    saved: list[dict[str, Any]] = []
    for m in history:
        if m.role == "system":
            continue
        entry: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.name is not None:
            entry["name"] = m.name
        if m.tool_call_id is not None:
            entry["tool_call_id"] = m.tool_call_id
        if m.tool_calls:
            entry["tool_calls"] = [
                {"id": c.id, "name": c.name, "arguments": c.arguments} for c in m.tool_calls
            ]
        saved.append(entry)
    return {
        "history": saved,
        "todo_items": [i.model_dump() for i in board.items],
        "todo_notes": board.notes,
        "transcript": list(transcript)[-MAX_RESUMED_ENTRIES:],
        "turns": turns,
    }
