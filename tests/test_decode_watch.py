"""A microphone whose audio arrives but is never decoded is reported (docs/livekit.md#deaf-jobs),
and a left room's native handles are released when the job leaves, not at a later GC."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest
from livekit import rtc
from room_kit import AudioListener, Harness, make_spec

from agents.pipeline.trace import AUDIO_NOT_DECODED
from agents.transport.audio_reader import AudioReader
from agents.transport.decode_watch import NotDecoded, inbound_counts, watch_decoding
from agents.transport.native_release import release_participant, release_room


def inbound(packets: int, samples: int) -> rtc.stats.RtcStats:
    s = rtc.stats.RtcStats()
    s.inbound_rtp.received.packets_received = packets
    s.inbound_rtp.inbound.total_samples_received = samples
    return s


class StatsTrack:
    def __init__(self, *stats: rtc.stats.RtcStats, fail: bool = False) -> None:
        self.stats = list(stats)
        self.fail = fail
        self.asked = 0

    async def get_stats(self) -> list[rtc.stats.RtcStats]:
        self.asked += 1
        if self.fail:
            raise RuntimeError("track is gone")
        return self.stats


async def watch(track: StatsTrack, frames: int = 0) -> tuple[NotDecoded | None, list[NotDecoded]]:
    reports: list[NotDecoded] = []
    found = await watch_decoding(track=track, identity="alice",  # type: ignore[arg-type]
                                 frames=lambda: frames, report=reports.append, after_s=0)
    return found, reports


def test_inbound_counts_add_up_the_inbound_streams_only() -> None:
    other = rtc.stats.RtcStats()
    other.outbound_rtp.sent.packets_sent = 99
    assert inbound_counts([inbound(300, 0), inbound(20, 960), other]) == (320, 960)
    assert inbound_counts([]) == (0, 0)


async def test_packets_that_arrive_and_are_not_decoded_are_reported_once() -> None:
    found, reports = await watch(StatsTrack(inbound(310, 0)))
    assert found == NotDecoded(identity="alice", packets=310, samples_decoded=0)
    assert reports == [found]


async def test_a_reader_that_has_frames_is_not_checked_and_nothing_is_said() -> None:
    track = StatsTrack(inbound(310, 0))
    assert await watch(track, frames=3) == (None, [])
    assert track.asked == 0


async def test_a_track_that_received_little_or_cannot_say_is_not_reported() -> None:
    # a muted or not yet flowing microphone: too few packets to call it deaf
    assert await watch(StatsTrack(inbound(10, 0))) == (None, [])
    # a track already gone: no stats, nothing to say
    assert await watch(StatsTrack(inbound(310, 0), fail=True)) == (None, [])


class Heard(AudioListener):
    def __init__(self) -> None:
        self.not_decoded: list[tuple[str, int]] = []
        self.told = asyncio.Event()

    def audio_not_decoded(self, identity: str, packets: int) -> None:
        self.not_decoded.append((identity, packets))
        self.told.set()


def deaf_track() -> tuple[rtc.AudioSource, rtc.LocalAudioTrack, StatsTrack]:
    """A real track whose stats say what a deaf one's say on the real server: RTP in, nothing
    decoded."""
    source = rtc.AudioSource(48000, 1)
    track = rtc.LocalAudioTrack.create_audio_track("mic", source)
    stats = StatsTrack(inbound(300, 0))
    object.__setattr__(track, "get_stats", stats.get_stats)
    return source, track, stats


async def test_the_reader_tells_its_listener_when_its_track_is_not_decoded() -> None:
    source, track, _ = deaf_track()
    listener = Heard()
    reader = AudioReader(track=track, identity="alice", listener=listener, decode_watch_s=0.05)
    # A local track's stream yields (silent) frames by itself; a deaf remote one yields none:
    # stop the reading so that the reader sees none either.
    reader._task.cancel()
    async with asyncio.timeout(3):
        await listener.told.wait()
    await reader.aclose()
    await source.aclose()
    assert listener.not_decoded == [("alice", 300)]


async def test_a_closed_reader_stops_watching() -> None:
    source, track, stats = deaf_track()
    listener = Heard()
    reader = AudioReader(track=track, identity="alice", listener=listener, decode_watch_s=0.2)
    reader._task.cancel()  # no frames (as on a deaf track): the watch would look at the stats
    await reader.aclose()
    await asyncio.sleep(0.3)
    await source.aclose()
    assert stats.asked == 0 and listener.not_decoded == []


@pytest.mark.parametrize("pumps", [[], ["4242"]], ids=["pump-gone", "pump-running"])
async def test_undecoded_audio_is_a_warning_in_the_job_record(
    pumps: list[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    import agents.entry

    monkeypatch.setattr(agents.entry, "audio_pumps", lambda: pumps)
    h = Harness()
    room = h.hub.room("room-1")
    alice = room.add_participant("alice")
    h.start(make_spec())
    await h.running()
    (agent,) = room.agent_identities
    before = AUDIO_NOT_DECODED._value.get()
    assert h.body.health_problem is None
    room.simulate_undecoded_audio(agent, "alice", 300)
    await asyncio.sleep(0.05)
    alice.leave()
    outcome = await h.outcome()
    assert outcome.end_reason == "room_empty"
    (warning,) = outcome.record["warnings"]
    assert "alice" in warning and "300 packets" in warning and "not decoded" in warning
    assert AUDIO_NOT_DECODED._value.get() == before + 1  # agent_audio_not_decoded_total
    # The replica's health: with its audio pump gone this process cannot hear, and the service
    # stops taking jobs; while the pump runs, the report is about that caller's track alone.
    problem = h.body.health_problem
    if pumps:
        assert problem is None
    else:
        assert problem is not None and problem.startswith("audio_not_decoded: job AJ_test1 ")


def test_the_audio_pumps_of_a_process_are_its_threads_of_that_name() -> None:
    from agents.transport.decode_watch import audio_pumps

    def child(name: bytes) -> subprocess.Popen[bytes]:
        code = (f"import ctypes, time; ctypes.CDLL(None).prctl(15, {name!r}, 0, 0, 0); "
                "print('ready', flush=True); time.sleep(30)")  # 15: PR_SET_NAME
        return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)

    pump, other = child(b"SyntheticAudioD"), child(b"something-else")
    try:
        for proc in (pump, other):
            assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        assert audio_pumps(pump.pid) == [str(pump.pid)]
        assert audio_pumps(other.pid) == []
    finally:
        for proc in (pump, other):
            proc.kill()
            proc.wait(5)
    assert audio_pumps(pump.pid) is None  # gone: nothing to list


class Handle:
    def __init__(self, name: str, released: list[str]) -> None:
        self.name = name
        self.released = released
        self.disposed = False

    def dispose(self) -> None:
        self.disposed = True
        self.released.append(self.name)


class Owner:
    def __init__(self, name: str, released: list[str], **attrs: Any) -> None:
        self._ffi_handle = Handle(name, released)
        self.__dict__.update(attrs)


class LeftRoom:
    def __init__(self, released: list[str], *, connected: bool = False) -> None:
        def publication(name: str) -> Owner:
            return Owner(f"pub-{name}", released, _track=Owner(f"track-{name}", released))

        self.local_participant = Owner("me", released, track_publications={
            "TR_a": publication("agent-voice")})
        self.remote_participants = {"alice": Owner("alice", released, track_publications={
            "TR_m": publication("alice-mic"), "TR_x": Owner("pub-unsubscribed", released,
                                                            _track=None)})}
        self._ffi_handle = Handle("room", released)
        self._connected = connected

    def isconnected(self) -> bool:
        return self._connected


def test_a_left_room_releases_its_handles_leaves_first_and_once() -> None:
    released: list[str] = []
    room = LeftRoom(released)
    ours = Owner("our-unpublished-voice", released)
    anchor: list[Any] = [Handle("an earlier room", released)]
    assert release_room(room, tracks=[ours], anchor=anchor) == 9  # type: ignore[arg-type, list-item]
    assert released == ["our-unpublished-voice", "track-agent-voice", "pub-agent-voice",
                        "track-alice-mic", "pub-alice-mic", "pub-unsubscribed", "me", "alice",
                        "room"]
    assert release_room(room, anchor=anchor) == 0  # type: ignore[arg-type]
    assert released[9:] == []


def test_the_first_room_released_keeps_its_room_handle_for_the_process() -> None:
    # The left room's engine holds the SDK's WebRTC runtime: kept, the runtime is never torn
    # down and built again under a next room's connect (docs/livekit.md#deaf-jobs).
    released: list[str] = []
    anchor: list[Any] = []
    first, second = LeftRoom(released), LeftRoom(released)
    assert release_room(first, anchor=anchor) == 7  # type: ignore[arg-type]
    assert "room" not in released and anchor == [first._ffi_handle]
    assert release_room(second, anchor=anchor) == 8  # type: ignore[arg-type]
    assert released.count("room") == 1 and anchor == [first._ffi_handle]


def test_a_room_still_connected_is_not_released() -> None:
    released: list[str] = []
    anchor: list[Any] = []
    assert release_room(LeftRoom(released, connected=True), anchor=anchor) == 0  # type: ignore[arg-type]
    assert released == [] and anchor == []


def test_a_departed_participant_releases_its_tracks_publications_and_itself() -> None:
    released: list[str] = []
    room = LeftRoom(released, connected=True)
    alice = room.remote_participants["alice"]
    assert release_participant(alice) == 4  # type: ignore[arg-type]
    assert released == ["track-alice-mic", "pub-alice-mic", "pub-unsubscribed", "alice"]
    assert release_participant(alice) == 0  # type: ignore[arg-type]
