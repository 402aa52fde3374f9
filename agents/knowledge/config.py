"""Configuration of approved knowledge: named collections the agent retrieves from in each turn.

Nested under ``agent.knowledge`` of ``config.yaml``. A job reaches only collections named here;
the metadata allowlist (``knowledge: [...]``) can narrow a job's scope, never widen it.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
FILE_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".pdf"})
"""The files a collection reads (case-insensitive)."""


class CollectionConfig(BaseModel):
    """One collection: a folder of Markdown, text and PDF files."""

    model_config = ConfigDict(extra="forbid")

    path: Path = Field(description="Folder read recursively: *.md, *.markdown, *.txt, *.pdf.")
    description: str | None = Field(None, max_length=500, description="For operators and logs.")


class KnowledgeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    collections: dict[str, CollectionConfig] = Field(
        default_factory=dict,
        description="Collections by name (lowercase letters, digits, - and _). Empty: off.",
    )
    default_collections: list[str] | None = Field(
        None,
        description="The collections a job uses when its metadata names none (default: all). "
        "A job's metadata `knowledge: [...]` may pick any configured collection.",
    )
    index_dir: Path = Field(
        Path(".knowledge-index"),
        description="Where each collection's passages and vector index are kept on disk; an "
        "index whose files and settings are unchanged is loaded, not rebuilt.",
    )
    top_k: int = Field(3, ge=1, le=20, description="Passages put into the context per turn.")
    min_score: float = Field(
        0.25, ge=-1.0, le=1.0,
        description="Cosine similarity below which a passage is not used.",
    )
    passage_chars: int = Field(
        700, ge=100, le=4000, description="Longest passage (characters); split on paragraphs."
    )
    overlap_chars: int = Field(
        100, ge=0, le=1000, description="Characters a long paragraph's pieces share."
    )
    watch_interval_s: float | None = Field(
        10.0, gt=0,
        description="How often the folders are checked for changes (a changed collection is "
        "rebuilt in the background and swapped in); null: only at startup.",
    )
    threads: int = Field(1, ge=1, le=16, description="onnxruntime threads of the embedder.")

    @field_validator("collections")
    @classmethod
    def _names(cls, value: dict[str, CollectionConfig]) -> dict[str, CollectionConfig]:
        for name in value:
            if not NAME_PATTERN.match(name):
                raise ValueError(
                    f"collection name {name!r}: lowercase letters, digits, - and _ (at most 64)"
                )
        return value

    @model_validator(mode="after")
    def _defaults_known(self) -> KnowledgeConfig:
        unknown = [n for n in self.default_collections or [] if n not in self.collections]
        if unknown:
            raise ValueError(f"default_collections names unknown collections: {unknown}")
        if self.overlap_chars >= self.passage_chars:
            raise ValueError("overlap_chars must be smaller than passage_chars")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.collections)

    def scope(self, requested: list[str] | None) -> tuple[list[str], list[str]]:
        """The collections one job may use, and the requested names refused. ``requested``
        comes from the job's metadata; it can only pick among configured collections."""
        if requested is None:
            names = (
                list(self.default_collections) if self.default_collections is not None
                else list(self.collections)
            )
            return names, []
        allowed = [n for n in dict.fromkeys(requested) if n in self.collections]
        refused = [n for n in requested if n not in self.collections]
        return allowed, refused
