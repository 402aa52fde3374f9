"""The todo list of one call: the board the ``update_todo`` tool acts on, and the todo list as
text in the model's context.

The board's rules are in :class:`TodoBoard` and ``docs/tools.md``. The context block
(:func:`render_todo_context`) is a marker line, one line of JSON and an end marker, so any model
and the scripted responder (:func:`parse_todo_context`) read the same thing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from pydantic import ValidationError

from agents.messages import TodoItem, TodoStatus

TODO_STATUSES: Final[tuple[str, ...]] = get_args(TodoStatus)
MAX_ITEMS: Final = 50
MAX_ID_CHARS: Final = 64
MAX_DESCRIPTION_CHARS: Final = 500
MAX_NOTE_CHARS: Final = 1000

CONTEXT_BEGIN: Final = "<<TODO_LIST>>"
CONTEXT_END: Final = "<<END_TODO_LIST>>"


class ToolError(Exception):
    """A tool call the agent refuses. The message is safe to give back to the model."""

    retryable: bool = False
    """Never: the same arguments fail the same way. The model may call again with others."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- the todo board --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class TodoChange:
    """What one ``update_todo`` did."""

    id: str
    action: Literal["added", "updated", "removed", "unchanged"]
    item: TodoItem | None
    """The item after the change; ``None`` when it was removed."""
    changed: bool
    """The published list changed (ids, statuses, descriptions): send ``todo_list``."""
    note_recorded: bool = False
    demoted: tuple[str, ...] = ()
    """Items moved from ``in_progress`` back to ``pending`` because this one took their place."""


_UPDATE_KEYS: Final = frozenset({"id", "status", "note", "description", "required", "remove"})


class TodoBoard:
    """The todo list of one call, with the answers recorded per item.

    Rules (also in ``docs/tools.md``):

    - an unknown ``id`` adds an item and needs a ``description``; ``required`` defaults to false;
      at most :data:`MAX_ITEMS` items;
    - a known ``id`` may change ``status`` and record a ``note``; its ``description`` and
      ``required`` are fixed (repeating the same value is allowed);
    - ``remove: true`` removes an item, never a required one, and takes no other field;
    - a required item, once completed, stays completed;
    - at most one item is ``in_progress``: starting one puts any other back to ``pending``;
    - a ``note`` replaces the item's previous note; it must not be empty.
    """

    def __init__(self, *, items: list[TodoItem]) -> None:
        seen: set[str] = set()
        for item in items:
            if item.id in seen:
                raise ValueError(f"duplicate todo id {item.id!r}")
            seen.add(item.id)
        if len(items) > MAX_ITEMS:
            raise ValueError(f"at most {MAX_ITEMS} todo items, got {len(items)}")
        self._items: list[TodoItem] = list(items)
        self._notes: dict[str, str] = {}
        self._revision = 0

    @classmethod
    def restored(cls, *, items: list[TodoItem], notes: Mapping[str, str]) -> TodoBoard:
        """The board as a checkpoint left it (failover): its items and the notes of the ones
        still on it."""
        first: dict[str, TodoItem] = {}
        for item in items:
            first.setdefault(item.id, item)
        board = cls(items=list(first.values())[:MAX_ITEMS])
        known = {i.id for i in board._items}
        board._notes = {k: v for k, v in notes.items() if k in known}
        return board

    @property
    def items(self) -> list[TodoItem]:
        return list(self._items)

    @property
    def notes(self) -> dict[str, str]:
        """The answer recorded for each item, by id."""
        return dict(self._notes)

    @property
    def revision(self) -> int:
        """Counts changes (items or notes); the scripted responder uses it to pick the newest
        view of the list."""
        return self._revision

    def get(self, item_id: str) -> TodoItem | None:
        return next((i for i in self._items if i.id == item_id), None)

    def snapshot(self) -> dict[str, Any]:
        """The list as JSON-ready data: what the model sees in its context and tool results."""
        return _snapshot(self._items, self._notes, revision=self._revision)

    def apply(self, args: Mapping[str, Any]) -> TodoChange:
        """Apply one ``update_todo`` call. Raises :class:`ToolError` for anything invalid; an
        invalid call changes nothing."""
        if not isinstance(args, Mapping):
            raise ToolError("arguments must be a JSON object")
        unknown = sorted(str(k) for k in args if k not in _UPDATE_KEYS)
        if unknown:
            raise ToolError(
                f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_UPDATE_KEYS))}"
            )
        item_id = text_arg(args, "id", MAX_ID_CHARS, required=True)
        assert item_id is not None
        status = args.get("status")
        if status is not None and status not in TODO_STATUSES:
            raise ToolError(f"status must be one of {', '.join(TODO_STATUSES)}, got {status!r}")
        note = text_arg(args, "note", MAX_NOTE_CHARS)
        description = text_arg(args, "description", MAX_DESCRIPTION_CHARS)
        required = flag_arg(args, "required")
        remove = flag_arg(args, "remove")

        current = self.get(item_id)
        if remove:
            return self._remove(item_id, current, args)
        if current is None:
            return self._add(item_id, description, required, status, note)
        return self._update(current, description, required, status, note)

    def _remove(
        self, item_id: str, current: TodoItem | None, args: Mapping[str, Any]
    ) -> TodoChange:
        extra = sorted(k for k in args if k not in ("id", "remove"))
        if extra:
            raise ToolError(f"remove takes only id, not {', '.join(extra)}")
        if current is None:
            raise ToolError(f"no todo item with id {item_id!r}; known ids: {self._known_ids()}")
        if current.required:
            raise ToolError(f"item {item_id!r} is required and cannot be removed")
        self._items = [i for i in self._items if i.id != item_id]
        self._notes.pop(item_id, None)
        self._revision += 1
        return TodoChange(id=item_id, action="removed", item=None, changed=True)

    def _add(
        self,
        item_id: str,
        description: str | None,
        required: bool | None,
        status: str | None,
        note: str | None,
    ) -> TodoChange:
        if description is None:
            raise ToolError(
                f"no todo item with id {item_id!r}; to add one, give a description "
                f"(known ids: {self._known_ids()})"
            )
        if len(self._items) >= MAX_ITEMS:
            raise ToolError(f"the todo list is full ({MAX_ITEMS} items)")
        try:
            item = TodoItem(
                id=item_id,
                description=description,
                status=status or "pending",
                required=bool(required),
            )
        except ValidationError as e:  # pragma: no cover (fields checked above)
            raise ToolError(f"invalid item: {e.errors()[0]['msg']}") from e
        demoted = self._demote_others(item_id) if item.status == "in_progress" else ()
        self._items.append(item)
        if note is not None:
            self._notes[item_id] = note
        self._revision += 1
        return TodoChange(
            id=item_id,
            action="added",
            item=item,
            changed=True,
            note_recorded=note is not None,
            demoted=demoted,
        )

    def _update(
        self,
        current: TodoItem,
        description: str | None,
        required: bool | None,
        status: str | None,
        note: str | None,
    ) -> TodoChange:
        item_id = current.id
        if description is not None and description != current.description:
            raise ToolError(f"the description of item {item_id!r} cannot be changed")
        if required is not None and required != current.required:
            raise ToolError(f"whether item {item_id!r} is required cannot be changed")
        if status is None and note is None:
            raise ToolError(f"nothing to change for item {item_id!r}: give a status or a note")
        if (
            current.required
            and current.status == "completed"
            and status is not None
            and status != "completed"
        ):
            raise ToolError(f"item {item_id!r} is required and already completed; it stays so")
        new_status = status or current.status
        demoted: tuple[str, ...] = ()
        if new_status == "in_progress" and current.status != "in_progress":
            demoted = self._demote_others(item_id)
        changed = new_status != current.status
        item = current.model_copy(update={"status": new_status}) if changed else current
        if changed:
            self._items = [item if i.id == item_id else i for i in self._items]
        note_recorded = note is not None and self._notes.get(item_id) != note
        if note is not None:
            self._notes[item_id] = note
        if changed or note_recorded:
            self._revision += 1
        return TodoChange(
            id=item_id,
            action="updated" if changed or note_recorded else "unchanged",
            item=item,
            changed=changed or bool(demoted),
            note_recorded=note_recorded,
            demoted=demoted,
        )

    def _demote_others(self, item_id: str) -> tuple[str, ...]:
        demoted = tuple(i.id for i in self._items if i.status == "in_progress" and i.id != item_id)
        if demoted:
            self._items = [
                i.model_copy(update={"status": "pending"}) if i.id in demoted else i
                for i in self._items
            ]
        return demoted

    def _known_ids(self) -> str:
        ids = [i.id for i in self._items]
        return ", ".join(ids[:20]) + (", ..." if len(ids) > 20 else "") if ids else "none"


def text_arg(
    args: Mapping[str, Any], key: str, limit: int, *, required: bool = False
) -> str | None:
    """A string argument, stripped and non-empty, or ``None`` when absent and optional."""
    value = args.get(key)
    if value is None:
        if required:
            raise ToolError(f"{key} is required")
        return None
    if not isinstance(value, str):
        raise ToolError(f"{key} must be a string")
    value = value.strip()
    if not value:
        raise ToolError(f"{key} must not be empty")
    if len(value) > limit:
        raise ToolError(f"{key} is too long ({len(value)} characters, at most {limit})")
    return value


def flag_arg(args: Mapping[str, Any], key: str) -> bool | None:
    """A boolean argument, or ``None`` when absent."""
    value = args.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise ToolError(f"{key} must be true or false")
    return value


def _snapshot(
    items: list[TodoItem], notes: Mapping[str, str], *, revision: int | None
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for item in items:
        row: dict[str, Any] = item.model_dump()
        if item.id in notes:
            row["note"] = notes[item.id]
        rows.append(row)
    data: dict[str, Any] = {"items": rows}
    if revision is not None:
        data["revision"] = revision
    return data


# --- the todo list in the model's context ----------------------------------------------------

_CONTEXT_HEADER = (
    "Todo list for this call. Ask for each required item that is not completed, one at a time, "
    "in order. Before asking, mark the item in_progress with update_todo; when the caller "
    "answers, mark it completed with their answer as note. When every required item is "
    "completed, confirm what you recorded in one short sentence and call end_call. If the caller "
    "asks for a person, call handoff_to_human with a summary."
)


def render_todo_context(
    items: list[TodoItem], notes: Mapping[str, str], *, revision: int | None = None
) -> str:
    """The todo list as text for the system context; empty when there are no items.

    The JSON sits on one line between :data:`CONTEXT_BEGIN` and :data:`CONTEXT_END`; ``<`` is
    escaped inside it, so no description or note can forge a marker."""
    if not items:
        return ""
    payload = json.dumps(_snapshot(items, notes, revision=revision), ensure_ascii=False)
    payload = payload.replace("<", "\\u003c")
    return f"{_CONTEXT_HEADER}\n{CONTEXT_BEGIN}\n{payload}\n{CONTEXT_END}"


@dataclass(frozen=True, kw_only=True, slots=True)
class TodoSnapshot:
    """A todo list read back from text: items, notes, and the board revision when known."""

    items: list[TodoItem]
    notes: dict[str, str]
    revision: int | None


def parse_todo_snapshot(text: str) -> TodoSnapshot | None:
    """Read the last todo block in ``text``; ``None`` when there is none or it is invalid."""
    start = text.rfind(CONTEXT_BEGIN)
    if start < 0:
        return None
    end = text.find(CONTEXT_END, start)
    if end < 0:
        return None
    return snapshot_from_json(text[start + len(CONTEXT_BEGIN) : end])


def snapshot_from_json(data: str | Mapping[str, Any]) -> TodoSnapshot | None:
    """A snapshot from its JSON form (a context block or an ``update_todo`` result's ``todo``)."""
    try:
        obj: Any = json.loads(data) if isinstance(data, str) else data
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, Mapping) or not isinstance(obj.get("items"), list):
        return None
    revision = obj.get("revision")
    if revision is not None and (not isinstance(revision, int) or isinstance(revision, bool)):
        return None
    items: list[TodoItem] = []
    notes: dict[str, str] = {}
    for row in obj["items"]:
        if not isinstance(row, Mapping):
            return None
        row = dict(row)
        note = row.pop("note", None)
        try:
            item = TodoItem.model_validate(row)
        except ValidationError:
            return None
        items.append(item)
        if isinstance(note, str):
            notes[item.id] = note
    return TodoSnapshot(items=items, notes=notes, revision=revision)


def parse_todo_context(text: str) -> list[TodoItem] | None:
    """The items of the last todo block in ``text``; ``None`` when there is no valid block."""
    snapshot = parse_todo_snapshot(text)
    return None if snapshot is None else snapshot.items
