"""Says so when a subscribed microphone's audio arrives but is never decoded.

WebRTC decodes remote audio only when the process's audio device pulls playout; the SDK's
device is a synthetic one (its ``SyntheticAudioDevice`` thread). When that pump is gone, RTP
keeps arriving, the track's reader gets no frame at all, and nothing else fails: the agent just
never hears the caller (docs/livekit.md#deaf-jobs). A reader that has had no frame
``after_s`` seconds after the subscription while the track's inbound RTP counts packets is in
that state; this reports it once, with the counts, to the room's listener.

A silent or muted microphone is not this: WebRTC decodes (comfort noise, silence) whatever it
receives, so its reader still gets frames; and a track that received nothing is not either.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from livekit import rtc

log = structlog.get_logger("agents.transport.livekit")

DECODE_WATCH_S = 5.0
"""How long after a subscription a reader may go without a frame before the track is checked."""
MIN_PACKETS = 25
"""Inbound RTP packets (0.5 s of 20 ms Opus) that must have arrived for "not decoded" to hold."""


PUMP_THREAD = "SyntheticAudioD"
"""The SDK's audio pump thread (``SyntheticAudioDevice``) as Linux names it (15 characters)."""


def audio_pumps(pid: int | str = "self") -> list[str] | None:
    """Thread ids of process ``pid``'s WebRTC audio pumps, one per live WebRTC runtime of the
    SDK; ``None`` where threads cannot be listed (no ``/proc``)."""
    tasks = Path(f"/proc/{pid}/task")
    try:
        entries = list(tasks.iterdir())
    except OSError:
        return None
    found = []
    for task in entries:
        with contextlib.suppress(OSError):
            if task.joinpath("comm").read_text().strip() == PUMP_THREAD:
                found.append(task.name)
    return found


@dataclass(frozen=True, slots=True)
class NotDecoded:
    identity: str
    packets: int
    samples_decoded: int


def inbound_counts(stats: list[rtc.stats.RtcStats]) -> tuple[int, int]:
    """(RTP packets received, samples decoded) over a track's inbound RTP streams."""
    packets = samples = 0
    for s in stats:
        if s.HasField("inbound_rtp"):
            packets += s.inbound_rtp.received.packets_received
            samples += s.inbound_rtp.inbound.total_samples_received
    return packets, samples


async def watch_decoding(
    *,
    track: rtc.Track,
    identity: str,
    frames: Callable[[], int],
    report: Callable[[NotDecoded], None],
    after_s: float = DECODE_WATCH_S,
    min_packets: int = MIN_PACKETS,
) -> NotDecoded | None:
    """After ``after_s``, if ``frames()`` is still 0, check the track's inbound RTP; report and
    return what was found when packets arrived but none was decoded, else return None."""
    await asyncio.sleep(after_s)
    if frames():
        return None
    stats: list[rtc.stats.RtcStats] = []
    with contextlib.suppress(Exception):  # a track already gone has no stats: nothing to say
        async with asyncio.timeout(after_s):
            stats = await track.get_stats()
    packets, samples = inbound_counts(stats)
    if frames() or packets < min_packets:
        return None
    found = NotDecoded(identity=identity, packets=packets, samples_decoded=samples)
    log.error("audio_not_decoded", identity=identity, packets=packets,
              samples_decoded=samples, waited_s=after_s)
    report(found)
    return found
