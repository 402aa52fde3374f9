"""The room transport: what the job's participant needs from a room, whatever the room is.

Two implementations behave the same way: :mod:`agents.transport.livekit` on ``livekit.rtc`` and
:mod:`agents.transport.memory`, a room inside the process for tests, the demo and benchmarks.

The transport reports what happens in the room to a :class:`RoomListener`, in LiveKit's order:
``participant_joined`` before that participant's ``audio_track_subscribed``, audio frames
only between ``audio_track_subscribed`` and ``audio_track_unsubscribed``, and
``audio_track_unsubscribed`` before ``participant_left``. Inbound audio arrives as 16 kHz mono
10 ms ``rtc.AudioFrame`` objects, and only from participants the ``wants_audio`` policy given to
:meth:`RoomTransport.connect` picks.
The agent's own data packets never come back to it.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from livekit import rtc

AGENT_IDENTITY_PREFIX = "ai-agent-"
INBOUND_SAMPLE_RATE = 16000
INBOUND_SAMPLES_PER_FRAME = INBOUND_SAMPLE_RATE // 100

DisconnectCause = Literal["room_closed", "disconnected"]


class TransportError(Exception):
    """A room operation failed. ``retryable`` says whether trying again may help."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class AttributesRefused(TransportError):
    """The server refused to set the participant's attributes (its token has no
    ``canUpdateOwnMetadata``): trying again cannot help."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, retryable=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class RemoteInfo:
    """A remote participant as the agent sees it."""

    identity: str
    name: str = ""
    is_agent: bool = False
    metadata: str = ""


def is_agent_participant(identity: str, kind: int) -> bool:
    """Agents are recognised by LiveKit's participant kind or by our identity prefix."""
    return kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT or identity.startswith(
        AGENT_IDENTITY_PREFIX
    )


WantsAudio = Callable[[RemoteInfo], bool]
"""Whose microphone the agent subscribes to (PROTOCOL.md §2)."""


class RoomListener(abc.ABC):
    """Receives the room's events. Called on the event loop; must not block."""

    @abc.abstractmethod
    def participant_joined(self, info: RemoteInfo) -> None: ...

    @abc.abstractmethod
    def participant_left(self, identity: str) -> None: ...

    @abc.abstractmethod
    def audio_track_subscribed(self, identity: str) -> None: ...

    @abc.abstractmethod
    def audio_track_unsubscribed(self, identity: str) -> None: ...

    @abc.abstractmethod
    def audio_frame(self, identity: str, frame: rtc.AudioFrame) -> None:
        """16 kHz mono audio, a whole number of 10 ms (the LiveKit transport hands on the
        SDK's ``sdk_frame_ms`` events, the in-memory one 10 ms frames; hot path)."""

    @abc.abstractmethod
    def video_frame(self, identity: str, source: str, frame: rtc.VideoFrame) -> None:
        """A decoded video frame (``source`` is ``camera`` or ``screen_share``); only when the
        transport was connected with ``video=True``."""

    def audio_gap(self, identity: str, ms: float) -> None:  # noqa: B027 - optional event
        """``ms`` of ``identity``'s audio were dropped (the process fell behind); the next
        frame is in real time again."""

    def audio_not_decoded(self, identity: str, packets: int) -> None:  # noqa: B027 - optional
        """``identity``'s microphone delivered ``packets`` RTP packets and not one decoded frame
        (the LiveKit transport checks a few seconds after the subscription): the agent cannot
        hear that speaker (docs/livekit.md#deaf-jobs)."""

    def video_track_ended(self, identity: str, source: str) -> None:  # noqa: B027 - optional
        """A video track that delivered frames was unpublished or unsubscribed; no more of its
        frames follow this call."""

    @abc.abstractmethod
    def data_received(self, identity: str | None, topic: str, payload: bytes) -> None:
        """A data packet; ``identity`` is ``None`` when the server sent it."""

    @abc.abstractmethod
    def connection_changed(self, state: Literal["reconnecting", "reconnected"]) -> None: ...

    def agent_audio_subscribed(self) -> None:  # noqa: B027 - optional event, no-op by default
        """A participant subscribed to the agent's audio track: someone can hear it now (LiveKit
        reports it for the track's first subscriber)."""

    @abc.abstractmethod
    def disconnected(self, cause: DisconnectCause, detail: str) -> None:
        """The room is gone for this participant (closed, or the connection was lost)."""


class RoomTransport(abc.ABC):
    """One agent's connection to one room. Use once: connect, work, :meth:`aclose`."""

    @abc.abstractmethod
    async def connect(
        self,
        *,
        url: str,
        token: str,
        listener: RoomListener,
        wants_audio: WantsAudio,
        video: bool = False,
    ) -> None:
        """Join the room. Raises :class:`TransportError`. The caller bounds it with a deadline,
        and cancelling it leaves nothing behind. With ``video``, the camera and screen-share
        tracks of the participants ``wants_audio`` picks are subscribed too."""

    @property
    @abc.abstractmethod
    def identity(self) -> str:
        """The agent's identity in the room (from its token)."""

    @abc.abstractmethod
    def remote_participants(self) -> list[RemoteInfo]:
        """Who is in the room now, besides the agent. Changes arrive as listener events."""

    @abc.abstractmethod
    async def publish_audio(self, *, sample_rate: int) -> TrackAudioOutput:
        """Publish the agent's one audio track, fed from an ``rtc.AudioSource``."""

    @abc.abstractmethod
    async def publish_data(
        self, payload: bytes, *, topic: str, destinations: list[str] | None = None
    ) -> None:
        """Send a reliable data packet to everyone else, or only to the ``destinations``
        identities. Raises :class:`TransportError`."""

    @abc.abstractmethod
    async def set_attributes(self, attributes: dict[str, str]) -> None:
        """Set the agent participant's attributes (merged with what it has; LiveKit broadcasts
        the change to the room at once). Raises :class:`TransportError`;
        :class:`AttributesRefused` when the server refuses it (the token lacks
        ``canUpdateOwnMetadata``)."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Unpublish, stop every reader, leave the room. Idempotent; never raises."""


class TrackAudioOutput:
    """The agent's published audio (an :class:`agents.io.AudioOutput`) over an ``rtc.AudioSource``.

    ``clear_queue`` drops everything queued at once, for barge-in."""

    def __init__(self, *, source: rtc.AudioSource, track: rtc.LocalAudioTrack) -> None:
        self._source = source
        self.track = track
        self._closed = False
        self.frames_captured = 0

    @property
    def sample_rate(self) -> int:
        return self._source.sample_rate

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        if self._closed:
            raise TransportError("audio output is closed", retryable=False)
        if frame.sample_rate != self._source.sample_rate or frame.num_channels != 1:
            raise ValueError(
                f"expected mono {self._source.sample_rate} Hz frames, got "
                f"{frame.num_channels} ch {frame.sample_rate} Hz"
            )
        try:
            await self._source.capture_frame(frame)
        except Exception as e:  # the SDK raises a bare Exception with the native error
            raise TransportError(f"audio capture failed: {e}", retryable=True) from e
        self.frames_captured += 1

    def clear_queue(self) -> None:
        if not self._closed:
            self._source.clear_queue()

    @property
    def queued_duration(self) -> float:
        return 0.0 if self._closed else self._source.queued_duration

    async def wait_for_playout(self) -> None:
        if not self._closed:
            await self._source.wait_for_playout()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._source.clear_queue()
        await self._source.aclose()
