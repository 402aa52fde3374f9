"""The offline vision "model": honest image statistics and text reading, no recognition.

It measures brightness, contrast, dominant colours, sharpness and the change from the previous
image, and reads text with RapidOCR (``rapidocr-onnxruntime``, which ships its ONNX models).
It cannot tell what objects or people are in the picture, and says so when asked.
All image work runs in a worker thread; onnxruntime is limited to ``ocr_threads`` threads.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator
from typing import Any

from agents.providers.base import LLM, CallPolicy, ChatRequest, ImagePart, LLMEvent, TextDelta
from agents.providers.errors import ProviderError, ProviderUnavailable

try:
    from agents.vision import analysis
    from agents.vision.change import Thumb
    from agents.vision.convert import RGB, FrameError, decode_jpeg
except ImportError as _e:  # opencv-python-headless is the "vision" extra
    _IMPORT_ERROR: ImportError | None = _e
else:
    _IMPORT_ERROR = None

CAPABILITIES = (
    "I can read text and describe colours and brightness, but I cannot recognise objects."
)
NO_IMAGE = "I don't have a camera or screen image to look at right now."

_ASKS_RECOGNITION = re.compile(
    r"\b(see|seeing|look|looks|looking|object|objects|thing|things|holding|hold|wearing|"
    r"who|person|people|man|woman|face|animal|recogni[sz]e|identify|what(?:'s| is| are| am)"
    r"\s+(?:this|that|these|those|it|there|i|in))\b",
    re.IGNORECASE,
)
_ASKS_TEXT = re.compile(r"\b(read|text|written|write|says?|word|words|sign)\b", re.IGNORECASE)
_MAX_TEXT_CHARS = 300


class EmbeddedVisionLLM(LLM):
    """A vision-capable :class:`LLM` that describes what it can measure in the attached images
    of the last user message."""

    supports_vision = True

    def __init__(
        self,
        *,
        name: str = "embedded-vision",
        policy: CallPolicy | None = None,
        ocr: bool = True,
        ocr_threads: int = 1,
        ocr_min_score: float = 0.5,
        ocr_max_side: int = 1024,
    ) -> None:
        if _IMPORT_ERROR is not None:
            from agents.extras import MissingExtra

            raise MissingExtra({"vision": [f"provider {name!r}"]}) from _IMPORT_ERROR
        if ocr_threads < 1:
            raise ValueError("ocr_threads must be at least 1")
        super().__init__(name=name, policy=policy)
        self._ocr_enabled = ocr
        self._ocr_threads = ocr_threads
        self._ocr_min_score = ocr_min_score
        self._ocr_max_side = ocr_max_side
        self._ocr: Any = None
        self._ocr_lock = threading.Lock()
        self._previous: dict[str, Thumb] = {}

    async def _chat_impl(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        question, images = _last_user_turn(request)
        if _ASKS_RECOGNITION.search(question):
            yield TextDelta(CAPABILITIES + " ")
        if not images:
            yield TextDelta(NO_IMAGE)
            if not _ASKS_RECOGNITION.search(question):
                yield TextDelta(" " + CAPABILITIES)
            return
        asks_text = bool(_ASKS_TEXT.search(question))
        for i, image in enumerate(images):
            sentences = await asyncio.to_thread(self._look, image, asks_text)
            yield TextDelta((" " if i else "") + " ".join(sentences))

    # --- worker thread -----------------------------------------------------------------------

    def _look(self, image: ImagePart, asks_text: bool) -> list[str]:
        try:
            rgb = decode_jpeg(image.jpeg)
        except FrameError as e:
            raise ProviderError(f"image: {e}", provider=self.name, retryable=False) from e
        stats = analysis.analyse(rgb, self._previous.get(image.source))
        self._previous[image.source] = stats.thumb
        where = "screen share" if image.source == "screen_share" else "camera picture"
        out = [
            f"The {where} is {analysis.brightness_words(stats.brightness)}, "
            f"{analysis.colour_words(stats.colours)}, and {analysis.detail_words(stats)}."
        ]
        text = self._read_text(rgb) if self._ocr_enabled else None
        if text:
            out.append(f'I can read: "{text}".')
        elif asks_text:
            out.append(
                "I can't make out any text." if self._ocr_enabled
                else "Text reading is turned off."
            )
        motion = analysis.motion_words(stats.motion)
        if motion:
            out.append(motion)
        return out

    def _read_text(self, rgb: RGB) -> str:
        with self._ocr_lock:
            engine = self._engine()
            try:
                result, _elapsed = engine(rgb[:, :, ::-1].copy())
            except Exception as e:  # onnxruntime raises its own exception types
                raise ProviderError(f"text reading failed: {e}", provider=self.name) from e
        lines = [
            str(item[1]).strip() for item in (result or [])
            if float(item[2]) >= self._ocr_min_score and str(item[1]).strip()
        ]
        text = " / ".join(lines)
        if len(text) > _MAX_TEXT_CHARS:
            text = text[: _MAX_TEXT_CHARS].rsplit(" ", 1)[0] + " …"
        return text

    def _engine(self) -> Any:
        if self._ocr is None:
            try:
                from rapidocr_onnxruntime import RapidOCR
            except ImportError as e:
                raise ProviderUnavailable(
                    f"text reading needs rapidocr-onnxruntime: {e}", provider=self.name
                ) from e
            self._ocr = RapidOCR(
                intra_op_num_threads=self._ocr_threads, inter_op_num_threads=1,
                det_limit_side_len=self._ocr_max_side, det_limit_type="max",
            )
        return self._ocr


def _last_user_turn(request: ChatRequest) -> tuple[str, tuple[ImagePart, ...]]:
    """The last user message's text, and the images of the last user message that has any."""
    users = [m for m in request.messages if m.role == "user"]
    if not users:
        return "", ()
    with_images = [m for m in users if m.images]
    return users[-1].content, (with_images[-1].images if with_images else ())
