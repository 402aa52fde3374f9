"""Simulated participants of the in-memory room (:mod:`agents.transport.memory`): users (or
other agents) that publish microphone audio, video and data, and hear what agents publish."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from livekit import rtc

from agents.messages import OutboundMessage, parse_outbound
from agents.transport.base import RemoteInfo, is_agent_participant

if TYPE_CHECKING:
    from agents.transport.memory import MemoryRoom


@dataclass(frozen=True, slots=True)
class ReceivedData:
    sender: str
    topic: str
    payload: bytes


class SimulatedParticipant:
    """A simulated user (or a second agent, by ``kind``) in a :class:`MemoryRoom`."""

    def __init__(
        self, *, room: MemoryRoom, identity: str, name: str, kind: int, metadata: str
    ) -> None:
        self.room = room
        self.identity = identity
        self.info = RemoteInfo(identity=identity, name=name,
                               is_agent=is_agent_participant(identity, kind), metadata=metadata)
        self.audio_published = False
        self.received: list[ReceivedData] = []
        self._received_changed = asyncio.Event()
        self._listeners: dict[str, _TrackListener] = {}
        self.left = False

    # microphone
    def publish_audio(self) -> None:
        """Publish a microphone track (``track_published``, then ``track_subscribed`` for every
        agent that listens to this participant)."""
        self._check_present()
        if not self.audio_published:
            self.audio_published = True
            self.room._sim_published(self)

    def unpublish_audio(self) -> None:
        if self.audio_published and not self.left:
            self.audio_published = False
            self.room._sim_unpublished(self)

    def push_audio(self, frame: rtc.AudioFrame) -> None:
        """One microphone frame, mono, at any rate (a browser sends 48 kHz)."""
        self._check_present()
        if not self.audio_published:
            raise RuntimeError("publish_audio() first")
        if frame.num_channels != 1:
            raise ValueError("simulated microphones are mono")
        self.room._sim_audio(self, frame)

    # camera / screen share
    def push_video(self, frame: rtc.VideoFrame, *, source: str = "camera") -> None:
        """One decoded video frame from the camera or a screen share; agents connected with
        ``video=True`` that listen to this participant receive it."""
        self._check_present()
        if source not in ("camera", "screen_share"):
            raise ValueError(f"unknown video source {source!r}")
        self.room._sim_video(self, source, frame)

    def unpublish_video(self, *, source: str = "camera") -> None:
        """The camera (or screen share) is unpublished: agents that received its frames are
        told the track ended. Frames pushed after this still arrive, as libwebrtc's few late
        frames after an unpublish do."""
        self._check_present()
        self.room._sim_video_ended(self, source)

    # data
    def send_data(self, payload: bytes | str, *, topic: str = "") -> None:
        self._check_present()
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        self.room._sim_data(self, data, topic)

    def messages(self) -> list[OutboundMessage]:
        """What agents sent, parsed as a client would."""
        return [parse_outbound(r.payload) for r in self.received]

    async def wait_for_message(
        self, type_: str, *, where: Callable[[Any], bool] | None = None
    ) -> OutboundMessage:
        """The first received message of ``type_`` (matching ``where``), waiting if needed.
        Bound it with ``asyncio.timeout``."""
        while True:
            for m in self.messages():
                if m.type == type_ and (where is None or where(m)):
                    return m
            self._received_changed.clear()
            await self._received_changed.wait()

    # the agent's audio
    def listen_to(self, agent_identity: str) -> _TrackListener:
        """Subscribe to an agent's published audio (frames are read through a real
        ``rtc.AudioStream`` on its track); see :class:`_TrackListener` for the counters."""
        track = self.room.agent_audio_track(agent_identity)
        if track is None:
            raise LookupError(f"{agent_identity} has no published audio track")
        listener = self._listeners.get(agent_identity)
        if listener is None:
            listener = self._listeners[agent_identity] = _TrackListener(track=track)
        return listener

    def leave(self) -> None:
        """Leave the room (``track_unsubscribed`` then ``participant_disconnected``)."""
        if not self.left:
            self.left = True
            self.room._sim_left(self)

    async def aclose(self) -> None:
        self.leave()
        for listener in list(self._listeners.values()):
            await listener.aclose()
        self._listeners.clear()

    def _check_present(self) -> None:
        if self.left:
            raise RuntimeError(f"{self.identity} has left the room")

    def _received_data(self, data: ReceivedData) -> None:
        self.received.append(data)
        self._received_changed.set()

    async def _agent_gone(self, agent_identity: str) -> None:
        listener = self._listeners.pop(agent_identity, None)
        if listener is not None:
            await listener.aclose()


class _TrackListener:
    """Reads an agent's track at 48 kHz and counts frames: all, and those carrying sound."""

    def __init__(self, *, track: rtc.LocalAudioTrack) -> None:
        self.frames = 0
        self.voiced_frames = 0
        self._voiced = asyncio.Event()
        self._stream = rtc.AudioStream.from_track(track=track, sample_rate=48000, num_channels=1)
        self._task = asyncio.create_task(self._read(), name="memory.sim.listen")
        self._closed = False

    async def _read(self) -> None:
        async for event in self._stream:
            self.frames += 1
            if any(event.frame.data):
                self.voiced_frames += 1
                self._voiced.set()

    async def wait_for_voiced(self, count: int) -> None:
        """Wait until ``count`` frames carrying sound were heard (bound it with a timeout)."""
        while self.voiced_frames < count:
            self._voiced.clear()
            await self._voiced.wait()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._stream.aclose()
