"""The job body the service runs per job: :func:`make_job_body`.

The service calls ``make_job_body(config)`` once at startup and then awaits
``body(spec, reporter)`` per admitted job. The body picks the room transport from
``spec.server_url``: ``local://...`` is the in-memory room of a :class:`MemoryHub` (only when
``config.room.allow_local_rooms`` is on), anything else is LiveKit.

Until a pipeline is plugged in (``conversation_factory``), the participant runs a
:class:`ListeningConversation`: it joins, announces itself, listens and records, and says nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from livekit import rtc

from agents.config import AgentConfig
from agents.job import JobBody, JobFailed, JobOutcome, JobReporter, JobSpec
from agents.participant import AgentParticipant, ConversationContext, ConversationFactory
from agents.transport.base import RoomTransport
from agents.transport.livekit import LiveKitTransport
from agents.transport.memory import LOCAL_SCHEME, MemoryHub, MemoryTransport, default_hub

__all__ = ["ListeningConversation", "default_hub", "make_job_body"]


class ListeningConversation:
    """A conversation that only listens: counts each speaker's frames and keeps text turns."""

    def __init__(self, context: ConversationContext | None = None) -> None:
        self.audio_frames: dict[str, int] = {}
        self.video_frames: dict[str, int] = {}
        self.text_turns: list[tuple[str, str]] = []
        self.speakers_left: list[str] = []
        self._stop: asyncio.Future[str] | None = None
        self._end_reason: str | None = None

    def push_audio(self, speaker: str, frame: rtc.AudioFrame) -> None:
        self.audio_frames[speaker] = self.audio_frames.get(speaker, 0) + 1

    def push_text(self, speaker: str, text: str) -> None:
        self.text_turns.append((speaker, text))

    def push_video(self, speaker: str, source: str, frame: rtc.VideoFrame) -> None:
        key = f"{speaker}/{source}"
        self.video_frames[key] = self.video_frames.get(key, 0) + 1

    def speaker_left(self, speaker: str) -> None:
        self.speakers_left.append(speaker)

    def end(self, reason: str) -> None:
        """End the conversation on its own (tests and the demo use this)."""
        if self._end_reason is None:
            self._end_reason = reason
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(reason)

    async def run(self) -> str:
        if self._end_reason is not None:
            return self._end_reason
        self._stop = asyncio.get_running_loop().create_future()
        return await self._stop

    def record(self) -> dict[str, Any]:
        return {
            "kind": "listening",
            "audio_frames": dict(self.audio_frames),
            "video_frames": dict(self.video_frames),
            "text_turns": len(self.text_turns),
        }


def make_job_body(
    config: AgentConfig,
    *,
    hub: MemoryHub | None = None,
    conversation_factory: ConversationFactory | None = None,
    output_sample_rate: int | None = None,
) -> JobBody:
    """The job body for the service. ``hub`` holds the ``local://`` rooms (default:
    :func:`default_hub`); ``conversation_factory`` builds each job's conversation (default: a
    :class:`ListeningConversation`); ``output_sample_rate`` overrides
    ``config.room.output_sample_rate`` with the speech engine's rate."""
    factory: ConversationFactory = conversation_factory or ListeningConversation

    async def body(spec: JobSpec, reporter: JobReporter) -> JobOutcome:
        transport_factory: Any
        if spec.server_url.startswith(LOCAL_SCHEME):
            if not config.room.allow_local_rooms:
                raise JobFailed(
                    "local:// rooms are disabled (set agent.room.allow_local_rooms for "
                    "development)"
                )
            rooms = hub or default_hub()

            def transport_factory() -> RoomTransport:
                return MemoryTransport(hub=rooms)
        elif spec.server_url.startswith(("ws://", "wss://", "http://", "https://")):
            signal_timeout = config.room.connect_timeout

            def transport_factory() -> RoomTransport:
                return LiveKitTransport(signal_timeout=signal_timeout)
        else:
            raise JobFailed(f"unsupported server url scheme: {spec.server_url.split(':')[0]!r}")
        participant = AgentParticipant(
            spec=spec, config=config, reporter=reporter, transport_factory=transport_factory,
            conversation_factory=factory, output_sample_rate=output_sample_rate,
        )
        return await participant.run()

    return body
