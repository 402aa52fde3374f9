"""A LiveKit-like room inside the process, for tests, the demo and benchmarks.

A :class:`MemoryHub` holds rooms by name. Simulated participants (:class:`SimulatedParticipant`)
join a room, publish 48 kHz microphone audio and data packets, and receive what agents publish.
The agent side is :class:`MemoryTransport`, a :class:`RoomTransport` like the LiveKit one: it
honours LiveKit's event order, delivers events on the event loop (never inside the caller's
stack), resamples each subscribed microphone to 16 kHz mono 10 ms frames with
``rtc.AudioResampler`` per subscription (as ``rtc.AudioStream`` does), and never delivers the
agent's own data back to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog
from livekit import rtc

from agents.transport.audio import FrameChunker
from agents.transport.base import (
    AttributesRefused,
    DisconnectCause,
    RemoteInfo,
    RoomListener,
    RoomTransport,
    TrackAudioOutput,
    TransportError,
    WantsAudio,
)
from agents.transport.simulated import ReceivedData, SimulatedParticipant
from agents.transport.token import read_token

__all__ = [
    "LOCAL_SCHEME", "MemoryHub", "MemoryRoom", "MemoryTransport", "ReceivedData",
    "SimulatedParticipant", "default_hub",
]

log = structlog.get_logger("agents.transport.memory")

LOCAL_SCHEME = "local://"


class MemoryHub:
    """Every in-memory room of the process, by name. Inject one per test; the service and the
    demo share :func:`default_hub`."""

    def __init__(self) -> None:
        self._rooms: dict[str, MemoryRoom] = {}

    def room(self, name: str) -> MemoryRoom:
        """The room called ``name``, created on first use (LiveKit creates rooms on join too)."""
        room = self._rooms.get(name)
        if room is None:
            room = self._rooms[name] = MemoryRoom(name=name, hub=self)
        return room

    def get(self, name: str) -> MemoryRoom | None:
        return self._rooms.get(name)

    def _forget(self, room: MemoryRoom) -> None:
        if self._rooms.get(room.name) is room:
            del self._rooms[room.name]


_default_hub: MemoryHub | None = None


def default_hub() -> MemoryHub:
    """The process-wide hub the service's ``local://`` rooms live in."""
    global _default_hub
    if _default_hub is None:
        _default_hub = MemoryHub()
    return _default_hub


class MemoryRoom:
    """One room: simulated participants and connected agent transports."""

    def __init__(self, *, name: str, hub: MemoryHub) -> None:
        self.name = name
        self._hub = hub
        self._sims: dict[str, SimulatedParticipant] = {}
        self._agents: dict[str, MemoryTransport] = {}
        self._changed = asyncio.Event()
        self.closed = False

    # --- what tests and the demo call ------------------------------------------------------

    def add_participant(
        self,
        identity: str,
        *,
        name: str = "",
        kind: int = rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD,
        metadata: str = "",
    ) -> SimulatedParticipant:
        """A simulated participant joins (``participant_connected`` for every agent)."""
        if self.closed:
            raise RuntimeError(f"room {self.name} is closed")
        if identity in self._sims or identity in self._agents:
            raise ValueError(f"identity {identity!r} is already in room {self.name}")
        sim = SimulatedParticipant(room=self, identity=identity, name=name, kind=kind,
                                   metadata=metadata)
        self._sims[identity] = sim
        for agent in self._agents.values():
            agent._remote_joined(sim.info)
        self._notify()
        return sim

    @property
    def agent_identities(self) -> list[str]:
        return list(self._agents)

    @property
    def participants(self) -> list[SimulatedParticipant]:
        return list(self._sims.values())

    async def wait_for_agents(self, count: int = 1) -> list[str]:
        """Wait until ``count`` agents are connected; returns their identities. Bound it with
        ``asyncio.timeout``."""
        await self._wait(lambda: len(self._agents) >= count)
        return self.agent_identities

    async def wait_for_no_agents(self) -> None:
        await self._wait(lambda: not self._agents)

    def agent_audio_track(self, identity: str) -> rtc.LocalAudioTrack | None:
        agent = self._agents.get(identity)
        return agent.published_track if agent is not None else None

    def agent_attributes(self, identity: str) -> dict[str, str]:
        """The attributes agent ``identity`` has set (empty when it is not here)."""
        agent = self._agents.get(identity)
        return dict(agent.attributes) if agent is not None else {}

    async def wait_for_agent_attribute(self, identity: str, key: str, value: str) -> None:
        """Wait until agent ``identity`` has set ``key`` to ``value``. Bound it with
        ``asyncio.timeout``."""
        await self._wait(lambda: self.agent_attributes(identity).get(key) == value)

    def simulate_reconnect(self, agent_identity: str) -> None:
        """The agent's connection drops and comes back (``reconnecting`` then ``reconnected``)."""
        agent = self._agents[agent_identity]
        agent._post(agent._listener_call("connection_changed", "reconnecting"))
        agent._post(agent._listener_call("connection_changed", "reconnected"))

    def simulate_undecoded_audio(self, agent_identity: str, speaker: str, packets: int) -> None:
        """The agent's SDK receives ``speaker``'s audio and decodes none of it (the LiveKit
        transport's decode watch reports ``audio_not_decoded``)."""
        agent = self._agents[agent_identity]
        agent._post(agent._listener_call("audio_not_decoded", speaker, packets))

    def drop_agent(self, agent_identity: str) -> None:
        """The agent's connection is lost for good (``disconnected``)."""
        agent = self._agents.get(agent_identity)
        if agent is not None:
            agent._lost("disconnected", "connection lost")

    async def close(self) -> None:
        """The room is deleted: agents get ``disconnected`` (room closed), everyone leaves."""
        if self.closed:
            return
        self.closed = True
        for agent in list(self._agents.values()):
            agent._lost("room_closed", "room deleted")
        for sim in list(self._sims.values()):
            await sim.aclose()
        self._sims.clear()
        self._hub._forget(self)
        self._notify()

    # --- internals --------------------------------------------------------------------------

    async def _wait(self, cond: Callable[[], bool]) -> None:
        while not cond():
            self._changed.clear()
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()

    def _agent_joined(self, agent: MemoryTransport) -> list[RemoteInfo]:
        if self.closed:
            raise TransportError(f"room {self.name} is closed", retryable=False)
        if agent.identity in self._agents or agent.identity in self._sims:
            raise TransportError(f"duplicate identity {agent.identity}", retryable=False)
        present = [s.info for s in self._sims.values()] + [a.info for a in self._agents.values()]
        for other in self._agents.values():
            other._remote_joined(agent.info)
        self._agents[agent.identity] = agent
        self._notify()
        return present

    def _published_audio(self) -> list[str]:
        return [s.identity for s in self._sims.values() if s.audio_published]

    async def _agent_left(self, agent: MemoryTransport) -> None:
        if self._agents.get(agent.identity) is not agent:
            return
        del self._agents[agent.identity]
        for sim in self._sims.values():
            await sim._agent_gone(agent.identity)
        for other in self._agents.values():
            other._remote_left(agent.identity, had_audio=False)
        self._notify()

    def _sim_published(self, sim: SimulatedParticipant) -> None:
        for agent in self._agents.values():
            agent._remote_track_published(sim.identity)

    def _sim_unpublished(self, sim: SimulatedParticipant) -> None:
        for agent in self._agents.values():
            agent._remote_track_unpublished(sim.identity)

    def _sim_audio(self, sim: SimulatedParticipant, frame: rtc.AudioFrame) -> None:
        for agent in self._agents.values():
            agent._remote_audio(sim.identity, frame)

    def _sim_video(self, sim: SimulatedParticipant, source: str, frame: rtc.VideoFrame) -> None:
        for agent in self._agents.values():
            agent._remote_video(sim.identity, source, frame)

    def _sim_video_ended(self, sim: SimulatedParticipant, source: str) -> None:
        for agent in self._agents.values():
            agent._remote_video_ended(sim.identity, source)

    def _sim_data(self, sim: SimulatedParticipant, payload: bytes, topic: str) -> None:
        for agent in self._agents.values():
            agent._remote_data(sim.identity, topic, payload)

    def _sim_left(self, sim: SimulatedParticipant) -> None:
        if self._sims.get(sim.identity) is not sim:
            return
        del self._sims[sim.identity]
        for agent in self._agents.values():
            agent._remote_left(sim.identity, had_audio=sim.audio_published)
        self._notify()

    def _agent_data(self, agent: MemoryTransport, payload: bytes, topic: str,
                    destinations: list[str] | None = None) -> None:
        to = set(destinations) if destinations else None
        for sim in self._sims.values():
            if to is None or sim.identity in to:
                sim._received_data(ReceivedData(agent.identity, topic, payload))
        for other in self._agents.values():
            if other is not agent and (to is None or other.identity in to):
                other._remote_data(agent.identity, topic, payload)


class _Subscription:
    """One agent's subscription to one microphone: resampler + 10 ms chunker."""

    __slots__ = ("chunker", "resampler", "rate")

    def __init__(self) -> None:
        self.rate = 0
        self.resampler: rtc.AudioResampler | None = None
        self.chunker = FrameChunker()

    def convert(self, frame: rtc.AudioFrame) -> list[rtc.AudioFrame]:
        if frame.sample_rate != self.rate:
            self.rate = frame.sample_rate
            self.resampler = (
                None if frame.sample_rate == self.chunker.sample_rate
                else rtc.AudioResampler(frame.sample_rate, self.chunker.sample_rate)
            )
        if self.resampler is None:
            return self.chunker.push(frame.data)
        out: list[rtc.AudioFrame] = []
        for part in self.resampler.push(frame):
            out.extend(self.chunker.push(part.data))
        return out


class MemoryTransport(RoomTransport):
    """The agent's side of a :class:`MemoryRoom`."""

    def __init__(self, *, hub: MemoryHub) -> None:
        self._hub = hub
        self._room: MemoryRoom | None = None
        self._identity = ""
        self._listener: RoomListener | None = None
        self._wants: WantsAudio = lambda _info: False
        self._remotes: dict[str, RemoteInfo] = {}
        self._subs: dict[str, _Subscription] = {}
        self._output: TrackAudioOutput | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = False
        self._closed = False
        self._video = False
        self._may_set_attributes = False
        self.attributes: dict[str, str] = {}

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def info(self) -> RemoteInfo:
        return RemoteInfo(identity=self._identity, is_agent=True)

    @property
    def published_track(self) -> rtc.LocalAudioTrack | None:
        return self._output.track if self._output is not None else None

    async def connect(
        self,
        *,
        url: str,
        token: str,
        listener: RoomListener,
        wants_audio: WantsAudio,
        video: bool = False,
    ) -> None:
        self._video = video
        if not url.startswith(LOCAL_SCHEME):
            raise TransportError(f"not a local room url: {url}", retryable=False)
        if self._connected or self._closed:
            raise TransportError("transport already used", retryable=False)
        claims = read_token(token)
        self._loop = asyncio.get_running_loop()
        self._identity = claims.identity
        self._may_set_attributes = claims.can_update_own_metadata
        self._listener = listener
        self._wants = wants_audio
        room = self._hub.room(claims.room)
        present = room._agent_joined(self)
        self._room = room
        self._connected = True
        self._remotes = {info.identity: info for info in present}
        for identity in room._published_audio():  # like LiveKit: subscribed after connect
            self._remote_track_published(identity)

    def remote_participants(self) -> list[RemoteInfo]:
        return list(self._remotes.values())

    async def publish_audio(self, *, sample_rate: int) -> TrackAudioOutput:
        self._check_connected()
        if self._output is not None:
            raise TransportError("audio already published", retryable=False)
        source = rtc.AudioSource(sample_rate, 1, queue_size_ms=500)
        track = rtc.LocalAudioTrack.create_audio_track("agent-voice", source)
        self._output = TrackAudioOutput(source=source, track=track)
        if any(not info.is_agent for info in self._remotes.values()):
            self._post(self._listener_call("agent_audio_subscribed"))
        return self._output

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        self._check_connected()
        if not self._may_set_attributes:  # as livekit-server answers it
            raise AttributesRefused("set attributes failed: request error: NotAllowed - does "
                                    "not have permission to update own metadata")
        for key, value in attributes.items():
            if value:
                self.attributes[key] = value
            else:
                self.attributes.pop(key, None)
        assert self._room is not None
        self._room._notify()

    async def publish_data(
        self, payload: bytes, *, topic: str, destinations: list[str] | None = None
    ) -> None:
        self._check_connected()
        assert self._room is not None
        self._room._agent_data(self, payload, topic, destinations)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._connected = False
        room, self._room = self._room, None
        if room is not None:
            await room._agent_left(self)
        if self._output is not None:
            await self._output.aclose()
        self._subs.clear()

    # --- room side (called by MemoryRoom) ---------------------------------------------------

    def _check_connected(self) -> None:
        if not self._connected:
            raise TransportError("not connected to the room", retryable=False)

    def _post(self, call: Callable[[], None]) -> None:
        if self._loop is not None and not self._closed:
            self._loop.call_soon(self._deliver, call)

    def _deliver(self, call: Callable[[], None]) -> None:
        if self._closed:
            return
        try:
            call()
        except Exception:
            log.exception("room_listener_failed", room=self._room.name if self._room else "")

    def _deliver_audio(self, identity: str, frames: list[rtc.AudioFrame]) -> None:
        """:meth:`_deliver` for audio frames, the hot path (no closure per frame)."""
        listener = self._listener
        if listener is None:
            return
        for frame in frames:
            if self._closed:
                return
            try:
                listener.audio_frame(identity, frame)
            except Exception:
                log.exception("room_listener_failed", room=self._room.name if self._room else "")

    def _listener_call(self, method: str, *args: Any) -> Callable[[], None]:
        listener = self._listener
        assert listener is not None
        fn = getattr(listener, method)
        return lambda: fn(*args)

    def _remote_joined(self, info: RemoteInfo) -> None:
        first_listener = not any(not i.is_agent for i in self._remotes.values())
        self._remotes[info.identity] = info
        self._post(self._listener_call("participant_joined", info))
        if self._output is not None and first_listener and not info.is_agent:
            # like LiveKit's clients, a person auto-subscribes to the agent's track; LiveKit
            # tells the publisher about its first subscriber
            self._post(self._listener_call("agent_audio_subscribed"))

    def _remote_track_published(self, identity: str) -> None:
        info = self._remotes.get(identity)
        if info is None or not self._wants(info) or identity in self._subs:
            return
        self._subs[identity] = _Subscription()
        self._post(self._listener_call("audio_track_subscribed", identity))

    def _remote_track_unpublished(self, identity: str) -> None:
        if self._subs.pop(identity, None) is not None:
            self._post(self._listener_call("audio_track_unsubscribed", identity))

    def _remote_left(self, identity: str, *, had_audio: bool) -> None:
        if had_audio:
            self._remote_track_unpublished(identity)
        if self._remotes.pop(identity, None) is not None:
            self._post(self._listener_call("participant_left", identity))

    def _remote_audio(self, identity: str, frame: rtc.AudioFrame) -> None:
        sub = self._subs.get(identity)
        if sub is None or self._listener is None:
            return
        loop = self._loop
        if loop is None or self._closed:
            return
        frames = sub.convert(frame)
        if frames:  # one callback for the 10 ms frames one input frame completed, in order
            loop.call_soon(self._deliver_audio, identity, frames)

    def _remote_video(self, identity: str, source: str, frame: rtc.VideoFrame) -> None:
        info = self._remotes.get(identity)
        if self._video and info is not None and self._wants(info):
            self._post(self._listener_call("video_frame", identity, source, frame))

    def _remote_video_ended(self, identity: str, source: str) -> None:
        info = self._remotes.get(identity)
        if self._video and info is not None and self._wants(info):
            self._post(self._listener_call("video_track_ended", identity, source))

    def _remote_data(self, identity: str, topic: str, payload: bytes) -> None:
        self._post(self._listener_call("data_received", identity, topic, payload))

    def _lost(self, cause: DisconnectCause, detail: str) -> None:
        self._post(self._listener_call("disconnected", cause, detail))
