"""Data messages between the agent and the room's clients (PROTOCOL.md §3).

Every message is UTF-8 JSON ``{"type": ..., "data": ...}``, published reliably with the topic
equal to its ``type``. This module is the only place that builds or parses them.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

AgentState = Literal["listening", "thinking", "speaking"]
TodoStatus = Literal["pending", "in_progress", "completed"]


def utc_now_iso() -> str:
    """ISO 8601 UTC with milliseconds and a ``Z`` suffix, as JavaScript's ``toISOString``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- agent to clients -----------------------------------------------------------------------


class TranscriptChunkData(_Strict):
    text: str
    is_final: bool
    confidence: float = Field(ge=0.0, le=1.0)
    timestamp: str
    participant_id: str
    chunk_id: str
    transcript_id: str
    interrupted: bool | None = None
    """Only on the agent's final chunk of a turn the user interrupted: ``text`` is what was
    actually played. Absent otherwise."""


class AgentStatusData(_Strict):
    status: AgentState
    message: str | None = None


class TodoItem(_Strict):
    id: str
    description: str
    status: TodoStatus = "pending"
    required: bool = False


class TodoListData(_Strict):
    items: list[TodoItem]
    timestamp: str


class HandoffData(_Strict):
    """The agent hands the conversation to a human: it stops answering after this."""

    reason: str
    summary: str
    timestamp: str


class KnowledgePassage(_Strict):
    collection: str
    source: str
    score: float


class KnowledgeUse(_Strict):
    """The approved knowledge a turn retrieved: the passages put into the context."""

    retrieval_ms: float
    passages: list[KnowledgePassage]


class AgentMetricsData(_Strict):
    """One turn's latency trace, milliseconds relative to the end of user speech."""

    turn_id: str
    kind: Literal["voice", "text", "vision"] = "voice"
    stages: dict[str, float]
    interrupted: bool = False
    knowledge: KnowledgeUse | None = None
    timestamp: str


class VisionDescriptionData(_Strict):
    description: str
    participant_id: str
    track_source: str
    timestamp: str


class _Message(_Strict):
    def encode(self) -> bytes:
        """The wire form: compact UTF-8 JSON, ``None`` fields dropped."""
        return self.model_dump_json(exclude_none=True).encode()

    @property
    def topic(self) -> str:
        type_: str = self.type  # type: ignore[attr-defined]
        return type_


class TranscriptChunk(_Message):
    type: Literal["transcript_chunk"] = "transcript_chunk"
    data: TranscriptChunkData


class AgentStatus(_Message):
    type: Literal["agent_status"] = "agent_status"
    data: AgentStatusData


class TodoList(_Message):
    type: Literal["todo_list"] = "todo_list"
    data: TodoListData


class Handoff(_Message):
    type: Literal["handoff"] = "handoff"
    data: HandoffData


class AgentMetrics(_Message):
    type: Literal["agent_metrics"] = "agent_metrics"
    data: AgentMetricsData


class VisionDescription(_Message):
    type: Literal["vision_description"] = "vision_description"
    data: VisionDescriptionData


OutboundMessage = Annotated[
    TranscriptChunk | AgentStatus | TodoList | Handoff | AgentMetrics | VisionDescription,
    Field(discriminator="type"),
]
_outbound: TypeAdapter[OutboundMessage] = TypeAdapter(OutboundMessage)


def parse_outbound(payload: bytes | str) -> OutboundMessage:
    """Parse what the agent sent, as a client would (used by tests, the demo and the CLI)."""
    return _outbound.validate_json(payload)


# --- builders --------------------------------------------------------------------------------


def transcript_chunk(
    *,
    text: str,
    is_final: bool,
    participant_id: str,
    transcript_id: str,
    confidence: float = 1.0,
    interrupted: bool | None = None,
) -> TranscriptChunk:
    return TranscriptChunk(
        data=TranscriptChunkData(
            text=text,
            is_final=is_final,
            confidence=min(1.0, max(0.0, confidence)),
            timestamp=utc_now_iso(),
            participant_id=participant_id,
            chunk_id=new_id("CH"),
            transcript_id=transcript_id,
            interrupted=interrupted,
        )
    )


def agent_status(status: AgentState, message: str | None = None) -> AgentStatus:
    return AgentStatus(data=AgentStatusData(status=status, message=message))


def todo_list(items: list[TodoItem]) -> TodoList:
    return TodoList(data=TodoListData(items=list(items), timestamp=utc_now_iso()))


def handoff(*, reason: str, summary: str) -> Handoff:
    return Handoff(data=HandoffData(reason=reason, summary=summary, timestamp=utc_now_iso()))


def agent_metrics(
    *, turn_id: str, stages: dict[str, float], kind: Literal["voice", "text", "vision"] = "voice",
    interrupted: bool = False, knowledge: dict[str, Any] | None = None,
) -> AgentMetrics:
    return AgentMetrics(
        data=AgentMetricsData(
            turn_id=turn_id, kind=kind, stages=stages, interrupted=interrupted,
            knowledge=KnowledgeUse.model_validate(knowledge) if knowledge else None,
            timestamp=utc_now_iso(),
        )
    )


def vision_description(
    *, description: str, participant_id: str, track_source: str
) -> VisionDescription:
    return VisionDescription(
        data=VisionDescriptionData(
            description=description, participant_id=participant_id,
            track_source=track_source, timestamp=utc_now_iso(),
        )
    )


# --- clients to agent ------------------------------------------------------------------------

MAX_INBOUND_BYTES = 16 * 1024
MAX_USER_TEXT_CHARS = 4000


class UserText(_Strict):
    """``{"type": "user_text", "data": "<text>"}``: a user turn without speech recognition."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    type: Literal["user_text"]
    data: str = Field(min_length=1, max_length=MAX_USER_TEXT_CHARS)


class InboundError(ValueError):
    """An inbound data packet the agent ignores; ``kind`` says why, for logs and metrics."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def parse_inbound(payload: bytes) -> UserText:
    """Parse a client's packet. Raises :class:`InboundError` for anything not a valid turn."""
    if len(payload) > MAX_INBOUND_BYTES:
        raise InboundError("too_large", f"{len(payload)} bytes")
    try:
        obj: Any = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise InboundError("not_utf8", str(e)) from e
    except json.JSONDecodeError as e:
        raise InboundError("malformed_json", str(e)) from e
    if not isinstance(obj, dict):
        raise InboundError("not_an_object", type(obj).__name__)
    kind = obj.get("type")
    if kind != "user_text":
        raise InboundError("unknown_type", str(kind)[:64])
    try:
        msg = UserText.model_validate(obj)
    except ValidationError as e:
        raise InboundError("invalid_user_text", e.errors()[0]["msg"]) from e
    if not msg.data.strip():
        raise InboundError("invalid_user_text", "empty text")
    return msg
