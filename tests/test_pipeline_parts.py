"""The pipeline's parts on their own: configuration, registry, turn detection, sentence
splitting, speech playout tracking, chat context, traces."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

import numpy as np
import pytest
from fakes import FakeAudioOutput, FakeLLM, FakeSTT, FakeTTS, FakeVAD, FakeVADStream, speech
from prometheus_client import generate_latest
from pydantic import ValidationError

from agents.pipeline.config import PipelineConfig, ProviderSpec, TurnConfig
from agents.pipeline.context import ChatContext
from agents.pipeline.registry import ProviderRegistry, build_provider
from agents.pipeline.speech import SentenceSplitter, SpeechOut
from agents.pipeline.trace import PIPELINE_REGISTRY, TurnTrace
from agents.pipeline.turns import (
    SpeechDiscarded,
    SpeechStarted,
    TurnDetector,
    TurnEnded,
    TurnEvent,
)
from agents.providers.base import ImagePart, ToolCall
from agents.providers.errors import ProviderError, ProviderUnavailable

# --- configuration ---------------------------------------------------------------------------


def test_defaults_are_the_embedded_stack() -> None:
    cfg = PipelineConfig()
    assert cfg.audio.pipeline == ["stt", "llm", "tts", "return"]
    assert cfg.nicknames_in_use() == ["silero", "moonshine", "scripted-intake", "piper"]
    assert cfg.providers["piper"].kind == "tts"


def test_declared_providers_merge_over_the_defaults() -> None:
    cfg = PipelineConfig.model_validate({
        "audio": {"llm": "ollama"},
        "providers": {"ollama": {"type": "openai", "kind": "llm", "model": "llama3.2",
                                 "base_url": "http://127.0.0.1:11434/v1", "api_key": "x"}},
    })
    assert cfg.audio.llm == "ollama" and "moonshine" in cfg.providers
    assert "x" not in repr(cfg.providers["ollama"])  # the key is a SecretStr


def test_seed_spelling_of_the_model_step_is_accepted() -> None:
    cfg = PipelineConfig.model_validate({"audio": {"pipeline": ["stt", "ttllm", "tts", "return"]}})
    assert cfg.audio.pipeline == ["stt", "llm", "tts", "return"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"audio": {"pipeline": ["llm", "return"]}}, 'starts with "stt"'),
        ({"audio": {"pipeline": ["stt", "tts", "llm", "return"]}}, "in the order"),
        ({"audio": {"pipeline": ["stt", "tts", "return"]}}, 'needs an "llm"'),
        ({"audio": {"pipeline": ["stt", "llm", "llm", "return"]}}, "appears twice"),
        ({"audio": {"stt": "nope"}}, "not in providers"),
        ({"audio": {"tts": "moonshine"}}, "needs a tts provider"),
        ({"vad": "piper"}, "needs a vad provider"),
        ({"providers": {"x": {"type": "openai", "model": "m"}}}, "needs kind"),
        ({"providers": {"x": {"type": "piper", "kind": "stt"}}}, "is a tts"),
        ({"providers": {"x": {"type": "moonshine", "model": "huge"}}}, '"base" or "tiny"'),
        ({"turn": {"silence_ms": 10}}, "silence_ms"),
        ({"audio": {"pipeline": ["stt", "return"], "color": "red"}}, "color"),
    ],
)
def test_invalid_configuration_is_refused_with_a_clear_message(
    data: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError) as e:
        PipelineConfig.model_validate(data)
    assert message in str(e.value)


def test_transcription_only_needs_no_model_or_speech_provider() -> None:
    cfg = PipelineConfig.model_validate(
        {"audio": {"pipeline": ["stt", "return"], "llm": None, "tts": None}}
    )
    assert cfg.nicknames_in_use() == ["silero", "moonshine"]


def test_registry_hands_out_prebuilt_providers_by_kind_and_closes_them() -> None:
    cfg = PipelineConfig()
    llm = FakeLLM()
    reg = ProviderRegistry(config=cfg, prebuilt={
        "silero": FakeVAD(), "moonshine": FakeSTT(), "scripted-intake": llm, "piper": FakeTTS(),
    })
    reg.load()
    assert reg.llm("scripted-intake") is llm
    with pytest.raises(ProviderUnavailable, match="not a tts"):
        reg.tts("scripted-intake")
    with pytest.raises(KeyError):
        reg.get("unknown")


async def test_registry_close_is_idempotent() -> None:
    reg = ProviderRegistry(config=PipelineConfig(), prebuilt={"silero": FakeVAD()})
    await reg.aclose()
    await reg.aclose()
    with pytest.raises(RuntimeError):
        reg.get("silero")


def test_missing_optional_package_is_a_clear_provider_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "agents.providers.piper_tts", None)
    with pytest.raises(ProviderUnavailable, match="optional package"):
        build_provider("voice", ProviderSpec(type="piper"))


def test_openai_provider_without_a_model_is_refused() -> None:
    with pytest.raises(ProviderUnavailable, match="needs a model"):
        build_provider("x", ProviderSpec(type="openai", kind="tts"))


# --- turn detection --------------------------------------------------------------------------


def _detector(**turn: int) -> TurnDetector:
    cfg = TurnConfig(**{"silence_ms": 200, "min_speech_ms": 100, "prefix_ms": 100, **turn})
    return TurnDetector(speaker="u", vad=FakeVAD().stream(), config=cfg)


def _pcm(level: int, ms: int) -> np.ndarray:
    return np.full(16 * ms, level, dtype=np.int16)


def _push(det: TurnDetector, *parts: tuple[int, int]) -> list[object]:
    events: list[object] = []
    for level, ms in parts:
        for _ in range(ms // 10):
            events += det.push(_pcm(level, 10))
    return events


def test_turn_ends_after_the_silence_window_with_prefix_audio() -> None:
    det = _detector()
    events = _push(det, (0, 300), (8000, 400), (0, 190))
    assert [type(e) for e in events] == [SpeechStarted] and det.in_speech
    events = _push(det, (0, 10))
    (end,) = events
    assert end.transcript_id == det.transcript_id
    assert isinstance(end, TurnEnded)
    assert end.speech_ms == pytest.approx(400)
    # 100 ms prefix (ending with the onset frame) + the other 390 ms of speech + 200 ms silence
    assert end.pcm.size == 16 * 690
    assert end.decided_ms >= end.end_of_speech_ms


def test_a_pause_shorter_than_the_silence_window_keeps_the_turn_open() -> None:
    det = _detector()
    events = _push(det, (8000, 200), (0, 150), (8000, 200), (0, 200))
    ends = [e for e in events if isinstance(e, TurnEnded)]
    assert len(ends) == 1 and ends[0].speech_ms == pytest.approx(400)


def test_speech_under_the_minimum_is_discarded() -> None:
    det = _detector(min_speech_ms=250)
    events = _push(det, (8000, 200), (0, 200))
    assert isinstance(events[-1], SpeechDiscarded)


def test_long_turns_are_cut_at_the_maximum() -> None:
    cfg = TurnConfig(silence_ms=200, min_speech_ms=100, max_turn_seconds=2)
    det = TurnDetector(speaker="u", vad=FakeVAD().stream(), config=cfg)
    events = _push(det, (8000, 2500))
    ends = [e for e in events if isinstance(e, TurnEnded)]
    assert ends and ends[0].truncated


def test_flush_ends_an_open_turn() -> None:
    det = _detector()
    _push(det, (8000, 300))
    assert isinstance(det.flush(), TurnEnded)
    assert det.flush() is None


class BatchingVADStream(FakeVADStream):
    """FakeVADStream that queues windows until the test calls :meth:`run` (what a batched
    provider does once per loop iteration)."""

    def __init__(self, window: int = 160) -> None:
        super().__init__(window)
        self._queued: list[float] = []
        self._ready: list[float] = []
        self._listener: Callable[[], None] | None = None
        self.fail: ProviderError | None = None

    def submit(self, pcm: np.ndarray) -> int:
        probs = self.push(pcm)
        self._queued += probs
        return len(probs)

    def set_listener(self, listener: Callable[[], None] | None) -> None:
        self._listener = listener

    def take(self) -> list[float]:
        if self.fail is not None:
            error, self.fail = self.fail, None
            raise error
        ready, self._ready = self._ready, []
        return ready

    def run(self) -> None:
        self._ready += self._queued
        self._queued = []
        assert self._listener is not None
        self._listener()


def test_a_gap_reported_while_frames_are_scored_comes_after_their_events() -> None:
    cfg = TurnConfig(silence_ms=200, min_speech_ms=100, prefix_ms=0)
    got: list[TurnEvent] = []
    vad = BatchingVADStream(window=160)
    det = TurnDetector(speaker="u", vad=vad, config=cfg, on_events=lambda d, ev: got.extend(ev),
                       on_error=lambda d, e: pytest.fail(str(e)))
    for _ in range(30):
        det.feed(_pcm(8000, 10))
    vad.run()
    for _ in range(5):
        det.feed(_pcm(0, 10))  # trailing silence, not scored yet
    assert det.gap(300) == []  # queued behind those frames
    assert [type(e) for e in got] == [SpeechStarted]
    vad.run()
    assert [type(e) for e in got] == [SpeechStarted, TurnEnded]



def _summary(events: list[object]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for e in events:
        if isinstance(e, TurnEnded):
            out.append(("end", e.speech_ms, e.pcm.size, e.pcm.tobytes(), e.truncated))
        elif isinstance(e, SpeechDiscarded):
            out.append(("discarded", e.speech_ms))
        else:
            out.append((type(e).__name__,))
    return out


def test_deferred_feed_takes_the_same_decisions_as_push() -> None:
    cfg = TurnConfig(silence_ms=200, min_speech_ms=100, prefix_ms=100)
    rng = np.random.default_rng(3)
    frames = [_pcm(int(level), 10) + rng.integers(-50, 50, 160).astype(np.int16)
              for level in [0] * 30 + [8000] * 40 + [0] * 10 + [8000] * 5 + [0] * 30
              + [8000] * 8 + [0] * 40]
    pushed = TurnDetector(speaker="u", vad=FakeVAD(window=512).stream(), config=cfg)
    expected = [e for f in frames for e in pushed.push(f)]
    got: list[TurnEvent] = []
    per_frame: list[int] = []

    def on_events(det: TurnDetector, events: list[TurnEvent]) -> None:
        per_frame.append(len(events))
        got.extend(events)

    vad = BatchingVADStream(window=512)
    fed = TurnDetector(speaker="u", vad=vad, config=cfg, on_events=on_events,
                       on_error=lambda d, e: pytest.fail(str(e)))
    for i, frame in enumerate(frames):
        fed.feed(frame)
        if i % 3 == 2:  # several frames wait for one run, as when the loop lags
            vad.run()
    vad.run()
    assert len(per_frame) == len(frames)  # every frame reported once, in order
    assert _summary(got) == _summary(expected)
    assert [type(e) for e in expected].count(TurnEnded) == 1
    assert [type(e) for e in expected].count(SpeechDiscarded) == 1


def test_a_failed_batched_run_drops_the_waiting_frames_and_reports_it() -> None:
    cfg = TurnConfig(silence_ms=200, min_speech_ms=100, prefix_ms=100)
    errors: list[ProviderError] = []
    seen: list[TurnEvent] = []
    vad = BatchingVADStream(window=160)
    det = TurnDetector(speaker="u", vad=vad, config=cfg,
                       on_events=lambda d, ev: seen.extend(ev),
                       on_error=lambda d, e: errors.append(e))
    det.feed(_pcm(8000, 10))
    vad.fail = ProviderError("model failed", provider="fake")
    vad.run()
    assert len(errors) == 1 and seen == [] and not det.in_speech
    det.feed(_pcm(8000, 10))
    vad.run()
    assert [type(e) for e in seen] == [SpeechStarted]


def test_deferred_mode_needs_a_batching_stream_and_feed_needs_it() -> None:
    cfg = TurnConfig()
    with pytest.raises(TypeError, match="batches"):
        TurnDetector(speaker="u", vad=FakeVAD().stream(), config=cfg,
                     on_events=lambda d, ev: None, on_error=lambda d, e: None)
    with pytest.raises(RuntimeError, match="on_events"):
        TurnDetector(speaker="u", vad=FakeVAD().stream(), config=cfg).feed(_pcm(0, 10))


# --- sentences -------------------------------------------------------------------------------


def test_sentences_are_cut_as_soon_as_they_end() -> None:
    sp = SentenceSplitter()
    out: list[str] = []
    for tok in ["Hello the", "re, how are", " you today? I am", " fine. Ok."]:
        out += sp.push(tok)
    assert out == ["Hello there, how are you today?"]
    out += sp.push(" ")
    assert out[-1] == "I am fine. Ok."
    assert sp.flush() == []


def test_numbers_and_short_pieces_do_not_split() -> None:
    sp = SentenceSplitter()
    assert sp.push("It costs 3.50 today. ") == ["It costs 3.50 today."]
    assert sp.push("Hi. ") == []
    assert sp.flush() == ["Hi."]


def test_the_first_piece_may_end_at_a_clause_to_start_speaking_sooner() -> None:
    sp = SentenceSplitter()
    out = sp.push("I'm a scripted offline responder, not a language model, and there")
    assert out == ["I'm a scripted offline responder,"]
    out = sp.push(" is nothing, sadly, to ask you. Bye now friend. ")
    assert out == ["not a language model, and there is nothing, sadly, to ask you.",
                   "Bye now friend."]
    assert SentenceSplitter(first_min_chars=0).push("I'm a scripted offline responder, x") == []


def test_long_text_without_punctuation_is_cut_at_a_comma() -> None:
    sp = SentenceSplitter(max_chars=40)
    out = sp.push("one two three four five six, seven eight nine ten eleven twelve")
    assert out[0] == "one two three four five six,"


# --- speech ----------------------------------------------------------------------------------


async def test_speech_streams_20ms_frames_and_cuts_text_at_the_played_position() -> None:
    tts = FakeTTS(rate=24000, seconds_per_char=0.01)
    audio = FakeAudioOutput(sample_rate=24000, auto_play=False)
    heard: list[str] = []
    out = SpeechOut(tts=tts, audio=audio, on_sentence=heard.append)
    a, b = "one two three four five six seven eight nine ten.", "eleven twelve."
    await out.speak(a)
    len_a = audio.captured_seconds  # whole 20 ms frames: the last one padded
    await out.speak(b)
    assert {f.samples_per_channel for f in audio.frames} == {480}
    assert heard == [a, b]
    audio.advance(len_a * 0.5 + 0.001)
    assert out.spoken_text() == "one two three four five"
    played = out.stop()
    assert audio.cleared == 1 and audio.queued_duration == 0
    assert played == pytest.approx(len_a * 0.5 + 0.001)
    assert out.spoken_text() == "one two three four five"  # fixed at the stop
    await out.speak("not spoken.")
    assert tts.texts == [a, b]


# --- context ---------------------------------------------------------------------------------


def test_tool_round_is_all_or_nothing_and_trimming_never_orphans_results() -> None:
    ctx = ChatContext(instructions="sys", max_messages=4)
    call = ToolCall(id="c1", name="update_todo", arguments="{}")
    with pytest.raises(ValueError, match="without results"):
        ctx.add_tool_round(text="", calls=[call], results={})
    assert ctx.history == ()
    ctx.add_user("a")
    ctx.add_tool_round(text="", calls=[call], results={"c1": "{}"})
    ctx.add_user("b")
    ctx.add_assistant("c")
    roles = [m.role for m in ctx.history]
    assert roles[0] != "tool" and len(roles) <= 4


def test_only_the_latest_user_message_keeps_its_images() -> None:
    ctx = ChatContext(instructions="sys")
    img = ImagePart(jpeg=b"x", width=1, height=1)
    ctx.add_user("one", images=[img])
    ctx.add_user("two", images=[img])
    msgs = ctx.messages(todo_context="TODO")
    assert msgs[0].content == "sys\n\nTODO"
    assert [len(m.images) for m in msgs[1:]] == [0, 1]


# --- traces ----------------------------------------------------------------------------------


def test_trace_stages_are_relative_and_exported() -> None:
    t = TurnTrace(kind="voice", origin_ms=1000.0)
    t.mark("end_of_speech", 1000.0)
    t.mark("first_audio", 1250.0)
    t.mark("first_audio", 1900.0)  # only the first time counts
    assert t.stages == {"end_of_speech": 0.0, "first_audio": 250.0}
    msg = t.message()
    assert msg.data.stages["first_audio"] == 250.0 and msg.data.turn_id == t.turn_id
    t.observe()
    text = generate_latest(PIPELINE_REGISTRY).decode()
    assert 'agent_turn_stage_seconds_count{kind="voice",stage="first_audio"}' in text


def test_fake_vad_hears_speech_only_when_loud() -> None:
    s = FakeVAD().stream()
    loud = np.frombuffer(speech(10)[0].data, dtype=np.int16)
    assert s.push(np.concatenate([loud, loud])) == [1.0, 1.0]
    assert s.push(np.zeros(100, dtype=np.int16)) == []
    assert s.push(np.zeros(60, dtype=np.int16)) == [0.0]


# --- the factory the participant calls -------------------------------------------------------


async def test_factory_builds_a_conversation_per_job_with_the_persona_applied() -> None:
    from fakes import FakeMessageOutput
    from pipeline_kit import USER, job_spec

    from agents.config import PersonaConfig
    from agents.messages import TodoItem
    from agents.pipeline.factory import make_conversation_factory

    cfg = PipelineConfig()
    stt, llm, tts = FakeSTT(), FakeLLM(default="Hello there, you."), FakeTTS()
    reg = ProviderRegistry(config=cfg, prebuilt={
        "silero": FakeVAD(), "moonshine": stt, "scripted-intake": llm, "piper": tts,
    })
    factory = make_conversation_factory(cfg, registry=reg)
    item = TodoItem(id="a", description="A", required=True)
    persona = PersonaConfig(instructions="Only French.", voice="joe", todo_items=[item])
    msgs = FakeMessageOutput()
    conv = factory(spec=job_spec(), audio=FakeAudioOutput(), messages=msgs, persona=persona)
    task = asyncio.create_task(conv.run())
    conv.push_text(USER, "bonjour")
    await msgs.wait_for(lambda m: m.type == "transcript_chunk" and m.data.is_final
                        and m.data.participant_id != USER)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert llm.requests[0].messages[0].content.startswith("Only French.")
    assert tts.voices == ["joe"]
    assert "a" in llm.requests[0].messages[0].content  # the todo list is in the context
    await factory.aclose()


def test_duplicate_todo_ids_are_refused_in_config_and_dropped_from_overrides() -> None:
    from agents.config import PersonaConfig
    from agents.messages import TodoItem
    from agents.overrides import parse_overrides

    item = TodoItem(id="a", description="A", required=True)
    with pytest.raises(ValidationError, match="appears twice"):
        PersonaConfig(todo_items=[item, item])
    meta = '{"todo_items": [{"id": "a", "description": "A"}, {"id": "a", "description": "B"}],' \
        ' "greeting": "hi"}'
    overrides = parse_overrides(meta)
    assert overrides.todo_items is None and overrides.greeting == "hi"


def test_enabled_vision_names_a_model_and_accepts_the_vision_step_lists() -> None:
    cfg = PipelineConfig.model_validate({"vision": {"enabled": True, "pipeline": ["visionllm"]}})
    assert cfg.nicknames_in_use()[-1] == "embedded-vision"
    with pytest.raises(ValidationError, match="needs a llm provider"):
        PipelineConfig.model_validate({"vision": {"enabled": True, "llm": "piper"}})
    with pytest.raises(ValidationError, match="vision pipeline must be one of"):
        PipelineConfig.model_validate({"vision": {"pipeline": ["tts", "return"]}})


class _SpeakingFrames:
    """A frame source that records what the pipeline says about who is talking."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []

    def latest_images(self, speaker: str) -> list[ImagePart]:
        return []

    def set_speaking(self, speaker: str, speaking: bool) -> None:
        self.calls.append((speaker, speaking))


async def test_the_vision_side_is_told_when_a_speaker_starts_and_stops_talking() -> None:
    from fakes import silence, speech
    from pipeline_kit import USER, make_kit, running

    frames = _SpeakingFrames()
    kit = make_kit(steps=["stt", "return"], frames=frames)
    async with running(kit):
        await kit.feed_live(speech(600))
        assert frames.calls == [(USER, True)]
        await kit.feed_live(silence(400))
        await kit.msgs.wait_for(lambda m: m.type == "transcript_chunk" and m.data.is_final)
    assert frames.calls == [(USER, True), (USER, False)]


async def test_a_persona_voice_the_speech_engine_lacks_falls_back_to_its_default() -> None:
    from fakes import FakeMessageOutput
    from pipeline_kit import job_spec

    from agents.config import PersonaConfig
    from agents.pipeline.factory import make_conversation_factory

    class OneVoiceTTS(FakeTTS):
        def accepts_voice(self, voice: str) -> bool:
            return voice == "joe"

    cfg = PipelineConfig()
    tts = OneVoiceTTS()
    reg = ProviderRegistry(config=cfg, prebuilt={
        "silero": FakeVAD(), "moonshine": FakeSTT(), "scripted-intake": FakeLLM(default="Hi."),
        "piper": tts,
    })
    factory = make_conversation_factory(cfg, registry=reg)
    for voice, expected in (("alloy", None), ("joe", "joe")):
        msgs = FakeMessageOutput()
        conv = factory(spec=job_spec(), audio=FakeAudioOutput(), messages=msgs,
                       persona=PersonaConfig(voice=voice))
        task = asyncio.create_task(conv.run())
        conv.push_text("user-1", "hello")
        await msgs.wait_for(lambda m: m.type == "transcript_chunk" and m.data.is_final
                            and m.data.participant_id != "user-1")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert tts.voices[-1] == expected
    await factory.aclose()
