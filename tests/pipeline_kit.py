"""Building and driving a VoicePipeline with fakes in tests and benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fakes import (
    FakeAudioOutput,
    FakeEndOfTurn,
    FakeLLM,
    FakeMessageOutput,
    FakeSTT,
    FakeTTS,
    FakeVAD,
)
from livekit import rtc

from agents.config import PersonaConfig
from agents.job import JobSpec
from agents.messages import TodoItem
from agents.pipeline.config import PipelineConfig
from agents.pipeline.context import FrameSource
from agents.pipeline.voice import VoicePipeline
from agents.resume import ConversationCheckpoint
from agents.tools import AgentTools, TodoBoard

AGENT = "ai-agent-AJ_test"
USER = "user-1"

TURN = {"silence_ms": 200, "min_speech_ms": 100, "barge_in_min_ms": 300,
        "interim_interval_ms": 200, "prefix_ms": 100,
        # The fake VAD is sure of every frame: the fast pause would decide every barge-in.
        # Tests of it set it (tests/test_pipeline_resume.py).
        "barge_in_fast_ms": 0}


def job_spec() -> JobSpec:
    return JobSpec(
        job_id="AJ_test", dispatch_id="AD_test", job_type="JT_ROOM", room_name="room",
        server_url="local://room", access_token="token", agent_identity=AGENT,
        agent_name="AI", agent_metadata="{}",
    )


@dataclass
class Kit:
    pipeline: VoicePipeline
    stt: FakeSTT
    llm: FakeLLM
    tts: FakeTTS
    vad: FakeVAD
    audio: FakeAudioOutput
    msgs: FakeMessageOutput
    tools: AgentTools
    task: asyncio.Task[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def feed(self, frames: Iterable[rtc.AudioFrame], speaker: str = USER) -> None:
        for f in frames:
            self.pipeline.push_audio(speaker, f)

    async def feed_live(self, frames: Iterable[rtc.AudioFrame], speaker: str = USER) -> None:
        """Push frames letting the loop run between them (as a real room would)."""
        for f in frames:
            self.pipeline.push_audio(speaker, f)
            await asyncio.sleep(0)

    def agent_finals(self) -> list[Any]:
        return [d for d in self.msgs.transcripts(AGENT) if d.is_final]

    async def agent_final(self, n: int = 1) -> Any:
        await self.msgs.wait_for(lambda m: len(self.agent_finals()) >= n)
        return self.agent_finals()[n - 1]

    async def status(self, status: str, n: int = 1) -> None:
        await self.msgs.wait_for(lambda m: self.msgs.statuses().count(status) >= n)


def make_kit(
    *,
    steps: list[str] | None = None,
    stt: FakeSTT | None = None,
    llm: FakeLLM | None = None,
    tts: FakeTTS | None = None,
    audio: FakeAudioOutput | None = None,
    msgs: FakeMessageOutput | None = None,
    persona: PersonaConfig | None = None,
    todo: list[TodoItem] | None = None,
    frames: FrameSource | None = None,
    turn: dict[str, Any] | None = None,
    end_of_turn: FakeEndOfTurn | None = None,
    resume: ConversationCheckpoint | None = None,
    on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
    **config: Any,
) -> Kit:
    cfg = PipelineConfig.model_validate({
        "audio": {"pipeline": steps or ["stt", "llm", "tts", "return"]},
        "turn": {**TURN, **(turn or {})},
        **config,
    })
    persona = persona or PersonaConfig(instructions="Be brief.", todo_items=todo or [])
    kit = Kit(
        pipeline=None,  # type: ignore[arg-type]
        stt=stt or FakeSTT(), llm=llm or FakeLLM(), tts=tts or FakeTTS(), vad=FakeVAD(),
        audio=audio or FakeAudioOutput(), msgs=msgs or FakeMessageOutput(),
        tools=AgentTools(board=resume.board() if resume is not None
                         else TodoBoard(items=list(persona.todo_items))),
    )
    kit.pipeline = VoicePipeline(
        config=cfg, spec=job_spec(), audio=kit.audio, messages=kit.msgs, persona=persona,
        vad=kit.vad, stt=kit.stt, llm=kit.llm, tts=kit.tts, tools=kit.tools, frames=frames,
        end_of_turn=end_of_turn, resume=resume, on_checkpoint=on_checkpoint,
    )
    return kit


@contextlib.asynccontextmanager
async def running(kit: Kit) -> AsyncIterator[Kit]:
    """Run the pipeline for the block; cancel it afterwards if it is still running."""
    kit.task = asyncio.create_task(kit.pipeline.run(), name="test-pipeline-run")
    await kit.status("listening")
    try:
        yield kit
    finally:
        if not kit.task.done():
            kit.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await kit.task


async def wait_until(cond: Callable[[], bool], within: float = 5.0) -> None:
    """Poll ``cond`` (state that changes without a message, e.g. audio captured)."""

    async def _poll() -> None:
        while not cond():  # noqa: ASYNC110 (no event to wait on in the fakes' state)
            await asyncio.sleep(0.005)

    await asyncio.wait_for(_poll(), within)


def pipeline_tasks() -> list[asyncio.Task[Any]]:
    """Tasks the pipeline started that are still alive."""
    return [
        t for t in asyncio.all_tasks()
        if t.get_name().startswith(("pipeline-", "reply-", "speech-")) and not t.done()
    ]
