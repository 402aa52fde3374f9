"""Shared onnxruntime sessions for the embedded models.

Many agents run in one process on few cores, so every embedded model is loaded through here:

- thread counts are explicit (``intra_op_num_threads=threads``, one inter-op thread, sequential
  execution) and idle worker threads do not spin, so concurrent sessions share the cores instead
  of fighting over them;
- one session per ``(model file, threads)`` is shared by every provider instance that asks for
  it, for as long as one of them holds it (a weak cache: the last holder going away frees it).
  ``InferenceSession.run`` is thread-safe, so sharing is safe as long as callers keep their
  recurrent state in their own arrays (as :mod:`agents.providers.silero_vad` does).

onnxruntime is part of the optional ``embedded`` extra: without it, loading raises
:class:`~agents.providers.errors.ProviderUnavailable`.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import structlog

from agents.providers.errors import ProviderUnavailable

log = structlog.get_logger("agents.providers.onnx")

_lock = threading.Lock()
T = TypeVar("T")
_sessions: weakref.WeakValueDictionary[tuple[str, int], Any] = weakref.WeakValueDictionary()


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as e:  # pragma: no cover - depends on the installed extras
        raise ProviderUnavailable(
            "onnxruntime is not installed (install the 'embedded' extra)", provider="onnx"
        ) from e
    # The native default logger writes plain text to stderr: errors only (they surface as
    # exceptions, which the providers log as JSON).
    onnxruntime.set_default_logger_severity(3)
    return onnxruntime


def session_options(*, threads: int = 1) -> Any:
    """``onnxruntime.SessionOptions`` for a CPU-shared service: ``threads`` intra-op threads,
    one inter-op thread, sequential execution, no spin-waiting, full graph optimisation."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    ort = _ort()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle pool threads sleep instead of spinning: spinning burns a core per session.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3  # errors only
    # onnxruntime's per-session CPU arena stays on: neither plain malloc nor one arena shared
    # by all sessions held less in bench/bench_onnx_memory.py (docs/operations.md).
    return opts


def load_session(path: str | Path, *, threads: int = 1) -> Any:
    """The shared CPU ``InferenceSession`` for ``path`` with ``threads`` intra-op threads.

    Loads it on first use (blocking: call from a worker thread when the model is large).
    Raises :class:`ProviderUnavailable` if onnxruntime is missing, the file does not exist, or
    onnxruntime cannot load it.
    """
    resolved = Path(path).expanduser().resolve()

    def load() -> Any:
        if not resolved.is_file():
            raise ProviderUnavailable(f"model file not found: {resolved}", provider="onnx")
        return new_session(str(resolved), threads=threads, what=resolved.name)

    return shared_build(str(resolved), threads, load)


def shared_build(key: str, threads: int, build: Callable[[], T | None]) -> T | None:
    """What ``build()`` makes for ``(key, threads)``, made once and shared (a weak cache: the
    last holder going away frees it). :func:`load_session` keeps a model file's session here by
    its path; a provider that derives sessions in memory (e.g. one model split in two) keeps
    them under a key of its own. ``build`` runs under the cache's lock, so two providers never
    build the same thing at once. A None from ``build`` (nothing to make) is not kept."""
    with _lock:
        made = _sessions.get((key, threads))
        if made is None:
            made = build()
            if made is not None:
                _sessions[(key, threads)] = made
        return cast("T | None", made)


def new_session(model: str | bytes, *, threads: int = 1, what: str) -> Any:
    """A CPU ``InferenceSession`` (not shared) for a model file's path or a serialised model,
    with :func:`session_options`. Raises :class:`ProviderUnavailable` if onnxruntime is missing
    or cannot load it."""
    ort = _ort()
    try:
        session = ort.InferenceSession(
            model, sess_options=session_options(threads=threads),
            providers=["CPUExecutionProvider"],
        )
    except Exception as e:  # onnxruntime raises its own unexported exception types
        raise ProviderUnavailable(f"onnxruntime could not load {what}: {e}", provider="onnx") from e
    log.info("onnx_session_loaded", model=what, threads=threads)
    return session


def loaded_sessions() -> int:
    """How many shared sessions (and sets of sessions) are alive (for tests and metrics)."""
    with _lock:
        return len(_sessions)
