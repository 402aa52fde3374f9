"""The service's approved knowledge: every configured collection, loaded once, kept current.

:class:`KnowledgeBase` is built with the agent (a missing ``knowledge`` extra refuses startup),
loads or builds each collection's index in ``prewarm`` and then watches the folders: a changed
collection is rebuilt in a worker thread and swapped in whole, so a turn always searches one
consistent index. :class:`JobKnowledge` is one job's view: only the collections in its scope.
Retrieval embeds the turn's text and searches the job's collections in a worker thread (the
event loop keeps serving audio meanwhile); no model round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from agents.knowledge.config import KnowledgeConfig
from agents.knowledge.embedder import Embedder, check_installed
from agents.knowledge.index import CollectionIndex, Hit, load_or_build
from agents.knowledge.passages import folder_signature

log = structlog.get_logger("agents.knowledge")

CONTEXT_HEADER = (
    "Approved knowledge for this turn. Where it answers the caller, answer from it and do not "
    "contradict it; do not read the source names aloud unless asked."
)


@dataclass(frozen=True, slots=True)
class Retrieval:
    """What one turn retrieved: the passages put into the context and the time it took."""

    hits: list[Hit] = field(default_factory=list)
    ms: float = 0.0

    def context(self) -> str:
        """The system-message block for the model ("" when nothing passed the threshold)."""
        if not self.hits:
            return ""
        lines = [CONTEXT_HEADER]
        for i, hit in enumerate(self.hits, start=1):
            lines.append(f"[{i}] ({hit.collection}: {hit.source})\n{hit.text}")
        return "\n\n".join(lines)

    def summary(self) -> dict[str, Any]:
        """For ``agent_metrics`` and the job record: which passages, from where, how long."""
        return {
            "retrieval_ms": self.ms,
            "passages": [
                {"collection": h.collection, "source": h.source, "score": h.score}
                for h in self.hits
            ],
        }


class KnowledgeBase:
    """Service-wide. ``prewarm`` loads the indexes and starts the watcher; ``aclose`` stops it."""

    def __init__(self, *, config: KnowledgeConfig, embedder: Embedder | None = None) -> None:
        check_installed()
        self.config = config
        self._embedder: Embedder | None = embedder  # loaded in prewarm when not given
        self._indexes: dict[str, CollectionIndex] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._ready: asyncio.Lock | None = None
        self._closed = False

    @property
    def collections(self) -> dict[str, CollectionIndex]:
        return dict(self._indexes)

    async def prewarm(self) -> None:
        """Load the embedder and every collection (built when its index is missing or stale)."""
        if self._ready is None:
            self._ready = asyncio.Lock()
        async with self._ready:
            if self._embedder is None:
                self._embedder = await asyncio.to_thread(Embedder, threads=self.config.threads)
            for name in self.config.collections:
                if name not in self._indexes:
                    await self._rebuild(name)
        if (self._watcher is None and self.config.watch_interval_s is not None
                and not self._closed):
            self._watcher = asyncio.create_task(self._watch(), name="knowledge-watcher")

    async def check_changes(self) -> list[str]:
        """Rebuild every collection whose folder changed; return their names."""
        changed = []
        for name, cfg in self.config.collections.items():
            current = self._indexes.get(name)
            signature = await asyncio.to_thread(folder_signature, cfg.path)
            if current is None or current.signature != signature:
                await self._rebuild(name)
                changed.append(name)
        return changed

    async def _rebuild(self, name: str) -> None:
        assert self._embedder is not None
        cfg = self.config.collections[name]
        try:
            index = await asyncio.to_thread(
                load_or_build, name, cfg.path, config=self.config, embedder=self._embedder
            )
        except Exception:  # a broken collection is logged; the others and the calls go on
            log.exception("knowledge_index_failed", collection=name)
            return
        self._indexes[name] = index

    async def _watch(self) -> None:
        interval = self.config.watch_interval_s
        assert interval is not None
        while True:
            await asyncio.sleep(interval)
            try:
                changed = await self.check_changes()
            except Exception:  # noqa: BLE001 (keep watching)
                log.exception("knowledge_watch_failed")
                continue
            if changed:
                log.info("knowledge_collections_rebuilt", collections=changed)

    def for_job(self, requested: list[str] | None, *, job_id: str) -> JobKnowledge | None:
        """One job's scope: metadata may pick among the configured collections, never more."""
        names, refused = self.config.scope(requested)
        if refused:
            log.warning("knowledge_collections_refused", job_id=job_id, collections=refused[:20])
        return JobKnowledge(base=self, collections=names) if names else None

    def retrieve_sync(self, text: str, collections: list[str]) -> Retrieval:
        """Embed ``text`` and return the best passages of ``collections`` (blocking)."""
        started = time.perf_counter()
        embedder = self._embedder
        indexes = [self._indexes[n] for n in collections if n in self._indexes]
        if embedder is None or not text.strip() or not any(len(i) for i in indexes):
            return Retrieval(ms=round((time.perf_counter() - started) * 1000, 2))
        vector = embedder.embed_one(text)
        k, floor = self.config.top_k, self.config.min_score
        hits = [h for index in indexes for h in index.search(vector, k) if h.score >= floor]
        hits.sort(key=lambda h: h.score, reverse=True)
        return Retrieval(hits=hits[:k], ms=round((time.perf_counter() - started) * 1000, 2))

    async def aclose(self) -> None:
        self._closed = True
        task, self._watcher = self._watcher, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class JobKnowledge:
    """One job's retriever over the collections in its scope."""

    def __init__(self, *, base: KnowledgeBase, collections: list[str]) -> None:
        self._base = base
        self.collections = list(collections)

    async def retrieve(self, text: str) -> Retrieval:
        return await asyncio.to_thread(self._base.retrieve_sync, text, self.collections)
