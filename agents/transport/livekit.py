"""The room transport on ``livekit.rtc``: the job's participant in a real LiveKit room.

Subscriptions are manual (``auto_subscribe=False``): the agent subscribes only to the microphones
its job listens to (PROTOCOL.md §2), each read by an ``rtc.AudioStream`` that asks the SDK for
16 kHz mono 10 ms frames. Every reader is a named task held by the transport and cancelled and
awaited when its track goes or the transport closes. SDK callbacks and exceptions are translated
here into :class:`RoomListener` calls and :class:`TransportError`. A full reconnect of the SDK
drops and re-adds every remote participant; the listener does not see those as departures
(:mod:`agents.transport.departures`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import structlog
from livekit import rtc
from livekit.rtc._ffi_client import FfiClient

from agents.pipeline.aio import TaskSet
from agents.transport.attributes import set_local_attributes
from agents.transport.audio_reader import MAX_AUDIO_BACKLOG_MS, SDK_FRAME_MS, AudioReader
from agents.transport.backlog import AudioBacklog
from agents.transport.base import (
    DisconnectCause,
    RemoteInfo,
    RoomListener,
    RoomTransport,
    TrackAudioOutput,
    TransportError,
    WantsAudio,
    is_agent_participant,
)
from agents.transport.departures import RESTART_GRACE, Departures
from agents.transport.ffi_routing import AudioEventRouter
from agents.transport.native_release import release_participant, release_room
from agents.vision.stream import VideoTrackPump, source_name

log = structlog.get_logger("agents.transport.livekit")

_ROOM_GONE = {rtc.DisconnectReason.ROOM_DELETED, rtc.DisconnectReason.ROOM_CLOSED}
LEAVE_TIMEOUT = 5.0
"""Bound on an in-flight publication and on leaving the room, each (s)."""
NEGOTIATION_SETTLE = 0.2
"""Seconds after the agent's track is published before the room may be left. The SDK (livekit 1.2)
negotiates the publisher peer connection on a 150 ms debounce after a publication: leaving
within it makes that negotiation run on a closed connection, which the SDK logs as an error
(``failed to negotiate the publisher ... wrong state: closed``)."""
ABANDONED_CONNECT_GRACE = 2.0
"""How long ``aclose`` waits at most for a connect its caller gave up on (s); never longer than
the signal timeout. The SDK retries a join on its own for much longer than that; a join that
lands later still leaks (the SDK gives no way to stop it)."""
_VOICE_SOURCES = {rtc.TrackSource.SOURCE_MICROPHONE, rtc.TrackSource.SOURCE_UNKNOWN}
"""Audio the agent listens to: microphones, and tracks published without a source (what an SDK
client publishes with default ``TrackPublishOptions``). Screen-share audio is not a voice."""
_NOT_RETRYABLE_HINTS = ("401", "403", "unauthorized", "permission", "invalid token", "expired")


def remote_info(p: rtc.RemoteParticipant) -> RemoteInfo:
    return RemoteInfo(
        identity=p.identity, name=p.name, metadata=p.metadata,
        is_agent=is_agent_participant(p.identity, p.kind),
    )


def connect_error(e: BaseException) -> TransportError:
    """A connect failure as our error type; auth failures are not worth retrying."""
    text = str(e) or type(e).__name__
    retryable = not any(h in text.lower() for h in _NOT_RETRYABLE_HINTS)
    return TransportError(f"connect failed: {text}", retryable=retryable)


def _release_unconnected(room: rtc.Room) -> None:
    """``Room.connect`` subscribes the room to the SDK's event fan-out before it dials and only
    undoes that on a reported error. When the connect is cancelled (our deadline), the
    subscription would stay and collect every SDK event forever: drop it here."""
    if room.isconnected():
        return
    queue = getattr(room, "_ffi_queue", None)
    if queue is not None:
        FfiClient.instance.queue.unsubscribe(queue)


async def _leave(room: rtc.Room) -> None:
    """``room.disconnect()``, bounded: a connection that is already half gone must not hold the
    job's end forever."""
    try:
        async with asyncio.timeout(LEAVE_TIMEOUT):
            await room.disconnect()
    except Exception as e:  # TimeoutError included
        log.warning("disconnect_failed", error=str(e) or type(e).__name__)


class _VideoSink:
    """Hands a pump's frames to the transport's listener (unless the transport is closing, or
    the track has ended: libwebrtc still delivers a few black frames after an unpublish)."""

    def __init__(self, transport: LiveKitTransport) -> None:
        self._transport = transport
        self.open = True

    def push_video(self, speaker: str, source: str, frame: rtc.VideoFrame) -> None:
        if self.open:
            self._transport._emit("video_frame", speaker, source, frame)


class LiveKitTransport(RoomTransport):
    """One agent connection to a LiveKit server."""

    def __init__(
        self,
        *,
        signal_timeout: float | None = None,
        restart_grace: float = RESTART_GRACE,
        max_backlog_ms: float = MAX_AUDIO_BACKLOG_MS,
        backlog: AudioBacklog | None = None,
        router: AudioEventRouter | None = None,
        sdk_frame_ms: int = SDK_FRAME_MS,
        single_peer_connection: bool = False,
    ) -> None:
        self._signal_timeout = signal_timeout
        self._single_pc = single_peer_connection
        self._sdk_frame_ms = sdk_frame_ms
        self._max_backlog_ms = max_backlog_ms
        self._backlog = backlog
        self._router = router
        self._departures = Departures(
            grace=restart_grace, report=lambda identity: self._emit("participant_left", identity),
            present=lambda: self._room.remote_participants if self._room is not None else {})
        self._room: rtc.Room | None = None
        self._listener: RoomListener | None = None
        self._wants: WantsAudio = lambda _info: False
        self._readers: dict[str, AudioReader] = {}
        self._reader_tracks: dict[str, str] = {}
        self._closing_tasks = TaskSet()
        self._video = False
        self._pumps: dict[str, VideoTrackPump] = {}
        self._pump_owner: dict[str, str] = {}
        self._pump_sinks: dict[str, _VideoSink] = {}
        self._output: TrackAudioOutput | None = None
        self._publishing: asyncio.Task[TrackAudioOutput] | None = None
        self._published_at: float | None = None
        self._closing = False
        self._closed = False
        self._abandoned: tuple[rtc.Room, asyncio.Task[None]] | None = None

    @property
    def identity(self) -> str:
        return self._room.local_participant.identity if self._room is not None else ""

    async def connect(
        self,
        *,
        url: str,
        token: str,
        listener: RoomListener,
        wants_audio: WantsAudio,
        video: bool = False,
    ) -> None:
        if self._room is not None or self._closed or self._abandoned is not None:
            raise TransportError("transport already used", retryable=False)
        self._listener = listener
        self._wants = wants_audio
        self._video = video
        room = rtc.Room()
        self._subscribe_events(room)
        # Always said, never left to the SDK's default (which is one peer connection).
        options = rtc.RoomOptions(auto_subscribe=False, connect_timeout=self._signal_timeout,
                                  single_peer_connection=self._single_pc)
        # The SDK's connect goes on natively when its coroutine is cancelled: a join that lands
        # after our deadline would leave the agent in the room as a ghost (whose identity then
        # kicks out the next attempt's connection). So the connect runs as its own task, and a
        # cancelled one is handed to aclose, which gives it a short grace and leaves the room
        # if it got in.
        loop = asyncio.get_running_loop()
        started = loop.time()
        connecting = loop.create_task(room.connect(url, token, options), name="livekit.connect")
        try:
            await asyncio.shield(connecting)
        except asyncio.CancelledError:
            self._abandoned = (room, connecting)
            raise
        except Exception as e:  # ConnectError, and plain errors for a bad url
            _release_unconnected(room)
            raise connect_error(e) from e
        self._room = room
        log.info("room_connected", connect_ms=round((loop.time() - started) * 1000, 1))
        for participant in room.remote_participants.values():
            self._subscribe_wanted(participant)

    def remote_participants(self) -> list[RemoteInfo]:
        if self._room is None:
            return []
        return [remote_info(p) for p in self._room.remote_participants.values()]

    async def publish_audio(self, *, sample_rate: int) -> TrackAudioOutput:
        room = self._require_room()
        if self._output is not None:
            raise TransportError("audio already published", retryable=False)
        if self._publishing is not None:
            raise TransportError("audio is being published", retryable=False)
        # An owned task, shielded from the caller: a job that ends while its track is being set
        # up must not leave the room mid-negotiation; aclose waits for it, then leaves.
        self._publishing = asyncio.get_running_loop().create_task(
            self._publish_audio(room, sample_rate), name="livekit.publish_audio"
        )
        return await asyncio.shield(self._publishing)

    async def _publish_audio(self, room: rtc.Room, sample_rate: int) -> TrackAudioOutput:
        source = rtc.AudioSource(sample_rate, 1, queue_size_ms=500)
        track = rtc.LocalAudioTrack.create_audio_track("agent-voice", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        try:
            publication = await room.local_participant.publish_track(track, options)
        except Exception as e:
            await source.aclose()
            self._publishing = None  # the caller may try again
            raise TransportError(f"publish audio failed: {e}", retryable=True) from e
        log.info("audio_published", sid=publication.sid, sample_rate=sample_rate)
        self._published_at = asyncio.get_running_loop().time()
        self._output = TrackAudioOutput(source=source, track=track)
        return self._output

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        await set_local_attributes(self._require_room().local_participant, attributes)

    async def publish_data(
        self, payload: bytes, *, topic: str, destinations: list[str] | None = None
    ) -> None:
        room = self._require_room()
        try:
            await room.local_participant.publish_data(
                payload, reliable=True, topic=topic, destination_identities=destinations or [])
        except Exception as e:
            raise TransportError(f"publish data failed: {e}", retryable=True) from e

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing = True
        self._departures.cancel()
        for reader in list(self._readers.values()):
            await reader.aclose()
        self._readers.clear()
        for sink in self._pump_sinks.values():
            sink.open = False
        self._pump_sinks.clear()
        for pump in list(self._pumps.values()):
            await pump.aclose()
        self._pumps.clear()
        await self._closing_tasks.wait()
        await self._settle_publish()
        room = self._room
        # No unpublish first: leaving unpublishes the track (the server tells the others), and
        # an unpublish would only start one more debounced negotiation to race the leave.
        if self._published_at is not None:
            settle = self._published_at + NEGOTIATION_SETTLE - asyncio.get_running_loop().time()
            if settle > 0:
                await asyncio.sleep(settle)
        if self._output is not None:
            await self._output.aclose()
        if room is not None:
            await _leave(room)
            ours = [self._output.track] if self._output is not None else []
            log.info("room_released", handles=release_room(room, tracks=ours))
        if self._abandoned is not None:
            await self._leave_abandoned(*self._abandoned)

    async def _settle_publish(self) -> None:
        """Let an in-flight publish finish (bounded) before leaving: leaving mid-negotiation
        makes the SDK fail the publisher's negotiation on a closed connection."""
        publishing = self._publishing
        if publishing is None or publishing.done():
            return
        done, _ = await asyncio.wait({publishing}, timeout=LEAVE_TIMEOUT)
        if not done:
            log.warning("publish_unfinished_at_leave")
            publishing.cancel()
        await asyncio.gather(publishing, return_exceptions=True)

    async def _leave_abandoned(self, room: rtc.Room, connecting: asyncio.Task[None]) -> None:
        """Wait (bounded) for a connect our caller gave up on; leave the room if it got in."""
        grace = min(ABANDONED_CONNECT_GRACE, self._signal_timeout or ABANDONED_CONNECT_GRACE)
        done, _ = await asyncio.wait({connecting}, timeout=grace)
        if not done:
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
        elif not connecting.cancelled() and connecting.exception() is None:
            log.info("abandoned_connect_joined_leaving")
            await _leave(room)
            release_room(room)
        _release_unconnected(room)

    # --- SDK events -------------------------------------------------------------------------

    def _require_room(self) -> rtc.Room:
        if self._room is None or self._closed or not self._room.isconnected():
            raise TransportError("not connected to the room", retryable=False)
        return self._room

    def _subscribe_events(self, room: rtc.Room) -> None:
        room.on("participant_connected", self._on_participant_connected)
        room.on("participant_disconnected", self._on_participant_disconnected)
        room.on("track_published", self._on_track_published)
        room.on("track_subscribed", self._on_track_subscribed)
        room.on("track_unsubscribed", self._on_track_unsubscribed)
        room.on("data_received", self._on_data_received)
        room.on("local_track_subscribed", self._on_local_track_subscribed)
        room.on("reconnecting", self._on_reconnecting)
        room.on("reconnected", self._on_reconnected)
        room.on("disconnected", self._on_disconnected)

    def _emit(self, method: str, *args: Any) -> None:
        # Nothing before connect returned (remote_participants() has the room as it is then),
        # nothing from an abandoned connect, nothing once closing.
        if self._listener is None or self._closing or self._room is None:
            return
        try:
            getattr(self._listener, method)(*args)
        except Exception:
            log.exception("room_listener_failed", event=method)

    def _subscribe_wanted(self, participant: rtc.RemoteParticipant) -> None:
        if not self._wants(remote_info(participant)):
            return
        for publication in participant.track_publications.values():
            if self._worth_subscribing(publication) and not publication.subscribed:
                publication.set_subscribed(True)

    def _worth_subscribing(self, publication: rtc.RemoteTrackPublication) -> bool:
        if publication.kind == rtc.TrackKind.KIND_AUDIO:
            return publication.source in _VOICE_SOURCES
        return (
            self._video and publication.kind == rtc.TrackKind.KIND_VIDEO
            and source_name(publication.source) is not None
        )

    def _on_participant_connected(self, participant: rtc.RemoteParticipant) -> None:
        identity = participant.identity
        if self._departures.came_back(identity):
            return  # back after our own full reconnect: as far as the listener knows, never gone
        self._emit("participant_joined", remote_info(participant))

    def _on_participant_disconnected(self, participant: rtc.RemoteParticipant) -> None:
        identity = participant.identity
        self._stop_reader(identity)
        for sid, owner in list(self._pump_owner.items()):
            if owner == identity:
                self._stop_pump(sid)
        # Its native objects go now, not at some later garbage collection (native_release.py).
        release_participant(participant)
        if participant.disconnect_reason is not None or self._room is None or self._closing:
            self._emit("participant_left", identity)
            return
        self._departures.left_without_reason(identity)

    def _on_reconnecting(self) -> None:
        self._departures.reconnecting()
        self._emit("connection_changed", "reconnecting")

    def _on_reconnected(self) -> None:
        self._emit("connection_changed", "reconnected")
        self._departures.reconnected()

    def _on_track_published(
        self, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        if self._room is None or self._closing:  # connect() subscribes what is there by then
            return
        if self._worth_subscribing(publication) and self._wants(remote_info(participant)):
            publication.set_subscribed(True)

    def _on_track_subscribed(
        self,
        track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        identity = participant.identity
        if self._listener is None or self._closing or self._room is None:
            return
        if track.kind == rtc.TrackKind.KIND_VIDEO:
            self._start_pump(track, publication, identity)
            return
        if track.kind != rtc.TrackKind.KIND_AUDIO or publication.source not in _VOICE_SOURCES:
            return
        if identity in self._readers:  # a second microphone: keep the first
            return
        self._start_reader(track, publication, identity)

    def _start_reader(
        self, track: rtc.Track, publication: rtc.RemoteTrackPublication, identity: str
    ) -> None:
        assert self._listener is not None
        self._readers[identity] = AudioReader(
            track=track, identity=identity, listener=self._listener,
            max_backlog_ms=self._max_backlog_ms, backlog=self._backlog, router=self._router,
            sdk_frame_ms=self._sdk_frame_ms,
        )
        self._reader_tracks[identity] = publication.sid
        self._emit("audio_track_subscribed", identity)

    def _on_track_unsubscribed(
        self,
        track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        if self._reader_tracks.get(participant.identity) == publication.sid:
            self._stop_reader(participant.identity)
            self._read_another_microphone(participant, gone=publication.sid)
        self._stop_pump(publication.sid)

    def _read_another_microphone(self, participant: rtc.RemoteParticipant, *, gone: str) -> None:
        """A participant can have two microphone tracks for a moment (a client that publishes
        the new device before unpublishing the old); the second one was subscribed but not
        read. When the read one goes, read the other instead of going deaf."""
        if self._closing:
            return
        for sid, publication in participant.track_publications.items():
            track = publication.track
            if (
                sid != gone and track is not None and publication.subscribed
                and track.kind == rtc.TrackKind.KIND_AUDIO
                and publication.source in _VOICE_SOURCES
            ):
                self._start_reader(track, publication, participant.identity)
                return

    def _start_pump(
        self, track: rtc.Track, publication: rtc.RemoteTrackPublication, identity: str
    ) -> None:
        source = source_name(publication.source)
        if not self._video or source is None or publication.sid in self._pumps:
            return
        sink = _VideoSink(self)
        self._pumps[publication.sid] = VideoTrackPump(
            track=track, speaker=identity, source=source, sink=sink
        )
        self._pump_sinks[publication.sid] = sink
        self._pump_owner[publication.sid] = identity

    def _stop_pump(self, sid: str) -> None:
        pump = self._pumps.pop(sid, None)
        self._pump_owner.pop(sid, None)
        sink = self._pump_sinks.pop(sid, None)
        if sink is not None:
            sink.open = False  # at once: frames the stream still holds are not images
        if pump is not None:
            self._emit("video_track_ended", pump.speaker, pump.source)
            self._close_later(pump.aclose(), f"livekit.video_pump_close.{pump.speaker}")

    def _close_later(self, closing: Coroutine[Any, Any, None], name: str) -> None:
        self._closing_tasks.spawn(closing, name)

    def _stop_reader(self, identity: str) -> None:
        reader = self._readers.pop(identity, None)
        self._reader_tracks.pop(identity, None)
        if reader is None:
            return
        reader.stop()
        self._close_later(reader.aclose(), f"livekit.audio_reader_close.{identity}")
        self._emit("audio_track_unsubscribed", identity)

    def _on_local_track_subscribed(self, track: rtc.LocalTrack) -> None:
        if self._output is not None and track.sid == self._output.track.sid:
            self._emit("agent_audio_subscribed")

    def _on_data_received(self, packet: rtc.DataPacket) -> None:
        sender = packet.participant.identity if packet.participant is not None else None
        self._emit("data_received", sender, packet.topic or "", bytes(packet.data))

    def _on_disconnected(self, reason: int) -> None:
        cause: DisconnectCause = "room_closed" if reason in _ROOM_GONE else "disconnected"
        try:
            detail = rtc.DisconnectReason.Name(reason)  # type: ignore[arg-type]
        except ValueError:  # a reason newer than this SDK's enum: still a disconnection
            detail = f"REASON_{reason}"
        self._emit("disconnected", cause, detail)
