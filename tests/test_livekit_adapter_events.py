"""The LiveKit transport's handling of the SDK's room events, driven without a server: the
handlers get the arguments ``rtc.Room`` emits (in its order), with stand-ins for the remote
participant and its publications (the SDK builds those only from a server's answers) and real
audio tracks for the readers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import pytest
from livekit import rtc
from room_kit import make_token, tone_frame

from agents.transport import livekit as livekit_transport
from agents.transport.base import (
    DisconnectCause,
    RemoteInfo,
    RoomListener,
    TrackAudioOutput,
    TransportError,
)
from agents.transport.livekit import AudioReader, LiveKitTransport

MIC = rtc.TrackSource.SOURCE_MICROPHONE
UNKNOWN = rtc.TrackSource.SOURCE_UNKNOWN
SCREEN_AUDIO = rtc.TrackSource.SOURCE_SCREENSHARE_AUDIO


class Events(RoomListener):
    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []
        self.frames: dict[str, int] = {}
        self.arrived = asyncio.Event()

    def participant_joined(self, info: RemoteInfo) -> None:
        self.events.append(("joined", info.identity))

    def participant_left(self, identity: str) -> None:
        self.events.append(("left", identity))

    def audio_track_subscribed(self, identity: str) -> None:
        self.events.append(("subscribed", identity))

    def audio_track_unsubscribed(self, identity: str) -> None:
        self.events.append(("unsubscribed", identity))

    def audio_frame(self, identity: str, frame: rtc.AudioFrame) -> None:
        self.frames[identity] = self.frames.get(identity, 0) + 1
        self.arrived.set()

    def video_frame(self, identity: str, source: str, frame: rtc.VideoFrame) -> None: ...

    def data_received(self, identity: str | None, topic: str, payload: bytes) -> None:
        self.events.append(("data", identity or "", topic, payload.decode()))

    def connection_changed(self, state: Literal["reconnecting", "reconnected"]) -> None:
        self.events.append((state,))

    def disconnected(self, cause: DisconnectCause, detail: str) -> None:
        self.events.append(("disconnected", cause, detail))


@dataclass
class Publication:
    """What the transport reads of an ``rtc.RemoteTrackPublication``."""

    sid: str
    source: int
    kind: int = rtc.TrackKind.KIND_AUDIO
    track: rtc.Track | None = None
    subscribed: bool = False
    subscribe_calls: list[bool] = field(default_factory=list)

    def set_subscribed(self, subscribed: bool) -> None:
        self.subscribe_calls.append(subscribed)


@dataclass
class Participant:
    """What the transport reads of an ``rtc.RemoteParticipant``."""

    identity: str
    name: str = ""
    metadata: str = ""
    kind: int = rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD
    track_publications: dict[str, Publication] = field(default_factory=dict)
    disconnect_reason: int | None = rtc.DisconnectReason.CLIENT_INITIATED
    """``None`` is what the SDK gives for a participant its own full reconnect dropped."""


def connected(listener: Events, *, target: str = "alice") -> LiveKitTransport:
    transport = LiveKitTransport()
    transport._listener = listener
    transport._wants = lambda info: info.identity == target
    transport._room = rtc.Room()  # never connected: aclose has nothing to leave
    return transport


def pub(p: Publication) -> rtc.RemoteTrackPublication:
    return cast(rtc.RemoteTrackPublication, p)


def part(p: Participant) -> rtc.RemoteParticipant:
    return cast(rtc.RemoteParticipant, p)


class Mic:
    """A real audio track fed from a local source, as the SDK hands a subscribed one over."""

    def __init__(self, name: str) -> None:
        self.source = rtc.AudioSource(48000, 1, queue_size_ms=200)
        self.track = rtc.LocalAudioTrack.create_audio_track(name, self.source)
        self._i = 0

    async def speak(self, frames: int) -> None:
        for _ in range(frames):
            await self.source.capture_frame(tone_frame(self._i))
            self._i += 1


def subscribe(
    transport: LiveKitTransport, p: Participant, publication: Publication, track: rtc.Track
) -> None:
    """What ``rtc.Room`` does on ``track_subscribed``: mark, attach, emit."""
    publication.track, publication.subscribed = track, True
    p.track_publications[publication.sid] = publication
    transport._on_track_subscribed(track, pub(publication), part(p))


def unsubscribe(transport: LiveKitTransport, p: Participant, publication: Publication) -> None:
    track = publication.track
    publication.track, publication.subscribed = None, False
    transport._on_track_unsubscribed(cast(rtc.Track, track), pub(publication), part(p))


async def test_subscribes_to_microphones_and_sourceless_audio_but_not_screen_share_audio() -> None:
    transport = connected(Events())
    alice = Participant("alice")
    mic, screen_audio = Publication("TR_mic", MIC), Publication("TR_screen_audio", SCREEN_AUDIO)
    # a Python SDK client publishing with default TrackPublishOptions: source UNKNOWN
    sdk_audio = Publication("TR_sdk", UNKNOWN)
    for p in (mic, screen_audio, sdk_audio):
        transport._on_track_published(pub(p), part(alice))
    assert mic.subscribe_calls == [True]
    assert sdk_audio.subscribe_calls == [True]
    assert screen_audio.subscribe_calls == []
    # already in the room at connect time: the same choice
    bob = Participant("alice", track_publications={
        "a": Publication("a", SCREEN_AUDIO), "b": Publication("b", MIC)})
    transport._subscribe_wanted(part(bob))
    assert [p.subscribe_calls for p in bob.track_publications.values()] == [[], [True]]
    await transport.aclose()


async def test_screen_share_audio_never_takes_the_microphone_reader() -> None:
    listener = Events()
    transport = connected(listener)
    alice = Participant("alice")
    screen, mic = Mic("screen"), Mic("mic")
    subscribe(transport, alice, Publication("TR_screen_audio", SCREEN_AUDIO), screen.track)
    assert transport._readers == {}
    subscribe(transport, alice, Publication("TR_mic", MIC), mic.track)
    assert transport._reader_tracks == {"alice": "TR_mic"}
    assert listener.events == [("subscribed", "alice")]
    await transport.aclose()
    await screen.source.aclose()
    await mic.source.aclose()


async def test_a_second_microphone_is_read_when_the_first_one_goes() -> None:
    listener = Events()
    transport = connected(listener)
    alice = Participant("alice")
    old, new = Mic("old"), Mic("new")
    old_pub, new_pub = Publication("TR_old", MIC), Publication("TR_new", MIC)
    subscribe(transport, alice, old_pub, old.track)
    # the client publishes its new device before it unpublishes the old one
    subscribe(transport, alice, new_pub, new.track)
    assert transport._reader_tracks == {"alice": "TR_old"}
    unsubscribe(transport, alice, old_pub)
    del alice.track_publications["TR_old"]
    assert transport._reader_tracks == {"alice": "TR_new"}
    assert listener.events == [
        ("subscribed", "alice"), ("unsubscribed", "alice"), ("subscribed", "alice")
    ]
    await new.speak(20)
    async with asyncio.timeout(3):
        while listener.frames.get("alice", 0) < 10:
            listener.arrived.clear()
            await listener.arrived.wait()
    # the participant leaves: the last reader goes, then the participant
    unsubscribe(transport, alice, new_pub)
    transport._on_participant_disconnected(part(alice))
    assert listener.events[-2:] == [("unsubscribed", "alice"), ("left", "alice")]
    assert transport._readers == {}
    await transport.aclose()
    await old.source.aclose()
    await new.source.aclose()


async def test_a_full_reconnect_of_our_own_is_not_everyone_leaving() -> None:
    listener = Events()
    transport = connected(listener)
    room_participants = transport._room._remote_participants  # type: ignore[union-attr]
    alice, bob = Participant("alice", disconnect_reason=None), Participant("bob",
                                                                          disconnect_reason=None)
    # what the SDK emits for a full reconnect: every remote dropped, then reconnecting ...
    transport._on_participant_disconnected(part(alice))
    transport._on_participant_disconnected(part(bob))
    transport._on_reconnecting()
    assert not transport._departures.pending  # nobody is reported gone while reconnecting
    # ... reconnected, then those still in the room are added back (alice; bob left meanwhile)
    transport._on_reconnected()
    room_participants["alice"] = part(alice)
    transport._on_participant_connected(part(alice))
    assert transport._departures.pending
    transport._departures.settle()  # the grace ran out
    assert listener.events == [("reconnecting",), ("reconnected",), ("left", "bob")]
    await transport.aclose()


async def test_departures_with_a_reason_are_at_once_and_without_one_after_the_grace() -> None:
    listener = Events()
    transport = connected(listener)
    transport._on_participant_disconnected(part(Participant("alice")))
    assert listener.events == [("left", "alice")]
    transport._on_participant_disconnected(part(Participant("bob", disconnect_reason=None)))
    assert listener.events == [("left", "alice")]
    assert transport._departures.pending
    transport._departures.settle()  # no reconnect came: bob really left (an older server)
    assert listener.events == [("left", "alice"), ("left", "bob")]
    await transport.aclose()


async def test_a_disconnect_reason_unknown_to_this_sdk_still_ends_the_room() -> None:
    listener = Events()
    transport = connected(listener)
    transport._on_disconnected(9999)
    assert listener.events == [("disconnected", "disconnected", "REASON_9999")]
    await transport.aclose()


async def test_data_packets_carry_sender_topic_and_payload() -> None:
    listener = Events()
    transport = connected(listener)
    alice = part(Participant("alice"))
    transport._on_data_received(rtc.DataPacket(data=b'{"type":"user_text","data":"hi"}',
                                               kind=rtc.DataPacketKind.KIND_RELIABLE,
                                               participant=alice, topic="user_text"))
    transport._on_data_received(rtc.DataPacket(data=b"x", kind=rtc.DataPacketKind.KIND_RELIABLE,
                                               participant=None, topic=None))
    assert listener.events == [
        ("data", "alice", "user_text", '{"type":"user_text","data":"hi"}'),
        ("data", "", "", "x"),
    ]
    await transport.aclose()


class LateJoinRoom(rtc.Room):
    """A room whose join lands after the caller's deadline. The SDK's join runs natively: it
    goes on (and retries) whatever happens to the Python coroutine that asked for it."""

    made: list[LateJoinRoom] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.joined = False
        self.left = False
        LateJoinRoom.made.append(self)

    async def connect(self, url: str, token: str, options: rtc.RoomOptions | None = None) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def native_join() -> None:
            self.joined = True
            if not done.done():
                done.set_result(None)

        loop.call_later(0.2, native_join)
        await done

    def isconnected(self) -> bool:
        return self.joined and not self.left

    async def disconnect(self, *, reason: int = rtc.DisconnectReason.CLIENT_INITIATED) -> None:
        self.left = True


async def test_a_join_landing_after_the_deadline_is_left_not_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    LateJoinRoom.made.clear()
    monkeypatch.setattr(rtc, "Room", LateJoinRoom)
    listener = Events()
    transport = LiveKitTransport(signal_timeout=1.0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await transport.connect(url="ws://127.0.0.1:1", token=make_token("room-1", "ai"),
                                    listener=listener, wants_audio=lambda _i: True)
    # the abandoned room's events subscribe nothing and reach nobody
    late_mic = Publication("TR_mic", MIC)
    transport._on_track_published(pub(late_mic), part(Participant("alice")))
    transport._on_participant_connected(part(Participant("alice")))
    assert late_mic.subscribe_calls == []
    await transport.aclose()
    (room,) = LateJoinRoom.made
    assert room.joined and room.left, "the late join stayed in the room as a ghost participant"
    assert listener.events == []
    await transport.aclose()  # idempotent


class FailsOnce(Events):
    def audio_frame(self, identity: str, frame: rtc.AudioFrame) -> None:
        if not self.frames:
            self.frames["failed"] = 1
            raise ValueError("a listener bug on one frame")
        super().audio_frame(identity, frame)


async def test_a_listener_error_on_one_frame_does_not_stop_the_reader() -> None:
    listener = FailsOnce()
    mic = Mic("mic")
    reader = AudioReader(track=mic.track, identity="alice", listener=listener)
    await mic.speak(20)
    async with asyncio.timeout(3):
        while listener.frames.get("alice", 0) < 5:
            listener.arrived.clear()
            await listener.arrived.wait()
    assert reader.listener_errors == 1
    await reader.aclose()
    await mic.source.aclose()


class RefusingSource(rtc.AudioSource):
    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        raise Exception("native capture error")  # what the SDK raises


async def test_an_sdk_capture_failure_is_our_typed_error() -> None:
    source = RefusingSource(48000, 1)
    output = TrackAudioOutput(source=source,
                              track=rtc.LocalAudioTrack.create_audio_track("agent", source))
    with pytest.raises(TransportError, match="audio capture failed: native capture error") as e:
        await output.capture_frame(tone_frame(0))
    assert e.value.retryable and output.frames_captured == 0
    await output.aclose()


class StuckRoom(rtc.Room):
    """A connected room whose leave never completes (a connection already half gone)."""

    def isconnected(self) -> bool:
        return True

    async def disconnect(self, *, reason: int = rtc.DisconnectReason.CLIENT_INITIATED) -> None:
        await asyncio.Event().wait()


async def test_leaving_a_stuck_room_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(livekit_transport, "LEAVE_TIMEOUT", 0.05)
    transport = LiveKitTransport()
    transport._listener = Events()
    transport._room = StuckRoom()
    async with asyncio.timeout(5):
        await transport.aclose()
    assert transport._closed


class _SlowLocal:
    def __init__(self, room: SlowPublishRoom) -> None:
        self._room = room

    async def publish_track(self, track: rtc.LocalTrack, options: Any) -> Any:
        self._room.calls.append("publish")
        self._room.started.set()
        await self._room.release.wait()
        self._room.calls.append("published")
        return type("Publication", (), {"sid": "TR_agent"})()

    async def unpublish_track(self, sid: str) -> None:
        self._room.calls.append("unpublish")


class SlowPublishRoom(rtc.Room):
    """A connected room whose track publication takes as long as the test likes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self._local = _SlowLocal(self)

    @property
    def local_participant(self) -> Any:
        return self._local

    def isconnected(self) -> bool:
        return True

    async def disconnect(self, *, reason: int = rtc.DisconnectReason.CLIENT_INITIATED) -> None:
        self.calls.append("disconnect")


async def test_leaving_waits_for_the_track_being_published(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The job ending while its track is set up: the room is left after the publication, not
    in the middle of the publisher's negotiation."""
    transport = connected(Events())
    room = transport._room = SlowPublishRoom()
    publishing = asyncio.create_task(transport.publish_audio(sample_rate=48000))
    async with asyncio.timeout(5):
        await room.started.wait()
    publishing.cancel()  # the job ends
    closing = asyncio.create_task(transport.aclose())
    await asyncio.sleep(0.1)
    assert room.calls == ["publish"] and not closing.done()
    room.release.set()
    async with asyncio.timeout(5):
        await closing
    # leaving unpublishes: no separate unpublish (one more negotiation to race the leave)
    assert room.calls == ["publish", "published", "disconnect"]
    with pytest.raises(asyncio.CancelledError):
        await publishing


async def test_leaving_right_after_a_publication_lets_its_negotiation_settle_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The SDK negotiates the publisher on a debounce after a publication: leaving within it
    would run that negotiation on a closed connection."""
    monkeypatch.setattr(livekit_transport, "NEGOTIATION_SETTLE", 0.4)
    transport = connected(Events())
    room = transport._room = SlowPublishRoom()
    room.release.set()
    async with asyncio.timeout(5):
        await transport.publish_audio(sample_rate=48000)
    closing = asyncio.create_task(transport.aclose())
    await asyncio.sleep(0.15)
    assert room.calls == ["publish", "published"] and not closing.done()  # still settling
    async with asyncio.timeout(5):
        await closing
    assert room.calls == ["publish", "published", "disconnect"]


async def test_a_publication_that_never_ends_does_not_hold_the_leave(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(livekit_transport, "LEAVE_TIMEOUT", 0.05)
    transport = connected(Events())
    room = transport._room = SlowPublishRoom()
    publishing = asyncio.create_task(transport.publish_audio(sample_rate=48000))
    await asyncio.sleep(0.05)
    publishing.cancel()
    async with asyncio.timeout(5):
        await transport.aclose()
    assert room.calls == ["publish", "disconnect"]
