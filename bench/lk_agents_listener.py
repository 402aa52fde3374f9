"""The baseline of ``bench_room_density.py``: a livekit-agents worker that listens.

Runs in the bench-only venv (``.cache/bench-lk-agents``, livekit-agents 1.8.9 with
livekit-plugins-silero), never in the project's: ``python bench/lk_agents_listener.py start``
with ``LIVEKIT_URL``, ``LIVEKIT_API_KEY``, ``LIVEKIT_API_SECRET`` and ``BENCH_AGENT_NAME`` set.
Each job sets ``lk.agent.state``, subscribes to the callers' audio, runs the Silero VAD stream
on it (as an ``AgentSession`` does for turn detection) and publishes one ``transcript_chunk``
final per end of speech, so the bench counts turns the same way for both systems. The load
function is pinned to 0: the bench measures the cost of the jobs it is given, not its CPU-based
admission.
``BENCH_IDLE_PROCESSES`` sets how many job processes it keeps warm (its default: one a core).
"""

from __future__ import annotations

import asyncio
import json
import os

from livekit import rtc
from livekit.agents import AutoSubscribe, JobContext, JobProcess, WorkerOptions, cli, vad
from livekit.plugins import silero


def prewarm(proc: JobProcess) -> None:
    proc.userdata["vad"] = silero.VAD.load()


async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect(auto_subscribe=AutoSubscribe.AUDIO_ONLY)
    # As its AgentSession does when it starts (and as ours does): the state attribute, which is
    # also what tells the room about a participant that publishes nothing at once.
    await ctx.room.local_participant.set_attributes({"lk.agent.state": "listening"})
    model = ctx.proc.userdata["vad"]
    tasks: set[asyncio.Task[None]] = set()

    async def listen(track: rtc.Track, identity: str) -> None:
        audio = rtc.AudioStream(track)
        stream = model.stream()

        async def feed() -> None:
            async for event in audio:
                stream.push_frame(event.frame)

        feeder = asyncio.create_task(feed())
        try:
            async for event in stream:
                if event.type == vad.VADEventType.END_OF_SPEECH:
                    payload = {"type": "transcript_chunk",
                               "data": {"text": "", "is_final": True, "participant_id": identity}}
                    await ctx.room.local_participant.publish_data(
                        json.dumps(payload).encode(), reliable=True, topic="transcript_chunk")
        finally:
            feeder.cancel()

    def on_track(track: rtc.Track, _pub: rtc.RemoteTrackPublication,
                 participant: rtc.RemoteParticipant) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            task = asyncio.create_task(listen(track, participant.identity))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    ctx.room.on("track_subscribed", on_track)
    for participant in ctx.room.remote_participants.values():
        for pub in participant.track_publications.values():
            if pub.track is not None:
                on_track(pub.track, pub, participant)


if __name__ == "__main__":
    idle = os.environ.get("BENCH_IDLE_PROCESSES")
    cli.run_app(WorkerOptions(
        entrypoint_fnc=entrypoint,
        prewarm_fnc=prewarm,
        agent_name=os.environ["BENCH_AGENT_NAME"],
        load_fnc=lambda: 0.0,
        **({"num_idle_processes": int(idle)} if idle else {}),
    ))
