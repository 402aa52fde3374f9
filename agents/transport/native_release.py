"""Release a left room's native objects now, not whenever Python's garbage collector runs.

The SDK frees a room, its participants, publications and tracks on the Rust side when their
Python handles are collected. Those objects sit in reference cycles (event emitters, listeners),
so the cyclic collector frees them at an arbitrary later moment. That moment tends to come while
the next job allocates, which is while the next room connects: the previous room's WebRTC objects
are then torn down in the middle of the new room's setup. On the real server this left every job
of a replica deaf after an idle moment (docs/livekit.md#deaf-jobs): the process's audio pump (the
SDK's ``SyntheticAudioDevice`` thread, which makes WebRTC decode remote audio) was gone while new
rooms went on receiving RTP. Releasing the handles of a participant as it departs, and the rest
of the room's as the job leaves, puts that teardown where it belongs: at the end of the job that
owned it.

Only for what is gone (a departed participant, a room that has left): a handle released here is
never used again, and the SDK's own finalisers skip handles already released.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from livekit import rtc


def _publication_handles(participant: Any) -> Iterator[Any]:
    publications: Iterable[Any] = participant.track_publications.values()
    for publication in list(publications):
        track = getattr(publication, "_track", None)
        if track is not None:
            yield getattr(track, "_ffi_handle", None)
        yield getattr(publication, "_ffi_handle", None)


def _handles(room: rtc.Room, tracks: Iterable[rtc.Track]) -> Iterator[Any]:
    """Every native handle a left room still holds, leaves first (tracks, then publications,
    then participants, then the room)."""
    for track in tracks:
        yield getattr(track, "_ffi_handle", None)
    participants: list[Any] = [room.local_participant, *room.remote_participants.values()]
    for participant in participants:
        yield from _publication_handles(participant)
    for participant in participants:
        yield getattr(participant, "_ffi_handle", None)
    yield getattr(room, "_ffi_handle", None)


def _dispose(handles: Iterable[Any]) -> int:
    released = 0
    for handle in handles:
        if handle is not None and not handle.disposed:
            handle.dispose()
            released += 1
    return released


def release_participant(participant: rtc.RemoteParticipant) -> int:
    """Release a departed participant's handles (its tracks, publications and itself): the SDK
    has dropped it from the room by the time it reports the departure, and so has the
    transport (its readers and pumps stopped). Returns how many were live."""
    return _dispose([*_publication_handles(participant), getattr(participant, "_ffi_handle", None)])


_ANCHOR: list[Any] = []
"""The native handle of the first room this process released, kept for the process's life."""


def release_room(
    room: rtc.Room, *, tracks: Iterable[rtc.Track] = (), anchor: list[Any] = _ANCHOR
) -> int:
    """Release the native handles of ``room`` (which has left) and of ``tracks`` (ours, which
    the room may no longer list among its publications); each handle is released once; returns
    how many were released.

    The first room released keeps its own room handle for the life of the process: a left
    room's engine holds the SDK's WebRTC runtime (peer connection factory, audio pump), so
    the runtime is built once and never torn down and built again under a next room's connect.
    ``anchor`` holds that handle (the process's own list unless a test gives one).
    """
    if room.isconnected():
        return 0  # still in use: only a left room is released
    tracks = list(tracks)
    try:
        handles = list(_handles(room, tracks))
    except Exception:  # a room that never connected has no local participant
        handles = [*(getattr(t, "_ffi_handle", None) for t in tracks),
                   getattr(room, "_ffi_handle", None)]
    own = getattr(room, "_ffi_handle", None)
    if not anchor and own is not None and not own.disposed:
        anchor.append(own)
    return _dispose(h for h in handles if h not in anchor)
