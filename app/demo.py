"""``make demo``: the main job, end to end, on the embedded defaults. No keys, no network.

1. Starts the real service (uvicorn, the real app) on a free loopback port, in development mode.
2. Puts a simulated caller into an in-memory room (``local://`` server URL) and renders the
   caller's lines with the embedded speech engine.
3. Sends a signed job notification with ``curl``, exactly as a dispatcher would.
4. The caller speaks its lines in real time (48 kHz microphone frames, silence in between) and
   answers when the agent has finished speaking; the agent (Silero VAD, Moonshine speech
   recognition, the scripted intake responder, Piper speech) walks its todo list and ends the call.

Standard output gets every data message the caller receives, one JSON object per line (exactly
the payload a client gets), then a per-turn latency table. The agent's side of the call is written
to ``demo-output/agent.wav``; the job's record to ``demo-output/jobs/<job_id>.json``. The exit
status is non-zero when the call did not complete.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import shutil
import socket
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import uvicorn
from livekit import rtc

from agents.messages import TodoItem
from agents.transport.memory import MemoryRoom, default_hub
from agents.transport.simulated import SimulatedParticipant
from app.logs import configure_logging
from app.main import create_app
from app.security.signatures import sign_headers
from app.settings import Settings

DEMO_SECRET = "demo-webhook-secret-not-for-production"
ADMIN_TOKEN = "demo-admin-token-not-for-production"
ROOM = "demo-room"
CALLER = "caller-1"
MIC_RATE = 48000
FRAME_MS = 10

TODO_ITEMS = [
    TodoItem(id="name", description="the caller's full name", required=True),
    TodoItem(id="issue", description="what the call is about", required=True),
    TodoItem(id="callback", description="a phone number to call back", required=True),
]
CALLER_LINES = [
    "Hello, I need some help with an order.",
    "My name is Alice Johnson.",
    "The package arrived damaged.",
    "You can call me back on five five five, one two three four.",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_settings(out_dir: Path) -> Settings:
    return Settings.model_validate(
        {
            "dev_mode": True,
            "webhook_secrets": [DEMO_SECRET],
            "admin_token": ADMIN_TOKEN,
            # The service mints the agent's room token with these (development values).
            "livekit_api_key": "demo-api-key",
            "livekit_api_secret": "demo-api-secret-for-the-local-room-only",
            "log_level": "warning",
            "max_jobs": 2,
            "agent": {
                "artifacts_dir": str(out_dir / "jobs"),
                "persona": {
                    "greeting": "Hello! I'm the intake assistant. How can I help you today?",
                    "todo_items": [t.model_dump() for t in TODO_ITEMS],
                },
            },
        }
    )


async def _render_lines(lines: list[str]) -> list[np.ndarray]:
    """The caller's lines, spoken by the embedded voice and resampled to 48 kHz."""
    from agents.providers.piper_tts import PiperTTS

    # Whole sentences, each at full peak: the caller's lines are rendered ahead, not streamed.
    tts = PiperTTS(name="caller-voice", length_scale=1.05, streaming=False)
    try:
        out: list[np.ndarray] = []
        for line in lines:
            chunks = [c async for c in tts.synthesize(line)]
            pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
            resampler = rtc.AudioResampler(tts.sample_rate, MIC_RATE, num_channels=1)
            frames = resampler.push(bytearray(pcm.tobytes())) + resampler.flush()
            out.append(np.concatenate([np.frombuffer(f.data, np.int16) for f in frames]))
        return out
    finally:
        await tts.aclose()


class Microphone:
    """Pushes 10 ms frames in real time: the queued line when there is one, silence otherwise."""

    def __init__(self, caller: SimulatedParticipant) -> None:
        self._caller = caller
        self._pending = np.zeros(0, np.int16)
        self._done_speaking = asyncio.Event()
        self._done_speaking.set()

    def say(self, pcm: np.ndarray) -> None:
        self._pending = np.concatenate([self._pending, pcm])
        self._done_speaking.clear()

    async def wait_done(self) -> None:
        await self._done_speaking.wait()

    async def run(self) -> None:
        n = MIC_RATE * FRAME_MS // 1000
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = 0
        while True:
            if self._pending.size:
                chunk, self._pending = self._pending[:n], self._pending[n:]
                if chunk.size < n:
                    chunk = np.pad(chunk, (0, n - chunk.size))
            else:
                chunk = np.zeros(n, np.int16)
                self._done_speaking.set()
            self._caller.push_audio(rtc.AudioFrame(chunk.tobytes(), MIC_RATE, 1, n))
            sent += 1
            delay = start + sent * FRAME_MS / 1000 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)


class AgentRecorder:
    """Reads the agent's published track as a client would, on a timeline with its pauses."""

    def __init__(self, track: rtc.LocalAudioTrack, rate: int) -> None:
        self.rate = rate
        self._stream = rtc.AudioStream.from_track(track=track, sample_rate=rate, num_channels=1)
        self._chunks: list[tuple[float, np.ndarray]] = []
        self._t0 = time.monotonic()

    async def run(self) -> None:
        async for event in self._stream:
            samples = np.frombuffer(event.frame.data, np.int16).copy()
            if samples.any():
                self._chunks.append((time.monotonic() - self._t0, samples))

    def write(self, path: Path) -> float:
        """Write the WAV; silence between utterances is kept (capped at 1 s). Returns seconds."""
        out: list[np.ndarray] = []
        cursor = 0.0
        for at, samples in self._chunks:
            gap = at - cursor
            if gap > 0.05:
                out.append(np.zeros(int(min(gap, 1.0) * self.rate), np.int16))
            out.append(samples)
            cursor = at + samples.size / self.rate
        pcm = np.concatenate(out) if out else np.zeros(0, np.int16)
        path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(self.rate)
            w.writeframes(pcm.tobytes())
        return pcm.size / self.rate

    async def aclose(self) -> None:
        await self._stream.aclose()


class MessagePrinter:
    """Prints every payload the caller receives, one JSON object per line, as it arrives."""

    def __init__(self, caller: SimulatedParticipant) -> None:
        self._caller = caller
        self._printed = 0
        self.messages: list[dict[str, Any]] = []
        self.changed = asyncio.Event()

    def flush(self) -> None:
        received = self._caller.received
        while self._printed < len(received):
            payload = received[self._printed].payload
            self._printed += 1
            self.messages.append(json.loads(payload))
            sys.stdout.write(payload.decode() + "\n")
            self.changed.set()
        sys.stdout.flush()

    async def run(self) -> None:
        while True:
            self.flush()
            await asyncio.sleep(0.02)

    def agent_finals(self) -> int:
        return sum(
            1 for m in self.messages
            if m.get("type") == "transcript_chunk" and m["data"]["is_final"]
            and m["data"]["participant_id"] != CALLER
        )

    def status(self) -> str | None:
        for m in reversed(self.messages):
            if m.get("type") == "agent_status":
                return str(m["data"]["status"])
        return None


def _post_with_curl(port: int, body: bytes) -> dict[str, Any]:
    curl = shutil.which("curl")
    if curl is None:
        raise SystemExit("the demo sends its notification with curl: install curl first")
    headers = sign_headers(body, DEMO_SECRET, timestamp=int(time.time()))
    cmd = [curl, "-sS", "--max-time", "10", "-X", "POST",
           "-H", "Content-Type: application/json"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    cmd += ["--data-binary", "@-", f"http://127.0.0.1:{port}/livekit/agent"]
    print("$ " + " ".join(cmd[:1] + ["..."] + cmd[-1:]), file=sys.stderr)
    done = subprocess.run(cmd, input=body, capture_output=True, check=False, timeout=15)
    if done.returncode != 0:
        raise SystemExit(f"curl failed: {done.stderr.decode().strip()}")
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


STAGE_ORDER = ("end_of_speech", "turn_decided", "final_transcript", "first_token", "first_audio",
               "playout_start", "done")


def _latency_table(messages: list[dict[str, Any]]) -> str:
    rows = [m["data"] for m in messages if m.get("type") == "agent_metrics"]
    if not rows:
        return "(no agent_metrics messages)"
    stages = [s for s in STAGE_ORDER if any(s in r["stages"] for r in rows)]
    for r in rows:
        for k in r["stages"]:
            if k not in stages:
                stages.append(k)
    head = ["turn", "kind", *stages, "interrupted"]
    lines = ["  ".join(f"{h:>14}" for h in head)]
    for i, r in enumerate(rows, 1):
        cells = [str(i), r.get("kind", "")]
        cells += [f"{r['stages'][s]:.0f}" if s in r["stages"] else "-" for s in stages]
        cells.append("yes" if r.get("interrupted") else "no")
        lines.append("  ".join(f"{c:>14}" for c in cells))
    return "\n".join(lines)


async def _wait_for_agent_turn(printer: MessagePrinter, seen_finals: int) -> None:
    """Until the agent has said something new and is listening again."""
    while not (printer.agent_finals() > seen_finals and printer.status() == "listening"):
        printer.changed.clear()
        await printer.changed.wait()


async def run_demo(out_dir: Path, *, limit: float) -> int:
    settings = demo_settings(out_dir)
    print("rendering the caller's lines with the embedded voice...", file=sys.stderr)
    lines = await _render_lines(CALLER_LINES)

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None,
                       log_level="warning", lifespan="on")
    )
    server_task = asyncio.create_task(server.serve(), name="demo.server")
    room: MemoryRoom = default_hub().room(ROOM)
    caller = room.add_participant(CALLER, name="Alice")
    caller.publish_audio()
    mic = Microphone(caller)
    printer = MessagePrinter(caller)
    tasks = [asyncio.create_task(mic.run(), name="demo.mic"),
             asyncio.create_task(printer.run(), name="demo.printer")]
    recorder: AgentRecorder | None = None
    job_id = f"AJ_demo_{int(time.time())}"
    try:
        while not server.started:
            if server_task.done():
                raise SystemExit("the service did not start")
            await asyncio.sleep(0.05)
        # No access_token: the service mints the agent's room token with its API key, as it
        # does for any notification that carries none.
        notification = {
            "job_id": job_id, "dispatch_id": "AD_demo", "job_type": "JT_ROOM",
            "room": {"sid": "RM_demo", "name": ROOM, "created_at": int(time.time())},
            "metadata": "", "server_url": "local://demo", "timestamp": int(time.time()),
        }
        answer = await asyncio.to_thread(
            _post_with_curl, port, json.dumps(notification).encode()
        )
        print(f"service answered: {json.dumps(answer)}", file=sys.stderr)
        if not answer.get("accepted"):
            return 1
        agent = str(answer["participant_identity"])

        async def converse() -> None:
            nonlocal recorder
            await room.wait_for_agents(1)
            while True:
                track = room.agent_audio_track(agent)
                if track is not None:
                    break
                await asyncio.sleep(0.02)
            recorder = AgentRecorder(track, settings.agent.room.output_sample_rate)
            tasks.append(asyncio.create_task(recorder.run(), name="demo.recorder"))
            finals = 0
            for pcm in lines:
                await _wait_for_agent_turn(printer, finals)
                if agent not in room.agent_identities:
                    break
                finals = printer.agent_finals()
                await asyncio.sleep(0.3)
                mic.say(pcm)
                await mic.wait_done()
            await room.wait_for_no_agents()

        conversation = asyncio.create_task(converse(), name="demo.converse")
        watcher = asyncio.create_task(_job_ended(port, job_id), name="demo.watch")
        tasks += [conversation, watcher]
        async with asyncio.timeout(limit):
            await asyncio.wait([conversation, watcher], return_when=asyncio.FIRST_COMPLETED)
            if conversation.done():
                conversation.result()
        printer.flush()
        return await _report(port, job_id, printer, recorder, out_dir)
    except TimeoutError:
        printer.flush()
        print(f"the call did not complete within {limit:.0f} s", file=sys.stderr)
        return 1
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if recorder is not None:
            await recorder.aclose()
        await caller.aclose()
        server.should_exit = True
        with contextlib.suppress(Exception):
            await server_task


async def _job(port: int, job_id: str) -> dict[str, Any]:
    import httpx

    async with httpx.AsyncClient() as client:
        resp = await client.get(
            f"http://127.0.0.1:{port}/jobs/{job_id}",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
    job: dict[str, Any] = resp.json()
    return job


async def _job_ended(port: int, job_id: str) -> None:
    """Returns when the job has ended (whatever the reason): the call is over."""
    while True:
        if (await _job(port, job_id)).get("state") in ("completed", "failed", "cancelled"):
            return
        await asyncio.sleep(0.5)


async def _report(
    port: int, job_id: str, printer: MessagePrinter, recorder: AgentRecorder | None,
    out_dir: Path,
) -> int:
    job = await _job(port, job_id)
    print("\nper-turn latency (ms from the end of user speech):", file=sys.stderr)
    print(_latency_table(printer.messages), file=sys.stderr)
    if recorder is not None:
        seconds = recorder.write(out_dir / "agent.wav")
        print(f"\nagent audio: {out_dir / 'agent.wav'} ({seconds:.1f} s)", file=sys.stderr)
    reason = str(job.get("reason") or job.get("end_reason") or "")
    print(f"job {job_id}: {job.get('state')} ({reason})", file=sys.stderr)
    ok = job.get("state") == "completed" and "call_ended" in reason
    if not ok:
        print("the call did not complete", file=sys.stderr)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo-output"))
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args(argv)
    configure_logging(level="warning")
    # Standard output is for the data messages; the service's logs go to standard error.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stderr)
    return asyncio.run(run_demo(args.out, limit=args.timeout))


if __name__ == "__main__":
    raise SystemExit(main())
