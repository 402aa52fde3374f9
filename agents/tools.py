"""The tools the model can call during a call.

Three tools (see ``docs/tools.md``): ``update_todo`` changes the todo list (the board in
:mod:`agents.todo`), ``end_call`` ends the call politely, ``handoff_to_human`` hands the
conversation to a person. :class:`AgentTools` executes a model's :class:`ToolCall` synchronously
and never raises: malformed arguments, an unknown tool or a rule broken come back as ``ok=False``
with an error the model can read, and a call id executed once is never executed again (a retried
or interrupted turn replays the first outcome).

The todo board and the context helpers are re-exported here, so the pipeline needs one import.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import structlog

from agents.providers.base import ChatMessage, ToolCall, ToolSpec
from agents.todo import (
    CONTEXT_BEGIN,
    CONTEXT_END,
    MAX_DESCRIPTION_CHARS,
    MAX_ID_CHARS,
    MAX_ITEMS,
    MAX_NOTE_CHARS,
    TODO_STATUSES,
    TodoBoard,
    TodoChange,
    TodoSnapshot,
    ToolError,
    parse_todo_context,
    parse_todo_snapshot,
    render_todo_context,
    snapshot_from_json,
    text_arg,
)

__all__ = [
    "CONTEXT_BEGIN",
    "CONTEXT_END",
    "END_CALL",
    "HANDOFF_TO_HUMAN",
    "MAX_ARGUMENT_BYTES",
    "MAX_DESCRIPTION_CHARS",
    "MAX_ID_CHARS",
    "MAX_ITEMS",
    "MAX_NOTE_CHARS",
    "MAX_REASON_CHARS",
    "MAX_SUMMARY_CHARS",
    "TODO_STATUSES",
    "TOOL_NAMES",
    "UPDATE_TODO",
    "AgentTools",
    "TodoBoard",
    "TodoChange",
    "TodoSnapshot",
    "ToolError",
    "ToolOutcome",
    "parse_todo_context",
    "parse_todo_snapshot",
    "render_todo_context",
    "snapshot_from_json",
]

log = structlog.get_logger("agents.tools")

UPDATE_TODO: Final = "update_todo"
END_CALL: Final = "end_call"
HANDOFF_TO_HUMAN: Final = "handoff_to_human"
TOOL_NAMES: Final = (UPDATE_TODO, END_CALL, HANDOFF_TO_HUMAN)

MAX_REASON_CHARS: Final = 500
MAX_SUMMARY_CHARS: Final = 4000
MAX_ARGUMENT_BYTES: Final = 16 * 1024
_REMEMBERED_CALLS: Final = 4096


# --- executing the model's calls -------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolOutcome:
    call_id: str
    name: str
    result: str
    """JSON text that goes back to the model as the tool message."""
    ok: bool
    todo_changed: bool = False
    """The published list changed: publish ``todo_list``."""
    end_call: str | None = None
    """The reason, when the model ended the call."""
    handoff: tuple[str, str] | None = None
    """(reason, summary), when the model handed the call to a human."""

    def to_message(self) -> ChatMessage:
        """The tool message that answers this call in the conversation."""
        return ChatMessage(
            role="tool", content=self.result, tool_call_id=self.call_id, name=self.name
        )


def _obj(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


_SPECS: Final = (
    ToolSpec(
        name=UPDATE_TODO,
        description=(
            "Update the call's todo list. With a known id: set its status and/or record the "
            "caller's answer as note. With a new id and a description: add an item. With "
            "remove=true: remove an item that is not required. Required items cannot be removed "
            "and stay completed once completed. Only one item is in_progress at a time."
        ),
        parameters=_obj(
            {
                "id": {"type": "string", "description": "The item's id."},
                "status": {"type": "string", "enum": list(TODO_STATUSES)},
                "note": {"type": "string", "description": "The caller's answer for this item."},
                "description": {"type": "string", "description": "Only to add a new item."},
                "required": {"type": "boolean", "description": "Only to add a new item."},
                "remove": {"type": "boolean", "description": "Remove a non-required item."},
            },
            ["id"],
        ),
    ),
    ToolSpec(
        name=END_CALL,
        description=(
            "End the call politely, after saying goodbye. Use when the conversation is done or "
            "the caller wants to leave."
        ),
        parameters=_obj(
            {"reason": {"type": "string", "description": "Why the call ends."}}, ["reason"]
        ),
    ),
    ToolSpec(
        name=HANDOFF_TO_HUMAN,
        description=(
            "Hand the call to a human colleague, for example when the caller asks for a person. "
            "You stop answering after this."
        ),
        parameters=_obj(
            {
                "reason": {"type": "string", "description": "Why a human is needed."},
                "summary": {
                    "type": "string",
                    "description": "What the human needs to know: the request and what was "
                    "recorded so far.",
                },
            },
            ["reason", "summary"],
        ),
    ),
)


class AgentTools:
    """Executes the model's tool calls for one call (not thread-safe; one event loop)."""

    def __init__(self, *, board: TodoBoard) -> None:
        self.board = board
        self._done: OrderedDict[str, ToolOutcome] = OrderedDict()
        self._end_call: str | None = None
        self._handoff: tuple[str, str] | None = None

    @property
    def end_call_reason(self) -> str | None:
        """Set once ``end_call`` succeeded."""
        return self._end_call

    @property
    def handoff(self) -> tuple[str, str] | None:
        """(reason, summary), set once ``handoff_to_human`` succeeded."""
        return self._handoff

    def specs(self) -> list[ToolSpec]:
        return list(_SPECS)

    def render_context(self) -> str:
        """:func:`render_todo_context` of the board, with its revision."""
        return render_todo_context(self.board.items, self.board.notes, revision=self.board.revision)

    def execute(self, call: ToolCall) -> ToolOutcome:
        """Execute ``call`` once. Never raises; errors come back with ``ok=False``."""
        if not call.id:
            return self._error(call, "the tool call has no id", remember=False)
        done = self._done.get(call.id)
        if done is not None:
            log.info("tool_call_replayed", call_id=call.id, tool=call.name)
            return done
        if call.name not in TOOL_NAMES:
            outcome = self._error(
                call, f"unknown tool {call.name[:64]!r}; available: {', '.join(TOOL_NAMES)}"
            )
        else:
            try:
                args = _parse_arguments(call.arguments)
                outcome = self._dispatch(call, args)
            except ToolError as e:
                outcome = self._error(call, e.message)
        if outcome.ok:
            log.info(
                "tool_call_executed",
                call_id=call.id,
                tool=call.name,
                todo_changed=outcome.todo_changed,
            )
        return outcome

    def _dispatch(self, call: ToolCall, args: dict[str, Any]) -> ToolOutcome:
        if call.name == UPDATE_TODO:
            change = self.board.apply(args)
            result: dict[str, Any] = {"ok": True, "action": change.action}
            if change.demoted:
                result["moved_back_to_pending"] = list(change.demoted)
            result["todo"] = self.board.snapshot()
            return self._remember(
                ToolOutcome(
                    call_id=call.id,
                    name=call.name,
                    result=_dump(result),
                    ok=True,
                    todo_changed=change.changed,
                )
            )
        _only(args, {"reason"} if call.name == END_CALL else {"reason", "summary"})
        reason = text_arg(args, "reason", MAX_REASON_CHARS, required=True)
        assert reason is not None
        if call.name == END_CALL:
            self._end_call = reason
            missing = [i.id for i in self.board.items if i.required and i.status != "completed"]
            result = {"ok": True, "ending_call": True}
            if missing:
                result["required_items_not_completed"] = missing
            return self._remember(
                ToolOutcome(
                    call_id=call.id,
                    name=call.name,
                    result=_dump(result),
                    ok=True,
                    end_call=reason,
                )
            )
        summary = text_arg(args, "summary", MAX_SUMMARY_CHARS, required=True)
        assert summary is not None
        self._handoff = (reason, summary)
        return self._remember(
            ToolOutcome(
                call_id=call.id,
                name=call.name,
                result=_dump({"ok": True, "handed_off": True}),
                ok=True,
                handoff=(reason, summary),
            )
        )

    def _error(self, call: ToolCall, message: str, *, remember: bool = True) -> ToolOutcome:
        log.info("tool_call_refused", call_id=call.id, tool=call.name[:64], error=message)
        result: dict[str, Any] = {"ok": False, "error": message}
        if call.name == UPDATE_TODO:
            result["todo"] = self.board.snapshot()
        outcome = ToolOutcome(call_id=call.id, name=call.name, result=_dump(result), ok=False)
        return self._remember(outcome) if remember else outcome

    def _remember(self, outcome: ToolOutcome) -> ToolOutcome:
        self._done[outcome.call_id] = outcome
        while len(self._done) > _REMEMBERED_CALLS:
            self._done.popitem(last=False)
        return outcome


def _parse_arguments(arguments: str) -> dict[str, Any]:
    if len(arguments.encode()) > MAX_ARGUMENT_BYTES:
        raise ToolError(f"arguments are too long (at most {MAX_ARGUMENT_BYTES} bytes)")
    if not arguments.strip():
        return {}
    try:
        obj: Any = json.loads(arguments)
    except json.JSONDecodeError as e:
        raise ToolError(f"arguments are not valid JSON: {e.msg} at position {e.pos}") from e
    if not isinstance(obj, dict):
        raise ToolError("arguments must be a JSON object")
    return obj


def _only(args: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(str(k) for k in args if k not in allowed)
    if unknown:
        raise ToolError(
            f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def _dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
