"""The LiveKit transport without a server: the real SDK objects, token handling, and
connection failures that end the job with a clear reason within the configured deadline."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest
from livekit import api, rtc
from livekit.rtc._ffi_client import FfiClient
from room_kit import (
    API_KEY,
    API_SECRET,
    AudioListener,
    Harness,
    make_spec,
    make_token,
    tone_frame,
)

from agents.job import JobFailed
from agents.transport.audio_reader import SDK_FRAME_MS
from agents.transport.base import (
    DisconnectCause,
    TrackAudioOutput,
    TransportError,
    is_agent_participant,
)
from agents.transport.livekit import AudioReader, LiveKitTransport, connect_error
from agents.transport.token import mint_agent_token, read_token


class Frames(AudioListener):
    def __init__(self) -> None:
        self.frames: list[rtc.AudioFrame] = []
        self.events: list[tuple[str, ...]] = []
        self.arrived = asyncio.Event()

    def audio_frame(self, identity: str, frame: rtc.AudioFrame) -> None:
        self.frames.append(frame)
        self.arrived.set()

    def disconnected(self, cause: DisconnectCause, detail: str) -> None:
        self.events.append((cause, detail))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def silent_server() -> AsyncIterator[tuple[int, list[int]]]:
    """Accepts TCP connections and never answers (the SDK's 30 s hang)."""
    accepted: list[int] = []
    writers: list[asyncio.StreamWriter] = []

    async def hold(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.append(1)
        writers.append(w)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield port, accepted
    for w in writers:
        w.close()
    server.close()
    await server.wait_closed()


async def test_audio_stream_from_a_real_track_delivers_16k_mono_frames_of_sdk_frame_ms() -> None:
    source = rtc.AudioSource(48000, 1, queue_size_ms=200)
    track = rtc.LocalAudioTrack.create_audio_track("mic", source)
    listener = Frames()
    reader = AudioReader(track=track, identity="alice", listener=listener)
    for i in range(30):
        await source.capture_frame(tone_frame(i))
    async with asyncio.timeout(3):
        while sum(f.samples_per_channel for f in listener.frames if any(f.data)) < 16 * 200:
            listener.arrived.clear()
            await listener.arrived.wait()
    await reader.aclose()
    await reader.aclose()  # idempotent
    await source.aclose()
    # The SDK's events, handed on whole (SDK_FRAME_MS: 30 ms, three 10 ms units).
    assert {(f.sample_rate, f.num_channels, f.samples_per_channel) for f in listener.frames} == {
        (16000, 1, 16 * SDK_FRAME_MS)
    }


async def test_track_audio_output_over_a_real_source_clears_at_once() -> None:
    source = rtc.AudioSource(24000, 1, queue_size_ms=1000)
    output = TrackAudioOutput(source=source,
                              track=rtc.LocalAudioTrack.create_audio_track("agent", source))
    for i in range(30):
        await output.capture_frame(tone_frame(i, rate=24000))
    assert output.frames_captured == 30
    assert output.queued_duration > 0.1
    output.clear_queue()
    assert output.queued_duration == 0.0
    await output.aclose()
    await output.aclose()
    with pytest.raises(TransportError, match="closed"):
        await output.capture_frame(tone_frame(0, rate=24000))


def test_minted_token_verifies_and_carries_the_grants_the_agent_needs() -> None:
    token = mint_agent_token(api_key=API_KEY, api_secret=API_SECRET, room="r", identity="ai-x",
                             name="AI Assistant", metadata='{"type":"ai"}')
    claims = api.TokenVerifier(API_KEY, API_SECRET).verify(token)
    assert claims.identity == "ai-x" and claims.kind == "agent"
    assert claims.video is not None
    assert claims.video.room == "r" and claims.video.room_join
    assert claims.video.can_publish and claims.video.can_subscribe
    assert claims.video.can_publish_data
    local = read_token(token)
    assert (local.identity, local.room) == ("ai-x", "r")
    assert local.expires_at is not None and local.expires_at > time.time()
    with pytest.raises(ValueError):
        mint_agent_token(api_key="", api_secret="", room="r", identity="x")


def test_token_problems_are_named() -> None:
    with pytest.raises(TransportError, match="^token expired") as e:
        read_token(make_token("r", "a", ttl=-60))
    assert not e.value.retryable
    with pytest.raises(TransportError, match="^invalid token"):
        read_token("abc")
    no_room = api.AccessToken(API_KEY, API_SECRET).with_identity("a").to_jwt()
    with pytest.raises(TransportError, match="no room join grant"):
        read_token(no_room)


def test_agents_recognised_by_kind_or_prefix_and_errors_classified() -> None:
    assert is_agent_participant("bot", rtc.ParticipantKind.PARTICIPANT_KIND_AGENT)
    assert is_agent_participant("ai-agent-AJ_1", rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD)
    assert not is_agent_participant("alice", rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD)
    assert not connect_error(Exception("401 Unauthorized: invalid token")).retryable
    assert connect_error(Exception("connection refused")).retryable


async def test_room_deletion_maps_to_room_closed_and_other_losses_to_disconnected() -> None:
    transport = LiveKitTransport()
    listener = Frames()
    transport._listener = listener
    transport._room = rtc.Room()  # events reach the listener only once connect has returned
    transport._on_disconnected(rtc.DisconnectReason.ROOM_DELETED)
    transport._on_disconnected(rtc.DisconnectReason.SIGNAL_CLOSE)
    assert listener.events == [("room_closed", "ROOM_DELETED"), ("disconnected", "SIGNAL_CLOSE")]


async def test_closed_port_fails_the_job_with_a_clear_reason() -> None:
    h = Harness(config_overrides={"room": {"connect_timeout": 2, "connect_attempts": 2,
                                            "connect_backoff": 0.05}})
    url = f"ws://127.0.0.1:{free_port()}"
    async with asyncio.timeout(2 * 2 + 2):
        with pytest.raises(JobFailed, match=r"could not join room room-1: .*attempt 2 of 2"):
            await h.body(make_spec(url=url), h.reporter)
    assert h.reporter.states == [("connecting", None)]


async def test_server_that_never_answers_fails_within_the_deadline(
    silent_server: tuple[int, list[int]],
) -> None:
    port, accepted = silent_server
    subscribers = len(FfiClient.instance.queue._subscribers)
    h = Harness(config_overrides={"room": {"connect_timeout": 0.5, "connect_attempts": 2,
                                            "connect_backoff": 0.05}})
    async with asyncio.timeout(0.5 * 2 + 3):  # attempts x deadline, plus backoff and slack
        with pytest.raises(JobFailed, match=r"no answer within 0.5 s \(attempt 2 of 2\)") as e:
            await h.body(make_spec(url=f"ws://127.0.0.1:{port}"), h.reporter)
    assert accepted, "the SDK never dialled the server"
    # the abandoned connects left no subscription to the SDK's events behind
    assert len(FfiClient.instance.queue._subscribers) == subscribers
    assert e.value.record["end_reason"].startswith("failed: could not join room")


@pytest.mark.parametrize("single", [None, True])
async def test_the_join_asks_for_the_configured_peer_connections(
    monkeypatch: pytest.MonkeyPatch, single: bool | None,
) -> None:
    # The SDK joins with one peer connection when not told; the service always tells it, and
    # two unless configured (a burst of joins costs about half the CPU with two).
    asked: list[rtc.RoomOptions] = []

    async def connect(self: rtc.Room, url: str, token: str,
                      options: rtc.RoomOptions | None = None) -> None:
        assert options is not None
        asked.append(options)
        raise rtc.ConnectError("refused by the test")

    monkeypatch.setattr(rtc.Room, "connect", connect)
    room = {"connect_attempts": 1} if single is None else {
        "connect_attempts": 1, "single_peer_connection": single}
    h = Harness(config_overrides={"room": room})
    with pytest.raises(JobFailed, match="refused by the test"):
        await h.body(make_spec(url="ws://127.0.0.1:9"), h.reporter)
    assert [o.single_peer_connection for o in asked] == [bool(single)]
