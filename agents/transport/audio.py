"""Audio plumbing shared by both transports."""

from __future__ import annotations

from livekit import rtc

from agents.transport.base import INBOUND_SAMPLE_RATE


class FrameChunker:
    """Cuts a stream of int16 mono PCM into exact 10 ms frames (what the pipeline and
    ``rtc.AudioProcessingModule`` expect)."""

    __slots__ = ("_buf", "_frame_bytes", "sample_rate", "samples_per_frame")

    def __init__(self, *, sample_rate: int = INBOUND_SAMPLE_RATE) -> None:
        self.sample_rate = sample_rate
        self.samples_per_frame = sample_rate // 100
        self._frame_bytes = self.samples_per_frame * 2
        self._buf = bytearray()

    def push(self, pcm: memoryview | bytes | bytearray) -> list[rtc.AudioFrame]:
        buf = self._buf
        buf += pcm if not isinstance(pcm, memoryview) else pcm.cast("B")
        n = self._frame_bytes
        if len(buf) < n:
            return []
        out: list[rtc.AudioFrame] = []
        start = 0
        while len(buf) - start >= n:
            # A bytearray slice is already a copy, and writable: rtc.AudioProcessingModule
            # processes it in place instead of copying a read-only buffer first.
            out.append(
                rtc.AudioFrame(buf[start:start + n], self.sample_rate, 1, self.samples_per_frame)
            )
            start += n
        del buf[:start]
        return out
