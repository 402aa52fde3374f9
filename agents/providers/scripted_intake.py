"""The scripted intake responder: the offline default for the ``llm`` step. It is NOT a language
model. It follows a fixed script over the call's todo list, using the same tools a model would:

- it asks for the first required item not completed, after marking it ``in_progress``;
- it takes the value for the item in progress from the caller's next message (a name from "My
  name is Alice Johnson", a number from "five five five, one two three four": see
  :mod:`agents.providers.intake_answers`) and records it with ``update_todo`` (``completed``,
  the value as ``note``); a question is not an answer: it says what it is and asks again; words
  without the value (no digits for a phone number) get the question again, and the second time
  the words themselves are recorded, so a caller is never asked forever;
- when every required item is completed it confirms what it recorded in one sentence and
  calls ``end_call``;
- when the caller asks for a person it calls ``handoff_to_human`` with a summary;
- with no todo list it says, honestly, that it is a scripted offline responder.

It understands nothing beyond those patterns. Optional items are never asked.

Tool protocol: a turn's first answer is either text, or tool calls with no text; after the
pipeline appends the tool results and calls again, the responder speaks (the next question, or
the confirmation). ``end_call`` and ``handoff_to_human`` come together with the closing words;
after their results the responder yields nothing. Tool call ids are derived from the request, so
the same request (a retried turn) gives the same ids and the tools do not execute twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agents.messages import TodoItem
from agents.providers.base import (
    LLM,
    CallPolicy,
    ChatMessage,
    ChatRequest,
    LLMEvent,
    TextDelta,
    ToolCall,
    ToolCallEvent,
)
from agents.providers.intake_answers import extract_value, is_question, item_kind
from agents.tools import (
    END_CALL,
    HANDOFF_TO_HUMAN,
    MAX_NOTE_CHARS,
    MAX_SUMMARY_CHARS,
    UPDATE_TODO,
    TodoSnapshot,
    parse_todo_snapshot,
    snapshot_from_json,
)

MAX_STEPS_PER_TURN = 4
"""Tool rounds in one turn before the responder gives up and just speaks."""

NO_TODO_TEXT = (
    "I'm a scripted offline responder, not a language model, and there is no todo list for "
    "this call, so I have nothing to ask you."
)
NO_TOOLS_TEXT = (
    "I'm a scripted offline responder, not a language model, and I can't take notes on this call."
)
TROUBLE_TEXT = "Sorry, I couldn't update my notes just now."
QUESTION_TEXT = (
    "I'm a scripted intake assistant, not a language model, so I can't answer questions; I can "
    "only take down a few details."
)
NOT_CAUGHT_TEXT = {
    "name": "Sorry, I didn't catch your name.",
    "phone": "Sorry, I didn't catch a phone number in that.",
    "email": "Sorry, I didn't catch an email address in that.",
    "other": "Sorry, I didn't catch that.",
}
HANDOFF_TEXT = "Of course, I'll connect you with a person now."
NO_HANDOFF_TEXT = "Sorry, I can't transfer you to a person from here."

_HUMAN_NOUN = re.compile(
    r"\b(human|humans|agent|agents|person|operator|representative|receptionist)\b"
)
_REQUEST_VERB = re.compile(
    r"\b(talk|speak|transfer|connect|put me through|get me|give me|want|need|let me|"
    r"can i|could i|may i|i'd like|i would like)\b"
)
_REPEAT = re.compile(
    r"\b(repeat|say (that|it) again|come again|pardon|didn'?t (catch|hear|get) (that|it|you))\b"
)
_FILLERS = frozenset({"what", "sorry", "huh", "um", "uh", "hmm", "mhm", "er", "erm", "ah", "oh"})
_LEADING_VERB = re.compile(
    r"^(please\s+)?(ask|collect|get|obtain|record|confirm|request|find out|gather|capture|take|"
    r"note|check)\s+(the\s+(caller|user|customer|patient|client)\s+)?((for|about)\s+)?",
    re.IGNORECASE,
)
_POSSESSIVE = re.compile(r"\b(the\s+)?(caller|user|customer|patient|client)'s\b", re.IGNORECASE)
_THEIR = re.compile(r"^(their|his|her)\b", re.IGNORECASE)
_KEEP_AS_IS = frozenset(
    {
        "your",
        "the",
        "a",
        "an",
        "any",
        "whether",
        "if",
        "how",
        "what",
        "when",
        "where",
        "why",
        "which",
        "who",
        "my",
    }
)


def wants_human(text: str) -> bool:
    """Does the caller ask for a person? A person-word, with a request or on its own."""
    lowered = text.lower()
    if not _HUMAN_NOUN.search(lowered):
        return False
    return bool(_REQUEST_VERB.search(lowered)) or len(lowered.split()) <= 3


def wants_repeat(text: str) -> bool:
    """Does the caller ask to hear the question again (or say nothing that could be an answer)?"""
    lowered = text.lower().strip()
    words = re.findall(r"[a-z0-9']+", lowered)
    return not words or bool(_REPEAT.search(lowered)) or all(w in _FILLERS for w in words)


def item_phrase(description: str) -> str:
    """``"Collect the caller's full name"`` -> ``"your full name"``: the item as a phrase."""
    text = " ".join(description.split()).rstrip(".?! ")
    text = _LEADING_VERB.sub("", text, count=1) or text
    text = _POSSESSIVE.sub("your", text)
    text = _THEIR.sub("your", text)
    if len(text) > 1 and not text[1].isupper():
        text = text[0].lower() + text[1:]
    first = text.split(maxsplit=1)[0].lower() if text else ""
    return text if first in _KEEP_AS_IS else f"your {text}"


def question_for(item: TodoItem) -> str:
    description = " ".join(item.description.split())
    if description.endswith("?"):
        return description
    return f"Could you tell me {item_phrase(description)}?"


@dataclass
class _Plan:
    text: str = ""
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


class ScriptedIntakeLLM(LLM):
    """A scripted, deterministic stand-in for a language model (see the module docstring).

    Not a model: it walks the todo list it finds in the system context and treats every caller
    message as the answer to the item in progress."""

    scripted: ClassVar[bool] = True

    def __init__(self, *, name: str = "scripted-intake", policy: CallPolicy | None = None) -> None:
        super().__init__(name=name, policy=policy)

    async def _chat_impl(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        plan = _plan(request)
        for word in re.findall(r"\S+\s*", plan.text):
            yield TextDelta(word)
            await asyncio.sleep(0)
        base = _request_digest(request.messages)
        for index, (name, args) in enumerate(plan.calls):
            yield ToolCallEvent(
                ToolCall(
                    id=f"call_scripted_{base}_{index}",
                    name=name,
                    arguments=json.dumps(args, ensure_ascii=False),
                )
            )


def _plan(request: ChatRequest) -> _Plan:
    messages = request.messages
    offered = {t.name for t in request.tools}
    last_user = next(
        (i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), None
    )
    user_text, asked = _caller_turn(messages)
    snapshot = _current_snapshot(messages)
    items = snapshot.items if snapshot is not None else []
    notes = snapshot.notes if snapshot is not None else {}

    if messages and messages[-1].role == "tool":
        return _follow_up(messages, last_user, items, notes, offered)

    if user_text and wants_human(user_text):
        if HANDOFF_TO_HUMAN not in offered:
            return _Plan(text=NO_HANDOFF_TEXT)
        summary = _handoff_summary(user_text, items, notes)
        return _Plan(
            text=HANDOFF_TEXT,
            calls=[
                (
                    HANDOFF_TO_HUMAN,
                    {
                        "reason": "The caller asked to speak with a person.",
                        "summary": summary,
                    },
                )
            ],
        )
    if not items:
        return _Plan(text=NO_TODO_TEXT)
    if UPDATE_TODO not in offered:
        return _Plan(text=NO_TOOLS_TEXT)

    current = _in_progress(items)
    if current is not None:
        question = question_for(current)
        if not user_text or wants_repeat(user_text) or _squash(question) not in asked:
            return _Plan(text=question)
        if is_question(user_text):
            return _Plan(text=f"{QUESTION_TEXT} {question}")
        value = extract_value(current, user_text)
        if value is None:
            not_caught = NOT_CAUGHT_TEXT[item_kind(current)]
            if _squash(not_caught) not in asked:
                return _Plan(text=f"{not_caught} {question}")
            value = user_text  # asked twice: keep the words rather than ask forever
        calls: list[tuple[str, dict[str, Any]]] = [
            (
                UPDATE_TODO,
                {
                    "id": current.id,
                    "status": "completed",
                    "note": value[:MAX_NOTE_CHARS],
                },
            )
        ]
        following = _next_required(items, skip=current.id)
        if following is not None:
            calls.append((UPDATE_TODO, {"id": following.id, "status": "in_progress"}))
        return _Plan(calls=calls)
    following = _next_required(items)
    if following is not None:
        return _Plan(calls=[(UPDATE_TODO, {"id": following.id, "status": "in_progress"})])
    return _closing(items, notes, offered)


def _caller_turn(messages: Sequence[ChatMessage]) -> tuple[str | None, str]:
    """What the caller said in this turn (the user messages at the end, joined: a turn cut
    short and resumed is one answer), and what the agent said to them before it (its text since
    the caller's previous words, as heard: an interrupted reply is cut where playout stopped)."""
    end = len(messages)
    start = end
    while start > 0 and messages[start - 1].role == "user":
        start -= 1
    if start == end:
        return None, ""
    said: list[str] = []
    for message in reversed(messages[:start]):
        if message.role == "user":
            break
        if message.role == "assistant" and message.content:
            said.append(message.content)
    text = " ".join(" ".join(m.content.split()) for m in messages[start:end]).strip()
    return text or None, _squash(" ".join(reversed(said)))


def _squash(text: str) -> str:
    return " ".join(text.lower().split())


def _follow_up(
    messages: Sequence[ChatMessage],
    last_user: int | None,
    items: list[TodoItem],
    notes: dict[str, str],
    offered: set[str],
) -> _Plan:
    """The pipeline ran our tool calls and asks again: speak, or go on."""
    start = 0 if last_user is None else last_user + 1
    rounds = [m for m in messages[start:] if m.role == "assistant" and m.tool_calls]
    if rounds and any(c.name in (END_CALL, HANDOFF_TO_HUMAN) for c in rounds[-1].tool_calls):
        return _Plan()
    failed = any(not _result_ok(m.content) for m in _trailing_tool_messages(messages))
    if len(rounds) >= MAX_STEPS_PER_TURN:
        return _Plan(text=TROUBLE_TEXT)
    current = _in_progress(items)
    if current is not None:
        return _Plan(text=question_for(current))
    if items and _next_required(items) is None:
        return _closing(items, notes, offered)
    if failed or not items:
        return _Plan(text=TROUBLE_TEXT)
    following = _next_required(items)
    assert following is not None
    return _Plan(calls=[(UPDATE_TODO, {"id": following.id, "status": "in_progress"})])


def _closing(items: list[TodoItem], notes: dict[str, str], offered: set[str]) -> _Plan:
    parts = []
    for item in items:
        if not item.required:
            continue
        phrase = item_phrase(item.description)
        note = notes.get(item.id)
        answer = _short(note, 60).rstrip(".!?,;: ") if note else ""
        parts.append(f"{phrase} as {answer}" if answer else phrase)
    if not parts:
        recorded = "everything I needed"
    elif len(parts) == 1:
        recorded = parts[0]
    else:
        recorded = ", ".join(parts[:-1]) + " and " + parts[-1]
    text = f"Thank you, I have recorded {recorded}. Goodbye!"
    if END_CALL not in offered:
        return _Plan(text=text)
    return _Plan(text=text, calls=[(END_CALL, {"reason": "All required items were recorded."})])


def _handoff_summary(user_text: str, items: list[TodoItem], notes: dict[str, str]) -> str:
    lines = [f'The caller asked for a person: "{_short(user_text, 200)}".']
    recorded = [f"{i.description}: {_short(notes[i.id], 200)}" for i in items if i.id in notes]
    missing = [i.description for i in items if i.required and i.status != "completed"]
    if recorded:
        lines.append("Recorded so far: " + "; ".join(recorded) + ".")
    if missing:
        lines.append("Still to collect: " + "; ".join(missing) + ".")
    return _short(" ".join(lines), MAX_SUMMARY_CHARS)


def _current_snapshot(messages: Sequence[ChatMessage]) -> TodoSnapshot | None:
    """The newest view of the todo list: the highest revision among the system context and the
    ``todo`` of ``update_todo`` results; a context without a revision loses to any result."""
    best: tuple[int, int, TodoSnapshot] | None = None
    for position, message in enumerate(messages):
        snapshot: TodoSnapshot | None = None
        if message.role == "system":
            snapshot = parse_todo_snapshot(message.content)
        elif message.role == "tool":
            obj = _json_object(message.content)
            todo = obj.get("todo") if obj is not None else None
            snapshot = snapshot_from_json(todo) if isinstance(todo, dict) else None
        if snapshot is None:
            continue
        key = (snapshot.revision if snapshot.revision is not None else -1, position)
        if best is None or key >= best[:2]:
            best = (key[0], key[1], snapshot)
    return best[2] if best is not None else None


def _trailing_tool_messages(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    tail: list[ChatMessage] = []
    for message in reversed(messages):
        if message.role != "tool":
            break
        tail.append(message)
    return tail


def _result_ok(content: str) -> bool:
    obj = _json_object(content)
    return obj is not None and obj.get("ok") is True


def _json_object(content: str) -> dict[str, Any] | None:
    try:
        obj: Any = json.loads(content)
    except (json.JSONDecodeError, TypeError):
        return None
    return obj if isinstance(obj, dict) else None


def _in_progress(items: list[TodoItem]) -> TodoItem | None:
    return next((i for i in items if i.status == "in_progress"), None)


def _next_required(items: list[TodoItem], *, skip: str | None = None) -> TodoItem | None:
    return next((i for i in items if i.required and i.status != "completed" and i.id != skip), None)


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _request_digest(messages: Sequence[ChatMessage]) -> str:
    digest = hashlib.sha256()
    for m in messages:
        parts = [m.role, m.content, m.tool_call_id or "", *(c.id for c in m.tool_calls)]
        digest.update(json.dumps(parts).encode())
    return digest.hexdigest()[:16]
