"""The job body the service runs per job: :func:`make_job_body`.

The service calls ``make_job_body(config)`` once at startup and then awaits
``body(spec, reporter)`` per admitted job. The body picks the room transport from
``spec.server_url``: ``local://...`` is the in-memory room of a :class:`MemoryHub` (only when
``config.room.allow_local_rooms`` is on), anything else is LiveKit.

By default each job's conversation is the configured voice pipeline (and vision pipeline);
:class:`ListeningConversation` is a participant that only listens and records.
"""

from __future__ import annotations

import asyncio
from typing import Any

from livekit import rtc
from prometheus_client import CollectorRegistry

from agents.config import AgentConfig
from agents.job import JobFailed, JobOutcome, JobReporter, JobSpec
from agents.messages import todo_list
from agents.participant import AgentParticipant, ConversationContext, ConversationFactory
from agents.providers.errors import ProviderUnavailable
from agents.transport.backlog import AudioBacklog
from agents.transport.base import RoomTransport
from agents.transport.decode_watch import audio_pumps
from agents.transport.ffi_routing import AudioEventRouter
from agents.transport.livekit import LiveKitTransport
from agents.transport.memory import LOCAL_SCHEME, MemoryHub, MemoryTransport, default_hub
from agents.transport.native_logs import set_native_log_capture
from agents.transport.sdk_host import warn_about_host

__all__ = [
    "AgentJobBody", "AgentUnavailable", "ListeningConversation", "default_hub", "load_models",
    "make_job_body",
]

AgentUnavailable = ProviderUnavailable
"""What :func:`make_job_body` raises when a configured model or package is missing: the service
refuses to start with its message."""


class ListeningConversation:
    """A conversation that only listens: counts each speaker's frames and keeps text turns."""

    def __init__(self, context: ConversationContext | None = None) -> None:
        self._context = context
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
        await self.announce()
        return await self.wait_end()

    async def announce(self) -> None:
        """Publish the todo list on join, as the pipelines do (the conversation owns it)."""
        if self._context is not None:
            await self._context.messages.publish(
                todo_list(list(self._context.persona.todo_items))
            )

    async def wait_end(self) -> str:
        """Wait until :meth:`end` is called; return its reason."""
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


class AgentJobBody:
    """The :data:`~agents.job.JobBody` the service runs per job, plus the service-wide hooks
    ``prewarm`` (load models at startup) and ``aclose`` (release them at shutdown)."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        hub: MemoryHub | None,
        conversation_factory: ConversationFactory,
        output_sample_rate: int | None,
    ) -> None:
        self._config = config
        set_native_log_capture(config.room.native_log_capture)
        self._hub = hub
        self._factory = conversation_factory
        self._output_sample_rate = output_sample_rate or getattr(
            conversation_factory, "output_sample_rate", None
        )
        self._backlog = AudioBacklog()
        self._router = AudioEventRouter()
        self._deaf_jobs: list[str] = []

    @property
    def health_problem(self) -> str | None:
        """Why this replica should take no more jobs and be restarted (``None``: healthy): a job
        received its caller's audio and decoded none of it (``audio_not_decoded``) and the
        process has no audio pump (docs/livekit.md, "Deaf jobs"): every later job would be deaf
        too, and only a new process has a new one. While the pump runs, a job's report is about
        that job's track alone (whatever a caller sends), and the replica stays."""
        if not self._deaf_jobs or audio_pumps():  # None (no /proc): the reports are trusted
            return None
        return (f"audio_not_decoded: job {self._deaf_jobs[0]} receives audio and decodes none "
                f"({len(self._deaf_jobs)} job(s) so far) and the process has no audio pump; "
                "it cannot hear its callers")

    def _job_is_deaf(self, job_id: str) -> None:
        if job_id not in self._deaf_jobs:
            self._deaf_jobs.append(job_id)

    @property
    def audio_backlog_ms(self) -> float:
        """The worst audio backlog of any job's reader now (ms): the service's admission
        refuses new jobs above its limit."""
        return self._backlog.worst_ms

    @property
    def metrics_registries(self) -> tuple[CollectorRegistry, ...]:
        """The pipelines' Prometheus registries, for the service's ``/metrics``."""
        from agents.pipeline.trace import PIPELINE_REGISTRY
        from agents.vision.metrics import VISION_REGISTRY

        return (PIPELINE_REGISTRY, VISION_REGISTRY)

    async def prewarm(self) -> None:
        warn_about_host()
        prewarm = getattr(self._factory, "prewarm", None)
        if prewarm is not None:
            await prewarm()

    async def aclose(self) -> None:
        self._router.close()
        aclose = getattr(self._factory, "aclose", None)
        if aclose is not None:
            await aclose()

    async def __call__(self, spec: JobSpec, reporter: JobReporter) -> JobOutcome:
        config = self._config
        transport_factory: Any
        if spec.server_url.startswith(LOCAL_SCHEME):
            if not config.room.allow_local_rooms:
                raise JobFailed(
                    "local:// rooms are disabled (set agent.room.allow_local_rooms for "
                    "development)"
                )
            rooms = self._hub or default_hub()

            def transport_factory() -> RoomTransport:
                return MemoryTransport(hub=rooms)
        elif spec.server_url.startswith(("ws://", "wss://", "http://", "https://")):
            signal_timeout = config.room.connect_timeout
            max_backlog_ms = config.room.max_audio_backlog_ms
            sdk_frame_ms = config.room.sdk_frame_ms
            single_pc = config.room.single_peer_connection
            backlog = self._backlog
            router = self._router if config.room.route_audio_events else None

            def transport_factory() -> RoomTransport:
                return LiveKitTransport(signal_timeout=signal_timeout,
                                        max_backlog_ms=max_backlog_ms, backlog=backlog,
                                        router=router, sdk_frame_ms=sdk_frame_ms,
                                        single_peer_connection=single_pc)
        else:
            raise JobFailed(f"unsupported server url scheme: {spec.server_url.split(':')[0]!r}")
        participant = AgentParticipant(
            spec=spec, config=config, reporter=reporter, transport_factory=transport_factory,
            conversation_factory=self._factory, output_sample_rate=self._output_sample_rate,
            # A pipeline without text-to-speech declares no rate: its track is published only
            # if a frame comes (agents/transport/lazy_audio.py), since a silent track costs CPU.
            publish_audio_at_start=self._output_sample_rate is not None,
            on_audio_not_decoded=self._job_is_deaf,
        )
        return await participant.run()


def make_job_body(
    config: AgentConfig,
    *,
    hub: MemoryHub | None = None,
    conversation_factory: ConversationFactory | None = None,
    output_sample_rate: int | None = None,
) -> AgentJobBody:
    """The job body for the service. ``hub`` holds the ``local://`` rooms (default:
    :func:`default_hub`); ``conversation_factory`` builds each job's conversation (default: the
    configured pipelines, :class:`agents.conversation.AgentConversations`, which builds the
    providers now and loads their models in ``prewarm``; pass :class:`ListeningConversation`
    for a participant that only listens); ``output_sample_rate`` overrides
    ``config.room.output_sample_rate``."""
    if conversation_factory is None:
        from agents.conversation import AgentConversations

        conversation_factory = AgentConversations(config)
    return AgentJobBody(
        config, hub=hub, conversation_factory=conversation_factory,
        output_sample_rate=output_sample_rate,
    )


async def load_models(config: AgentConfig, *, every_provider: bool = False) -> list[str]:
    """Build and warm the providers the pipelines use and the end-of-turn model when configured
    (with ``every_provider``: every declared provider and the end-of-turn model), then close
    them; return their names. Unlike the service's start-up, a provider
    that fails to load raises (:class:`~agents.providers.errors.ProviderUnavailable`, or
    :class:`~agents.extras.MissingExtra` naming the extra): the image build runs this so a model
    that is missing fails the build rather than the pod."""
    from agents.extras import missing_extras, pipeline_extras
    from agents.pipeline.registry import ProviderRegistry

    pipeline = config.pipeline
    names = list(pipeline.providers) if every_provider else pipeline.nicknames_in_use()
    missing = missing_extras(pipeline_extras(pipeline, names))
    if missing is not None:
        raise missing
    if every_provider:  # the end-of-turn model too, whichever detector is configured
        turn = pipeline.turn.model_copy(update={"detector": "smart-turn"})
        pipeline = pipeline.model_copy(update={"turn": turn})
    registry = ProviderRegistry(config=pipeline)
    try:
        for name in names:
            await registry.get(name).prewarm()
        end_of_turn = registry.end_of_turn()
        if end_of_turn is not None:
            await end_of_turn.prewarm()
            names = [*names, end_of_turn.name]
    finally:
        await registry.aclose()
    return names
