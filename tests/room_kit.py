"""Helpers for the room, participant and transport tests (not a test module)."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from livekit import rtc

from agents.job import JobSpec, JobType, RunningState
from agents.transport.base import RemoteInfo, RoomListener
from agents.transport.token import mint_agent_token

API_KEY = "devkey"
API_SECRET = "devsecret-devsecret-devsecret-0123"


def make_token(room: str, identity: str, *, ttl: float = 3600) -> str:
    return mint_agent_token(api_key=API_KEY, api_secret=API_SECRET, room=room,
                            identity=identity, ttl=ttl)


def make_spec(
    *,
    job_type: JobType = "JT_ROOM",
    room: str = "room-1",
    target: str | None = None,
    url: str = "local://test",
    metadata: str = "",
    token: str | None = None,
    job_id: str = "AJ_test1",
) -> JobSpec:
    identity = f"ai-agent-{job_id}"
    return JobSpec(
        job_id=job_id, dispatch_id="AD_1", job_type=job_type, room_name=room,
        participant_identity=target, metadata=metadata, server_url=url,
        access_token=token if token is not None else make_token(room, identity),
        agent_identity=identity, agent_name="AI Assistant", agent_metadata='{"type":"ai"}',
    )


class RecordingReporter:
    """A JobReporter that keeps what it was told."""

    def __init__(self) -> None:
        self.states: list[tuple[RunningState, str | None]] = []
        self.records: dict[str, Any] = {}
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.checkpoints: list[dict[str, Any]] = []
        self.running = asyncio.Event()

    def state(self, state: RunningState, *, detail: str | None = None) -> None:
        self.states.append((state, detail))
        if state == "running":
            self.running.set()

    def record(self, key: str, value: Any) -> None:
        self.records[key] = value

    def event(self, kind: str, data: dict[str, Any]) -> None:
        self.events.append((kind, data))

    def checkpoint(self, state: dict[str, Any]) -> None:
        json.dumps(state)  # what a checkpoint must be: JSON, as the service stores it
        self.checkpoints.append(state)


def tone_frame(index: int, *, rate: int = 48000, freq: float = 220.0,
               amplitude: int = 8000) -> rtc.AudioFrame:
    """10 ms of a sine tone (speech-like level), continuous across ``index``."""
    n = rate // 100
    frame = rtc.AudioFrame.create(rate, 1, n)
    samples = frame.data
    start = index * n
    for i in range(n):
        samples[i] = int(amplitude * math.sin(2 * math.pi * freq * (start + i) / rate))
    return frame


def task_snapshot() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def settle(rounds: int = 5) -> None:
    """Let call_soon-delivered room events run."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class Harness:
    """One job body running against an in-memory room, with its conversation at hand."""

    def __init__(self, *, config_overrides: dict[str, Any] | None = None,
                 conversation_factory: Any = None) -> None:
        from agents.config import AgentConfig
        from agents.entry import ListeningConversation, make_job_body
        from agents.transport.memory import MemoryHub

        room_cfg = {"allow_local_rooms": True, "participant_wait": 30.0}
        cfg: dict[str, Any] = {"room": room_cfg}
        for key, value in (config_overrides or {}).items():
            if key == "room":
                room_cfg.update(value)
            else:
                cfg[key] = value
        self.config = AgentConfig.model_validate(cfg)
        self.hub = MemoryHub()
        self.reporter = RecordingReporter()
        self.conversations: list[Any] = []
        self.contexts: list[Any] = []
        inner = conversation_factory or ListeningConversation

        def factory(ctx: Any) -> Any:
            self.contexts.append(ctx)
            conv = inner(ctx)
            self.conversations.append(conv)
            return conv

        # A factory that declares its speech rate speaks: its track is published at the start.
        self.body = make_job_body(self.config, hub=self.hub, conversation_factory=factory,
                                  output_sample_rate=getattr(inner, "output_sample_rate", None))
        self.task: asyncio.Task[Any] | None = None

    def start(self, spec: JobSpec) -> asyncio.Task[Any]:
        self.task = asyncio.create_task(self.body(spec, self.reporter), name="test.job_body")
        return self.task

    async def running(self) -> None:
        async with asyncio.timeout(5):
            await self.reporter.running.wait()

    @property
    def conversation(self) -> Any:
        return self.conversations[-1]

    async def outcome(self) -> Any:
        assert self.task is not None
        async with asyncio.timeout(5):
            return await self.task


class AudioListener(RoomListener):
    """A room listener for tests that look at audio frames only: every other event is ignored.
    Subclasses override :meth:`audio_frame` (and whatever else they record)."""

    def participant_joined(self, info: RemoteInfo) -> None: ...
    def participant_left(self, identity: str) -> None: ...
    def audio_track_subscribed(self, identity: str) -> None: ...
    def audio_track_unsubscribed(self, identity: str) -> None: ...
    def audio_frame(self, identity: str, frame: rtc.AudioFrame) -> None: ...
    def video_frame(self, identity: str, source: str, frame: rtc.VideoFrame) -> None: ...
    def data_received(self, identity: str | None, topic: str, payload: bytes) -> None: ...
    def connection_changed(self, state: Any) -> None: ...
    def disconnected(self, cause: Any, detail: str) -> None: ...
