"""Per-job overrides carried in the dispatcher's ``metadata`` (PROTOCOL.md §4).

``metadata`` is an opaque string. When it parses as a JSON object, these keys may change the
job's persona, and only these: ``instructions``, ``voice``, ``language``, ``todo_items``,
``greeting``. Two more narrow what the job reaches, within what the configuration names:
``knowledge`` (the approved-knowledge collections the job searches) and ``mcp_headers`` (per
server, values for the header names that server's ``job_headers`` lists, e.g. a caller's token;
never logged). Credentials and provider endpoints come from the server's configuration alone, so
every other key is ignored (and logged), and an invalid value for an allowed key is dropped rather
than failing the job.
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
)
SCOPE_KEYS = frozenset({"knowledge", "mcp_headers"})
"""Keys that scope the job's knowledge and tools; they do not change the persona."""
MAX_TODO_ITEMS = 50


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

    @field_validator("todo_items")
    @classmethod
    def _unique_todo_ids(cls, items: list[TodoItem] | None) -> list[TodoItem] | None:
        return None if items is None else unique_todo_ids(items)


def parse_overrides(metadata: str) -> JobOverrides:
    """Read the allowlisted overrides from ``metadata``. Never raises."""
    if not metadata or not metadata.lstrip().startswith("{"):
        return JobOverrides()
    try:
        obj: Any = json.loads(metadata)
    except json.JSONDecodeError:
        log.info("metadata_not_json")
        return JobOverrides()
    if not isinstance(obj, dict):
        return JobOverrides()
    ignored = sorted(k for k in obj if k not in ALLOWED_KEYS)
    if ignored:
        log.warning("metadata_keys_ignored", keys=ignored[:20])
    kept: dict[str, Any] = {}
    for key in ALLOWED_KEYS:
        if key not in obj:
            continue
        try:
            JobOverrides.model_validate({key: obj[key]})
        except ValidationError as e:
            log.warning("metadata_override_invalid", key=key, error=e.errors()[0]["msg"])
            continue
        kept[key] = obj[key]
    return JobOverrides.model_validate(kept)


def apply_overrides(persona: PersonaConfig, overrides: JobOverrides) -> PersonaConfig:
    """The persona for one job: the configured one with the job's overrides on top."""
    changes = overrides.model_dump(exclude_none=True, exclude=set(SCOPE_KEYS))
    if "todo_items" in changes:
        changes["todo_items"] = overrides.todo_items
    return persona.model_copy(update=changes)
