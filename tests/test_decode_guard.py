"""Runaway decodes are cut, and a runaway interim transcript is never published."""

from __future__ import annotations

import asyncio

import pytest
import structlog

from agents.providers.base import Transcript
from agents.providers.decode_guard import trailing_loop, trim_runaway

THE, LOW, MY, NAME, IS = 10, 11, 12, 13, 14


def test_one_token_repeated_to_the_budget_is_cut_to_one_copy() -> None:
    tokens = [THE, LOW] + [MY] * 8
    assert trailing_loop(tokens) == (2, 1)
    assert trim_runaway(tokens, hit_budget=True) == ([THE, LOW, MY], True)


def test_a_repeated_phrase_is_cut_even_when_the_budget_ran_out_mid_phrase() -> None:
    tokens = [THE] + [MY, NAME, IS] * 4 + [MY]
    kept, ran_away = trim_runaway(tokens, hit_budget=True)
    assert ran_away and kept == [THE, MY, NAME, IS]


def test_ordinary_speech_with_a_word_said_twice_is_left_alone() -> None:
    tokens = [MY, NAME, IS, IS, LOW]  # "my name is is Low"
    assert trailing_loop(tokens) is None
    assert trim_runaway(tokens, hit_budget=False) == (tokens, False)


def test_a_budget_hit_without_a_loop_is_still_reported() -> None:
    assert trim_runaway([THE, LOW, MY], hit_budget=True) == ([THE, LOW, MY], True)


@pytest.mark.parametrize("degenerate", [False, True])
async def test_interim_transcripts_from_runaway_decodes_are_not_published(
    degenerate: bool,
) -> None:
    from agents.pipeline.interim import InterimTranscripts

    class FakeSTT:
        async def transcribe(self, pcm: object, *, language: object = None) -> Transcript:
            return Transcript(text="The low my", confidence=0.5, degenerate=degenerate)

    class Det:
        speaker = "alice"
        in_speech = True
        transcript_id = "TR_1"

        def utterance(self) -> bytes:
            return b""

    published: list[object] = []
    interims = InterimTranscripts(stt=FakeSTT(), interval_ms=1000, language=None,  # type: ignore[arg-type]
                                  publish=published.append, log=structlog.get_logger("test"))
    await asyncio.wait_for(interims._run(Det(), "TR_1"), 5)  # type: ignore[arg-type]
    assert len(published) == (0 if degenerate else 1)
