"""The seam between the job's participant (room side) and the conversation (pipeline side).

The participant owns the room transport: it subscribes to the right people's audio and video,
turns inbound data packets into text turns, and publishes what the conversation produces. The
conversation (the voice pipeline, the vision pipeline, or a listen-only stand-in) sees only the
objects below; it never touches the transport, so the same pipeline runs in the in-memory room,
in a real LiveKit room, and in unit tests with plain fakes.

Audio frames are real ``livekit.rtc.AudioFrame`` objects: inbound 16 kHz mono int16 in 10 ms
frames, outbound at the speech engine's rate. Video frames are ``livekit.rtc.VideoFrame``.
"""

from __future__ import annotations

from typing import Any, Protocol

from livekit import rtc

from agents.messages import OutboundMessage


class AudioOutput(Protocol):
    """The agent's one published audio track."""

    @property
    def sample_rate(self) -> int: ...

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        """Queue a frame for playout; waits while the queue is full (backpressure)."""

    def clear_queue(self) -> None:
        """Drop everything queued at once (barge-in). Playout stops within one frame."""

    @property
    def queued_duration(self) -> float:
        """Seconds of audio queued and not yet played."""

    async def wait_for_playout(self) -> None:
        """Return when everything queued so far has been played (or cleared)."""


class MessageOutput(Protocol):
    """Publishes data messages to the room's clients (reliable, topic = message type)."""

    async def publish(self, message: OutboundMessage) -> None: ...


class Conversation(Protocol):
    """What the participant feeds. Push methods are called on the event loop and never block."""

    def push_audio(self, speaker: str, frame: rtc.AudioFrame) -> None:
        """One 16 kHz mono frame of ``speaker``'s microphone (hot path: every 10 ms each)."""

    def push_text(self, speaker: str, text: str) -> None:
        """A ``user_text`` turn from a client."""

    def push_video(self, speaker: str, source: str, frame: rtc.VideoFrame) -> None:
        """A video frame; ``source`` is ``camera`` or ``screen_share``."""

    def speaker_left(self, speaker: str) -> None:
        """``speaker`` left the room or stopped publishing: drop their pending state."""

    async def run(self) -> str:
        """Run until the conversation ends on its own (the call was ended, handed off, or its
        providers failed for good); return the end reason. The participant cancels this task
        when the job ends for another reason, and must then get ``CancelledError`` back."""
        ...

    def record(self) -> dict[str, Any]:
        """Extra, JSON-serialisable parts of the job record (per-turn traces, counters)."""
        ...


def is_busy(conversation: object) -> bool:
    """What a conversation's optional ``busy()`` says (someone speaking, a turn in flight);
    False for one without it."""
    busy = getattr(conversation, "busy", None)
    return bool(busy()) if callable(busy) else False


class WrappedConversation:
    """A conversation around another (``inner``): forwards every call, the optional ones
    (``busy``, ``audio_gap``, ``video_track_ended``) included; a subclass overrides what it
    adds."""

    def __init__(self, inner: Conversation) -> None:
        self._inner = inner

    def push_audio(self, speaker: str, frame: rtc.AudioFrame) -> None:
        self._inner.push_audio(speaker, frame)

    def push_text(self, speaker: str, text: str) -> None:
        self._inner.push_text(speaker, text)

    def push_video(self, speaker: str, source: str, frame: rtc.VideoFrame) -> None:
        self._inner.push_video(speaker, source, frame)

    def speaker_left(self, speaker: str) -> None:
        self._inner.speaker_left(speaker)

    def busy(self) -> bool:
        return is_busy(self._inner)

    def audio_gap(self, speaker: str, ms: float) -> None:
        gap = getattr(self._inner, "audio_gap", None)
        if gap is not None:
            gap(speaker, ms)

    def video_track_ended(self, speaker: str, source: str) -> None:
        ended = getattr(self._inner, "video_track_ended", None)
        if ended is not None:
            ended(speaker, source)

    async def run(self) -> str:
        return await self._inner.run()

    def record(self) -> dict[str, Any]:
        return self._inner.record()
