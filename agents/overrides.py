"""Per-job overrides carried in the dispatcher's ``metadata`` (PROTOCOL.md §4).

``metadata`` is an opaque string. When it parses as a JSON object, these keys may change the
job's persona, and only these: ``instructions``, ``voice``, ``language``, ``todo_items``,
``greeting``. Two more narrow what the job reaches, within what the configuration names:
``knowledge`` (the approved-knowledge collections the job searches) and ``mcp_headers`` (per
server, values for the header names that server's ``job_headers`` lists, e.g. a caller's token;
never logged) with ``mcp_refresh`` (per server, the caller's refresh token, for servers with
``token_refresh``). Credentials and provider endpoints come from the server's configuration
alone, so every other key is ignored (and logged), and an invalid value for an allowed key is
dropped rather than failing the job.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agents.config import PersonaConfig, unique_todo_ids
from agents.messages import TodoItem

log = structlog.get_logger("agents.overrides")

ALLOWED_KEYS = (
    "instructions", "voice", "language", "todo_items", "greeting", "knowledge", "mcp_headers",
    "mcp_refresh",
)
SCOPE_KEYS = frozenset({"knowledge", "mcp_headers", "mcp_refresh"})
"""Keys that scope the job's knowledge and tools; they do not change the persona."""
MAX_TODO_ITEMS = 50
MAX_METADATA_CHARS = 64 * 1024
"""Metadata longer than this is not read for overrides (the job webhook caps it at 32 KiB)."""
MAX_DEPTH = 8
"""Overrides nest at most this deep (todo items are three levels)."""


class JobOverrides(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    instructions: str | None = Field(None, min_length=1, max_length=8000)
    voice: str | None = Field(None, min_length=1, max_length=100)
    language: str | None = Field(None, min_length=2, max_length=35)
    todo_items: list[TodoItem] | None = Field(None, max_length=MAX_TODO_ITEMS)
    greeting: str | None = Field(None, max_length=1000)
    knowledge: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        None, max_length=20
    )
    mcp_headers: dict[
        Annotated[str, Field(max_length=64)],
        dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=8192)]],
    ] | None = Field(None, max_length=20)
    mcp_refresh: dict[
        Annotated[str, Field(max_length=64)], Annotated[str, Field(min_length=1, max_length=8192)]
    ] | None = Field(None, max_length=20)

    @field_validator("todo_items")
    @classmethod
    def _unique_todo_ids(cls, items: list[TodoItem] | None) -> list[TodoItem] | None:
        return None if items is None else unique_todo_ids(items)


def _too_deep(obj: Any, limit: int) -> bool:
    """Whether ``obj`` nests containers more than ``limit`` levels deep (iterative)."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return False


def parse_overrides(metadata: str, *, problems: list[str] | None = None) -> JobOverrides:
    """Read the allowlisted overrides from ``metadata``. Never raises: metadata over
    :data:`MAX_METADATA_CHARS`, nested deeper than :data:`MAX_DEPTH`, or holding numbers Python
    refuses to parse is ignored as a whole, with a warning logged and appended to ``problems``
    (the job's record shows it)."""

    def ignore(problem: str) -> JobOverrides:
        log.warning("metadata_overrides_ignored", problem=problem)
        if problems is not None:
            problems.append(f"metadata overrides ignored: {problem}")
        return JobOverrides()

    if not metadata or not metadata.lstrip().startswith("{"):
        return JobOverrides()
    if len(metadata) > MAX_METADATA_CHARS:
        return ignore(f"longer than {MAX_METADATA_CHARS} characters")
    try:
        obj: Any = json.loads(metadata)
    except RecursionError:
        return ignore(f"nested deeper than {MAX_DEPTH} levels")
    except json.JSONDecodeError:
        log.info("metadata_not_json")
        return JobOverrides()
    except ValueError:  # e.g. an integer past Python's digit limit
        return ignore("not parseable JSON (a number too large?)")
    if not isinstance(obj, dict):
        return JobOverrides()
    if _too_deep(obj, MAX_DEPTH):
        return ignore(f"nested deeper than {MAX_DEPTH} levels")
    ignored = sorted(k for k in obj if k not in ALLOWED_KEYS)
    if ignored:
        log.warning("metadata_keys_ignored", keys=[k[:64] for k in ignored[:20]])
    kept: dict[str, Any] = {}
    for key in ALLOWED_KEYS:
        if key not in obj:
            continue
        try:
            JobOverrides.model_validate({key: obj[key]})
        except ValidationError as e:
            log.warning("metadata_override_invalid", key=key, error=e.errors()[0]["msg"])
            if problems is not None:
                problems.append(f"metadata override {key} ignored: invalid")
            continue
        kept[key] = obj[key]
    return JobOverrides.model_validate(kept)


def apply_overrides(persona: PersonaConfig, overrides: JobOverrides) -> PersonaConfig:
    """The persona for one job: the configured one with the job's overrides on top."""
    changes = overrides.model_dump(exclude_none=True, exclude=set(SCOPE_KEYS))
    if "todo_items" in changes:
        changes["todo_items"] = overrides.todo_items
    return persona.model_copy(update=changes)
