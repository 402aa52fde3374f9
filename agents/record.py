"""The job's record: what happened in the room, kept with the job and written as one JSON file.

The participant's :class:`JobRecorder` collects, as the job runs, the transcript (both sides:
every final ``transcript_chunk`` the agent published and every ``user_text`` turn, with
timestamps and speaker identities), the latest todo list, hand-offs, per-turn metrics and
timings. When the job ends, :meth:`JobRecorder.finish` returns the record (it goes into the
job's outcome, shown by ``GET /jobs/{id}``), and :func:`write_artifact` writes it to
``<artifacts_dir>/<job_id>.json`` (the id escaped by :func:`artifact_name`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from agents.messages import (
    AgentMetrics,
    Handoff,
    OutboundMessage,
    TodoList,
    TranscriptChunk,
    utc_now_iso,
)

if TYPE_CHECKING:
    from agents.resume import RecordCheckpoint

log = structlog.get_logger("agents.record")

LiveSink = Callable[[str, dict[str, Any]], None]
"""Where live events go while the job runs (:meth:`agents.job.JobReporter.event`)."""

MAX_TRANSCRIPT_ENTRIES = 5000
MAX_METRICS = 1000
MAX_TYPED_PENDING = 16
"""Typed turns per speaker awaiting their echo as a transcript chunk (older ones are let go)."""
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_MAX_STEM = 200
_MAX_COPIES = 1000


class JobRecorder:
    """Collects one job's record. Cheap: called from the participant on every message."""

    def __init__(
        self,
        *,
        job_id: str,
        room: str,
        job_type: str,
        agent_identity: str,
        live: LiveSink | None = None,
    ) -> None:
        self._t0 = time.monotonic()
        self._live = live
        self.job_id = job_id
        self._head: dict[str, Any] = {
            "job_id": job_id, "room": room, "job_type": job_type,
            "agent_identity": agent_identity, "started_at": utc_now_iso(),
        }
        self.transcript: list[dict[str, Any]] = []
        self.todo_list: list[dict[str, Any]] = []
        self.handoff: dict[str, Any] | None = None
        self.metrics: list[dict[str, Any]] = []
        self.timings: dict[str, float] = {}
        self.counters: dict[str, int] = {}
        self.speakers: set[str] = set()
        self.dropped_entries = 0
        self._typed: dict[str, list[dict[str, Any]]] = {}
        self.warnings: list[str] = []

    def mark(self, name: str) -> None:
        """Record when something happened, in ms since the job started (``connected`` ...)."""
        self.timings[f"{name}_ms"] = round((time.monotonic() - self._t0) * 1000, 1)

    def warn(self, problem: str) -> None:
        """Something the job worked around (ignored overrides ...); listed in ``warnings``."""
        if len(self.warnings) < 100:
            self.warnings.append(problem)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def user_text(self, speaker: str, text: str) -> None:
        entry = {
            "timestamp": utc_now_iso(), "participant_id": speaker, "role": "user",
            "source": "text", "text": text,
        }
        self._transcript_entry(entry)
        if self._live is not None:
            self._live("user_text", dict(entry))
        typed = self._typed.setdefault(speaker, [])
        typed.append(entry)
        del typed[:-MAX_TYPED_PENDING]

    def _echo_of_typed(self, speaker: str, text: str, transcript_id: str) -> bool:
        """A conversation publishes a typed turn back as the user's final transcript chunk;
        that chunk is the same utterance as the ``user_text`` entry, not a second one."""
        typed = self._typed.get(speaker)
        if not typed:
            return False
        for i, entry in enumerate(typed):
            if entry["text"].strip() == text.strip():
                entry["transcript_id"] = transcript_id
                del typed[: i + 1]
                return True
        return False

    def outbound(self, message: OutboundMessage, *, agent_identity: str) -> None:
        """Keep what matters of a message the agent published (and pass it on live)."""
        if self._live is not None:
            self._live(message.type, message.data.model_dump(mode="json", exclude_none=True))
        if isinstance(message, TranscriptChunk):
            d = message.data
            if d.is_final and not (
                d.participant_id != agent_identity
                and self._echo_of_typed(d.participant_id, d.text, d.transcript_id)
            ):
                self._transcript_entry({
                    "timestamp": d.timestamp, "participant_id": d.participant_id,
                    "role": "agent" if d.participant_id == agent_identity else "user",
                    "source": "speech", "text": d.text, "transcript_id": d.transcript_id,
                    "confidence": d.confidence,
                })
        elif isinstance(message, TodoList):
            self.todo_list = [item.model_dump() for item in message.data.items]
        elif isinstance(message, Handoff):
            self.handoff = message.data.model_dump()
        elif isinstance(message, AgentMetrics):
            if len(self.metrics) < MAX_METRICS:
                self.metrics.append(message.data.model_dump())
            else:
                self.dropped_entries += 1

    def _transcript_entry(self, entry: dict[str, Any]) -> None:
        if len(self.transcript) >= MAX_TRANSCRIPT_ENTRIES:
            self.dropped_entries += 1
            return
        self.transcript.append(entry)

    def checkpoint(self) -> dict[str, Any]:
        """What the room saw so far, for a failover checkpoint (:mod:`agents.resume`)."""
        return {"transcript": list(self.transcript), "todo_list": list(self.todo_list),
                "speakers": sorted(self.speakers), "handoff": self.handoff}

    def resume(self, saved: RecordCheckpoint) -> None:
        """Go on from an earlier leg's checkpoint: its transcript comes first."""
        self.transcript = [*saved.transcript, *self.transcript][:MAX_TRANSCRIPT_ENTRIES]
        self.todo_list = list(saved.todo_list)
        self.speakers.update(saved.speakers)
        if saved.handoff is not None and self.handoff is None:
            self.handoff = dict(saved.handoff)
        self.count("resumed_transcript_entries", len(saved.transcript))

    def finish(self, *, end_reason: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The complete, JSON-serialisable record."""
        self.mark("ended")
        record: dict[str, Any] = {
            **self._head,
            "ended_at": utc_now_iso(),
            "end_reason": end_reason,
            "duration_s": round(time.monotonic() - self._t0, 3),
            "timings": dict(self.timings),
            "speakers": sorted(self.speakers),
            "transcript": list(self.transcript),
            "todo_list": list(self.todo_list),
            "handoff": self.handoff,
            "metrics": list(self.metrics),
            "counters": dict(self.counters),
        }
        if self.dropped_entries:
            record["dropped_entries"] = self.dropped_entries
        if self.warnings:
            record["warnings"] = list(self.warnings)
        if extra:
            record["conversation"] = extra
        return record


def artifact_name(job_id: str) -> str:
    """An injective, filesystem-safe file stem for ``job_id``: ASCII letters, digits, ``_`` and
    ``-`` stay, every other byte of its UTF-8 becomes ``%XX`` (``%`` itself too), so two ids
    never share a name and no name holds ``/`` or ``.``. A stem past 200 characters keeps its
    start and ends in ``~`` and the id's SHA-256 (``~`` is never produced by the escaping)."""
    stem = "".join(
        chr(b) if chr(b) in _NAME_CHARS else f"%{b:02X}" for b in job_id.encode("utf-8")
    ) or "%"
    if len(stem) > _MAX_STEM:
        stem = stem[: _MAX_STEM - 65] + "~" + hashlib.sha256(job_id.encode("utf-8")).hexdigest()
    return stem


def artifact_path(directory: Path, job_id: str) -> Path:
    return directory / f"{artifact_name(job_id)}.json"


def write_artifact(directory: Path, record: dict[str, Any]) -> Path:
    """Write ``record`` to ``<directory>/<artifact_name(job_id)>.json`` atomically (the name is
    claimed with ``O_EXCL``, then filled from a temp file with a rename). A record is never
    overwritten: when the name is taken, the next free ``<name>.<n>.json`` is used. Raises
    ``OSError`` when the directory cannot be written."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = artifact_name(str(record.get("job_id", "job")))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f, ensure_ascii=False, indent=2, default=str)
        for n in range(_MAX_COPIES):
            path = directory / (f"{stem}.json" if n == 0 else f"{stem}.{n}.json")
            try:  # claim the name (fails if taken), then fill it atomically
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            except FileExistsError:
                continue
            os.replace(tmp, path)
            return path
        raise FileExistsError(f"{_MAX_COPIES} records named {stem} already exist")
    finally:
        Path(tmp).unlink(missing_ok=True)
