"""One collection's passages and their vector index (usearch HNSW, cosine), kept on disk.

Layout under ``<index_dir>/<collection>/``: ``passages.json`` (source and text of every
passage), ``vectors.usearch`` (the index; key = passage number) and ``manifest.json`` (the
folder signature, the embedding model and the splitting settings the index was built with).
Files are replaced atomically and the manifest is written last, so a build cut short leaves an
index that is rebuilt at the next start, never one that is half read.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from agents.knowledge.config import KnowledgeConfig
from agents.knowledge.embedder import Embedder, Vectors
from agents.knowledge.passages import Passage, folder_signature, read_passages

log = structlog.get_logger("agents.knowledge")


@dataclass(frozen=True, slots=True)
class Hit:
    collection: str
    source: str
    text: str
    score: float


class CollectionIndex:
    """Read-only once built; a rebuild makes a new object that replaces this one."""

    def __init__(
        self, *, name: str, signature: str, passages: list[Passage], index: Any
    ) -> None:
        self.name = name
        self.signature = signature
        self.passages = passages
        self._index = index

    def __len__(self) -> int:
        return len(self.passages)

    def search(self, vector: Vectors, k: int) -> list[Hit]:
        if not self.passages:
            return []
        matches = self._index.search(vector, count=min(k, len(self.passages)), threads=1)
        return [
            Hit(collection=self.name, source=self.passages[int(key)].source,
                text=self.passages[int(key)].text, score=round(1.0 - float(dist), 4))
            for key, dist in zip(matches.keys, matches.distances, strict=True)
        ]


def new_index(vectors: Vectors) -> Any:
    """A usearch index over ``vectors`` (keys 0..n-1)."""
    from usearch.index import Index

    index = Index(ndim=vectors.shape[1] if vectors.size else 384, metric="cos", dtype="f32")
    if len(vectors):
        index.add(np.arange(len(vectors), dtype=np.uint64), vectors, threads=1)
    return index


def _settings(config: KnowledgeConfig, embedder: Embedder) -> dict[str, Any]:
    return {"model": embedder.model_id, "passage_chars": config.passage_chars,
            "overlap_chars": config.overlap_chars, "format": 1}


def load_or_build(
    name: str, root: Path, *, config: KnowledgeConfig, embedder: Embedder
) -> CollectionIndex:
    """The collection's index: loaded from disk when its manifest matches the folder and the
    settings, else built (and saved). Blocking: run it in a thread."""
    directory = config.index_dir / name
    signature = folder_signature(root)
    settings = _settings(config, embedder)
    loaded = _load(name, directory, signature, settings)
    if loaded is not None:
        log.info("knowledge_index_loaded", collection=name, passages=len(loaded))
        return loaded
    started = time.monotonic()
    if not root.is_dir():
        log.warning("knowledge_folder_missing", collection=name, path=str(root))
    passages = read_passages(
        root, passage_chars=config.passage_chars, overlap_chars=config.overlap_chars
    )
    vectors = embedder.embed([f"{p.source}: {p.text}" for p in passages])
    index = new_index(vectors)
    _save(directory, signature, settings, passages, index)
    log.info("knowledge_index_built", collection=name, passages=len(passages),
             seconds=round(time.monotonic() - started, 2))
    return CollectionIndex(name=name, signature=signature, passages=passages, index=index)


def _load(
    name: str, directory: Path, signature: str, settings: dict[str, Any]
) -> CollectionIndex | None:
    manifest_path = directory / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("signature") != signature or manifest.get("settings") != settings:
            return None
        rows = json.loads((directory / "passages.json").read_text(encoding="utf-8"))
        passages = [Passage(source=str(r["source"]), text=str(r["text"])) for r in rows]
        if len(passages) != manifest.get("passages"):
            return None
        if passages:
            from usearch.index import Index

            index = Index.restore(str(directory / "vectors.usearch"))
            if index is None or len(index) != len(passages):
                return None
        else:
            index = new_index(np.zeros((0, 384), dtype=np.float32))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        log.warning("knowledge_index_unreadable", collection=name, error=str(e)[:200])
        return None
    return CollectionIndex(name=name, signature=signature, passages=passages, index=index)


def _save(
    directory: Path, signature: str, settings: dict[str, Any], passages: list[Passage],
    index: Any,
) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "manifest.json").unlink(missing_ok=True)  # invalid until all is written
        rows = [{"source": p.source, "text": p.text} for p in passages]
        _write_atomic(directory / "passages.json", json.dumps(rows, ensure_ascii=False))
        if passages:
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".usearch")
            os.close(fd)
            index.save(tmp)
            os.replace(tmp, directory / "vectors.usearch")
        manifest = {"signature": signature, "settings": settings, "passages": len(passages)}
        _write_atomic(directory / "manifest.json", json.dumps(manifest))
    except OSError as e:  # the index still serves from memory; it is rebuilt next start
        log.warning("knowledge_index_not_saved", directory=str(directory), error=str(e)[:200])


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
