"""Frames, a clock and fakes for the vision tests. The fakes subclass the real bases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import cv2
import numpy as np
from livekit import rtc
from prometheus_client import CollectorRegistry

from agents.messages import OutboundMessage
from agents.providers.base import LLM, CallPolicy, ChatRequest, LLMEvent, TextDelta
from agents.providers.errors import ProviderError
from agents.vision.metrics import VisionMetrics

RED = (220, 30, 30)
GREEN = (30, 200, 40)
BLUE = (30, 40, 220)
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)


def image(colour: tuple[int, int, int], w: int = 1280, h: int = 720) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = colour
    return img


def text_image(text: str, w: int = 1280, h: int = 720) -> np.ndarray:
    img = image(WHITE, w, h)
    scale = 4.0 * w / 1280
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 10)
    org = ((w - tw) // 2, (h + th) // 2)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, BLACK, 10, cv2.LINE_AA)
    return img


def _planes(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BT.601 Y at full size, U and V at half size rounded up (odd sizes padded)."""
    h, w = rgb.shape[:2]
    padded = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    yuv = cv2.cvtColor(padded, cv2.COLOR_RGB2YUV_I420)
    ph, pw = padded.shape[:2]
    y = np.ascontiguousarray(yuv[:ph][:h, :w])
    chroma = yuv[ph:].ravel()
    n = (ph // 2) * (pw // 2)
    u = chroma[:n].reshape(ph // 2, pw // 2)
    v = chroma[n:].reshape(ph // 2, pw // 2)
    return y, u, v


def frame(rgb: np.ndarray, kind: str = "I420") -> rtc.VideoFrame:
    """A real ``rtc.VideoFrame`` of ``rgb`` in the buffer layout ``kind``."""
    h, w = rgb.shape[:2]
    t = rtc.VideoBufferType
    y, u, v = _planes(rgb)
    if kind == "I420":
        return rtc.VideoFrame(w, h, t.I420, y.tobytes() + u.tobytes() + v.tobytes())
    if kind == "NV12":
        uv = np.stack([u, v], axis=2)
        return rtc.VideoFrame(w, h, t.NV12, y.tobytes() + uv.tobytes())
    if kind == "I444":
        up = [cv2.resize(c, (w, h), interpolation=cv2.INTER_NEAREST) for c in (u, v)]
        return rtc.VideoFrame(w, h, t.I444, y.tobytes() + up[0].tobytes() + up[1].tobytes())
    if kind == "I422":
        up = [cv2.resize(c, ((w + 1) // 2, h), interpolation=cv2.INTER_NEAREST) for c in (u, v)]
        return rtc.VideoFrame(w, h, t.I422, y.tobytes() + up[0].tobytes() + up[1].tobytes())
    if kind == "I010":
        words = np.concatenate([c.ravel() for c in (y, u, v)]).astype("<u2") << 2
        return rtc.VideoFrame(w, h, t.I010, words.tobytes())
    if kind == "RGB24":
        return rtc.VideoFrame(w, h, t.RGB24, rgb.tobytes())
    rgba = cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)
    order = {"RGBA": [0, 1, 2, 3], "BGRA": [2, 1, 0, 3], "ARGB": [3, 0, 1, 2],
             "ABGR": [3, 2, 1, 0]}[kind]
    return rtc.VideoFrame(w, h, getattr(t, kind), np.ascontiguousarray(rgba[:, :, order]).tobytes())


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def metrics() -> VisionMetrics:
    return VisionMetrics(registry=CollectorRegistry())


def mean_colour(jpeg: bytes) -> tuple[float, float, float]:
    rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR),
                       cv2.COLOR_BGR2RGB)
    r, g, b = rgb.reshape(-1, 3).mean(axis=0)
    return float(r), float(g), float(b)


class FakeVisionLLM(LLM):
    """Answers with a scripted text; records every request; can be held on a gate or fail."""

    supports_vision = True

    def __init__(self, *, answer: str = "Something changed.", name: str = "fake-vision") -> None:
        super().__init__(name=name, policy=CallPolicy(timeout=5, attempts=1))
        self.answer = answer
        self.requests: list[ChatRequest] = []
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()
        self.error: ProviderError | None = None

    async def _chat_impl(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        self.requests.append(request)
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        for word in self.answer.split(" "):
            yield TextDelta(word + " ")


class FakeSpeech:
    """The voice pipeline's ``busy``/``say`` as the vision pipeline sees them."""

    def __init__(self) -> None:
        self.is_busy = False
        self.said: list[tuple[str, str]] = []
        self.result = True

    def busy(self) -> bool:
        return self.is_busy

    async def say(self, text: str, *, kind: str = "vision") -> bool:
        self.said.append((text, kind))
        return self.result


class RecordingMessages:
    def __init__(self) -> None:
        self.sent: list[OutboundMessage] = []
        self._changed = asyncio.Event()

    async def publish(self, message: OutboundMessage) -> None:
        self.sent.append(message)
        self._changed.set()

    async def wait_count(self, type_: str, count: int) -> None:
        while len(self.of_type(type_)) < count:
            self._changed.clear()
            await self._changed.wait()

    def of_type(self, type_: str) -> list[OutboundMessage]:
        return [m for m in self.sent if m.type == type_]
