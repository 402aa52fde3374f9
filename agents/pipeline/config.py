"""Configuration of the buffered voice pipeline (and the provider table the vision pipeline shares).

Shaped like the seed's buffer configuration: an audio pipeline is a list of steps, each step names
a provider by nickname, and providers are declared once under ``providers``. Providers declared in
``config.yaml`` are merged over the embedded defaults (``silero``, ``moonshine``,
``scripted-intake``, ``piper``), so a configuration only needs to name what it changes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from agents.vision.config import VisionConfig

ProviderType = Literal[
    "openai", "moonshine", "piper", "silero", "scripted-intake", "embedded-vision"
]
ProviderKind = Literal["vad", "stt", "llm", "tts"]
AudioStep = Literal["stt", "llm", "tts", "return"]

_KIND_OF_TYPE: dict[str, ProviderKind] = {
    "silero": "vad",
    "moonshine": "stt",
    "piper": "tts",
    "scripted-intake": "llm",
    "embedded-vision": "llm",
}


class ProviderSpec(BaseModel):
    """One provider, declared once and named by its nickname in pipeline steps."""

    model_config = ConfigDict(extra="forbid")

    type: ProviderType
    kind: ProviderKind | None = Field(
        None, description="Required for `openai` (stt, llm or tts); implied by the other types."
    )
    model: str | None = Field(None, description="Model name (openai) or size (moonshine).")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint (Ollama, vLLM).")
    api_key: SecretStr | None = Field(None, description="Credential; never logged.")
    voice: str | None = Field(None, description="Default voice (openai tts).")
    language: str | None = Field(None, description="Language hint (openai stt).")
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    vision: bool = Field(False, description="The openai llm accepts images.")
    model_path: str | None = Field(None, description="Piper .onnx voice file.")
    speaker_id: int | None = Field(None, ge=0)
    length_scale: float = Field(1.0, gt=0.1, le=5.0, description="Piper speaking rate (>1 slower).")
    timeout: float = Field(10.0, gt=0, le=300, description="Seconds per attempt / first chunk.")
    chunk_timeout: float | None = Field(
        None, gt=0, le=300, description="Seconds between stream chunks (default: timeout)."
    )
    attempts: int = Field(2, ge=1, le=5, description="Attempts for retryable errors.")
    threads: int = Field(1, ge=1, le=16, description="onnxruntime threads (embedded providers).")
    int8: bool = Field(
        True, description="moonshine: the decoder's matrix products in int8 (dynamic "
        "quantization, about twice as fast); false keeps them float32.",
    )
    streaming: bool = Field(
        True, description="piper: a sentence's audio a window at a time as the vocoder makes "
        "it (first audio after about a third of the sentence's work); false: whole sentences.",
    )
    gate_dbfs: float | None = Field(
        -70.0, lt=0, description="silero: windows quieter than this (dBFS) are silence without "
        "running the model; null runs it on every window.",
    )

    @model_validator(mode="after")
    def _kind_matches_type(self) -> ProviderSpec:
        implied = _KIND_OF_TYPE.get(self.type)
        if implied is None:
            if self.kind is None or self.kind == "vad":
                raise ValueError("an openai provider needs kind: stt, llm or tts")
        elif self.kind is None:
            self.kind = implied
        elif self.kind != implied:
            raise ValueError(f"a {self.type} provider is a {implied}, not a {self.kind}")
        if self.type == "moonshine" and self.model not in (None, "base", "tiny"):
            raise ValueError('a moonshine model is "base" or "tiny"')
        return self

    @property
    def resolved_kind(self) -> ProviderKind:
        assert self.kind is not None  # set by the validator
        return self.kind


DEFAULT_PROVIDERS: dict[str, dict[str, Any]] = {
    "silero": {"type": "silero"},
    "moonshine": {"type": "moonshine", "model": "base"},
    "scripted-intake": {"type": "scripted-intake"},
    "piper": {"type": "piper"},
    "embedded-vision": {"type": "embedded-vision"},
}


def _audio_steps() -> list[AudioStep]:
    return ["stt", "llm", "tts", "return"]


class AudioPipelineConfig(BaseModel):
    """The audio pipeline: ``stt`` first, ``return`` last, ``llm`` and ``tts`` optional."""

    model_config = ConfigDict(extra="forbid")

    pipeline: list[AudioStep] = Field(default_factory=lambda: _audio_steps())
    stt: str = "moonshine"
    llm: str | None = "scripted-intake"
    tts: str | None = "piper"

    @field_validator("pipeline", mode="before")
    @classmethod
    def _alias_steps(cls, value: Any) -> Any:
        # The seed's buffer configuration spells the model step "ttllm".
        if isinstance(value, list):
            return ["llm" if step == "ttllm" else step for step in value]
        return value

    @model_validator(mode="after")
    def _valid_order(self) -> AudioPipelineConfig:
        steps = self.pipeline
        if len(set(steps)) != len(steps):
            raise ValueError("a pipeline step appears twice")
        if not steps or steps[0] != "stt" or steps[-1] != "return":
            raise ValueError('the audio pipeline starts with "stt" and ends with "return"')
        order = ["stt", "llm", "tts", "return"]
        if [s for s in order if s in steps] != steps:
            raise ValueError('audio steps run in the order "stt", "llm", "tts", "return"')
        if "tts" in steps and "llm" not in steps:
            raise ValueError('"tts" needs an "llm" step before it')
        if "llm" in steps and not self.llm:
            raise ValueError('the "llm" step needs audio.llm (a provider nickname)')
        if "tts" in steps and not self.tts:
            raise ValueError('the "tts" step needs audio.tts (a provider nickname)')
        return self

    def has(self, step: AudioStep) -> bool:
        return step in self.pipeline


class VisionPipelineConfig(VisionConfig):
    """The vision pipeline (``agents.vision``): its sampling and description settings
    (:class:`agents.vision.config.VisionConfig`), whether it runs, and which declared providers
    its ``visionllm`` and ``tts`` steps use (they share the provider table)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        False, description="Subscribe to camera and screen-share tracks and run the pipeline."
    )
    llm: str = Field("embedded-vision", description="Provider nickname of the visionllm step.")
    tts: str | None = Field("piper", description="Provider nickname of the tts step.")

    @model_validator(mode="after")
    def _tts_named(self) -> VisionPipelineConfig:
        if self.speaks and not self.tts:
            raise ValueError('the "tts" step needs vision.tts (a provider nickname)')
        return self


BACKCHANNELS = ("hm", "hmm", "mm", "mhm", "mm-hmm", "mmhmm", "uh-huh", "uh", "um", "ah", "oh",
                "ha", "aha", "yeah", "yep", "okay", "ok", "right", "sure", "i see")
"""The default ``turn.backchannels`` (English): a listener's acknowledgements and fillers."""


MIN_HEARD_SILENCE_MS = 32
"""smart-turn: silence a look asked ahead (``look_ahead_ms``) must have heard, to extend."""


class TurnConfig(BaseModel):
    """When a user turn ends, and when the user takes the floor from the agent."""

    model_config = ConfigDict(extra="forbid")

    vad_threshold: float = Field(0.5, gt=0.0, lt=1.0, description="Speech probability to start.")
    silence_ms: int = Field(500, ge=100, le=5000, description="Silence that ends a turn.")
    min_speech_ms: int = Field(250, ge=0, le=5000, description="Shorter speech is not a turn.")
    prefix_ms: int = Field(200, ge=0, le=1000, description="Audio kept from before speech onset.")
    interim_interval_ms: int = Field(
        1000, ge=200, le=10000, description="Interim transcript cadence (STTs that support it)."
    )
    barge_in_min_ms: int = Field(
        200, ge=0, le=5000, description="Speech over the agent that pauses it (a barge-in).",
    )
    barge_in_confidence: float = Field(
        0.7, ge=0.0, lt=1.0, description="Mean voice probability that speech needs to pause "
        "the agent (louder, clearer speech than a cough or a click).",
    )
    barge_in_fast_ms: int = Field(
        64, ge=0, le=5000, description="Speech over the agent at barge_in_fast_confidence that "
        "pauses it sooner than barge_in_min_ms (0: off; two VAD windows by default). Only "
        "pauses: a noise still resumes (needs false_interruption_timeout > 0).",
    )
    barge_in_fast_confidence: float = Field(
        0.9, ge=0.0, lt=1.0, description="Mean voice probability that barge_in_fast_ms needs.",
    )
    paused_min_speech_ms: int = Field(
        64, ge=0, le=5000, description="Speech over the paused agent (after a barge-in pause) is "
        "a turn whose words decide from this much speech on, when that is less than "
        "min_speech_ms: a quick 'Wait.' stops the agent instead of counting as a noise.",
    )
    backchannels: list[str] = Field(
        default_factory=lambda: list(BACKCHANNELS), description="Words that, alone, are no "
        "interruption: a turn over the paused agent with only these lets it resume "
        "(compared without case and punctuation; [] : any words stop it).",
    )
    false_interruption_timeout: float = Field(
        1.0, ge=0.0, le=10.0, description="Seconds after a barge-in pause within which words "
        "must follow; otherwise the agent resumes its answer (0: a barge-in stops it at once).",
    )
    max_turn_seconds: float = Field(30.0, gt=1, le=300, description="A longer turn is cut here.")
    detector: Literal["silence", "smart-turn"] = Field(
        "silence", description="How a turn's end is decided: `silence` (after silence_ms of "
        "silence) or `smart-turn` (the Smart Turn model asked at each pause; see pause_ms).",
    )
    pause_ms: int = Field(
        200, ge=64, le=2000, description="Silence after which a pause counts: smart-turn asks "
        "its model, and the final transcript starts speculatively (see speculative).",
    )
    speculate_ms: int | None = Field(
        None, ge=32, le=2000, description="With speculative: silence after which the final "
        "transcript (and the speculative answer) starts; null: when smart-turn first asks its "
        "model (pause_ms less look_ahead_ms), or at pause_ms with the silence detector. No "
        "longer than pause_ms.",
    )
    look_ahead_ms: int = Field(
        128, ge=0, le=1000, description="smart-turn: the model is asked this much before each "
        "look (pause_ms, recheck_ms), on the utterance with its silence so far extended to the "
        "look's by repeating that silence, so its answer is there when the silence reaches the "
        "look; a turn it judges complete still ends only then, and not if the speaker goes on "
        "before. At most pause_ms less 32 (some silence heard to extend); 0: asked at the look.",
    )
    end_threshold: float = Field(
        0.5, gt=0.0, lt=1.0, description="smart-turn: completion probability that ends a turn.",
    )
    max_silence_ms: int = Field(
        2000, ge=200, le=10000, description="smart-turn: silence that ends a turn the model "
        "judged incomplete.",
    )
    recheck_ms: list[int] | None = Field(
        None, max_length=8, description="smart-turn: longer silences (ms after the end of "
        "speech, rising, each above pause_ms) at which the model is asked again while it "
        "judges the turn incomplete: its judgement changes with the silence it hears. A look "
        "at or after silence_ms ends a turn only in a pause the silence detector would have "
        "ended it in too. null: once more at twice pause_ms; []: only at pause_ms.",
    )
    sentence_end_ms: int | None = Field(
        None, ge=100, le=10000, description="smart-turn: when the model judges a turn "
        "incomplete but the pause's transcript ends a sentence (. ! ?), the turn ends after "
        "this much silence instead of max_silence_ms (needs speculative); null: off.",
    )
    smart_turn_model: str | None = Field(
        None, description="smart-turn: path of the .onnx file (default: the one `make install` "
        "fetches into agents/providers/models).",
    )
    speculative: bool = Field(
        True, description="Start the final transcript at the first pause; kept if the turn "
        "ends there, dropped if the speaker goes on.",
    )
    segment_gap_ms: int = Field(
        96, ge=0, le=1000, description="Incremental recognition: silence inside speech at "
        "which an interim transcript becomes a segment that later transcripts (the final "
        "too) do not recognise again; pauses the speaker goes on from always cut (0: only "
        "they do).",
    )
    speculative_answer: Literal["off", "text", "speech"] = Field(
        "speech", description="With speculative: when the pause's transcript is ready (and the "
        "agent is idle), start the model's answer to it (`text`), and synthesise its first "
        "clause into a held buffer (`speech`); kept if the turn ends in that pause, dropped if "
        "the speaker goes on. Tool calls never run speculatively.",
    )

    @property
    def paused_turn_ms(self) -> int:
        """Speech over the paused agent that is a turn (its words decide): the shorter of
        ``min_speech_ms`` and ``paused_min_speech_ms``."""
        return min(self.min_speech_ms, self.paused_min_speech_ms)

    @property
    def looks_ms(self) -> tuple[int, ...]:
        """smart-turn: the silences (ms) at which a pause asks the end-of-turn model: pause_ms,
        then recheck_ms (by default twice pause_ms), those shorter than max_silence_ms."""
        later = [2 * self.pause_ms] if self.recheck_ms is None else self.recheck_ms
        return tuple(ms for ms in (self.pause_ms, *later) if ms < self.max_silence_ms)

    @property
    def asks_ms(self) -> tuple[int, ...]:
        """smart-turn: the silences (ms) at which each of :attr:`looks_ms` is asked:
        ``look_ahead_ms`` sooner, but after at least 32 ms of silence."""
        return tuple(max(MIN_HEARD_SILENCE_MS, ms - self.look_ahead_ms) for ms in self.looks_ms)

    @property
    def first_speculate_ms(self) -> int:
        """The silence (ms) at which the speculative transcript starts: ``speculate_ms``, or
        by default with the model's first ask (smart-turn) or at ``pause_ms`` (silence)."""
        if self.speculate_ms is not None:
            return self.speculate_ms
        if self.detector == "smart-turn" and self.asks_ms:
            return self.asks_ms[0]
        return self.pause_ms

    @model_validator(mode="after")
    def _pause_before_max_silence(self) -> TurnConfig:
        if self.detector == "smart-turn" and self.max_silence_ms <= self.pause_ms:
            raise ValueError("turn.max_silence_ms must be longer than turn.pause_ms")
        looks = [self.pause_ms, *(self.recheck_ms or ())]
        if any(b <= a for a, b in zip(looks, looks[1:], strict=False)):
            raise ValueError(f"turn.recheck_ms must rise, each above pause_ms ({self.pause_ms}): "
                             f"{self.recheck_ms}")
        if self.detector == "smart-turn" and looks[-1] >= self.max_silence_ms \
                and self.recheck_ms:
            raise ValueError(f"turn.recheck_ms must stay below max_silence_ms "
                             f"({self.max_silence_ms}): {self.recheck_ms}")
        if "look_ahead_ms" in self.model_fields_set and self.detector == "smart-turn" \
                and self.pause_ms - self.look_ahead_ms < MIN_HEARD_SILENCE_MS:
            raise ValueError(f"turn.look_ahead_ms must leave at least {MIN_HEARD_SILENCE_MS} ms "
                             f"of pause_ms ({self.pause_ms}): {self.look_ahead_ms}")
        if self.speculate_ms is not None and self.speculate_ms > self.pause_ms:
            raise ValueError("turn.speculate_ms must not be longer than turn.pause_ms")
        return self


class PipelineConfig(BaseModel):
    """The ``pipeline`` section of ``config.yaml``."""

    model_config = ConfigDict(extra="forbid")

    audio: AudioPipelineConfig = Field(default_factory=AudioPipelineConfig)
    vision: VisionPipelineConfig = Field(default_factory=VisionPipelineConfig)
    providers: dict[str, ProviderSpec] = Field(default_factory=dict)
    vad: str = "silero"
    turn: TurnConfig = Field(default_factory=TurnConfig)
    max_consecutive_failures: int = Field(3, ge=1, le=20)
    max_tool_rounds: int = Field(4, ge=1, le=10, description="Model calls per turn with tools.")
    history_messages: int = Field(40, ge=2, le=500, description="Chat history kept per call.")
    fallback_line: str = Field(
        "Sorry, I had a problem there. Could you say that again?", min_length=1, max_length=300
    )
    goodbye_line: str = Field(
        "Thank you for your time. Goodbye!", min_length=1, max_length=300,
        description="Said on end_call when the model said nothing itself.",
    )
    handoff_line: str = Field(
        "Let me connect you with a person.", min_length=1, max_length=300,
        description="Said on a handoff when the model said nothing itself.",
    )
    recovery_line: str | None = Field(
        "Sorry, I lost the line for a moment. I'm back.", max_length=300,
        description="Said when the call continues on another replica after failover (instead of "
        "the greeting); none when null.",
    )

    @field_validator("providers", mode="before")
    @classmethod
    def _merge_defaults(cls, value: Any) -> Any:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            return value
        merged: dict[str, Any] = dict(DEFAULT_PROVIDERS)
        merged.update(value)
        return merged

    @model_validator(mode="after")
    def _steps_name_declared_providers(self) -> PipelineConfig:
        if not self.providers:  # the default_factory bypasses the merge validator
            self.providers = {
                k: ProviderSpec.model_validate(v) for k, v in DEFAULT_PROVIDERS.items()
            }
        wanted: list[tuple[str, str | None, ProviderKind]] = [("vad", self.vad, "vad")]
        audio = self.audio
        wanted.append(("audio.stt", audio.stt, "stt"))
        if audio.has("llm"):
            wanted.append(("audio.llm", audio.llm, "llm"))
        if audio.has("tts"):
            wanted.append(("audio.tts", audio.tts, "tts"))
        if self.vision.enabled:
            wanted.append(("vision.llm", self.vision.llm, "llm"))
            if self.vision.speaks:
                wanted.append(("vision.tts", self.vision.tts, "tts"))
        for where, nickname, kind in wanted:
            spec = self.providers.get(nickname or "")
            if spec is None:
                raise ValueError(f"{where} names {nickname!r}, which is not in providers")
            if spec.resolved_kind != kind:
                raise ValueError(
                    f"{where} needs a {kind} provider; {nickname!r} is a {spec.resolved_kind}"
                )
        return self

    def nicknames_in_use(self) -> list[str]:
        """Providers the enabled pipelines name, in a stable order, without repeats."""
        names: list[str | None] = [self.vad, self.audio.stt]
        if self.audio.has("llm"):
            names.append(self.audio.llm)
        if self.audio.has("tts"):
            names.append(self.audio.tts)
        if self.vision.enabled:
            names.append(self.vision.llm)
            if self.vision.speaks:
                names.append(self.vision.tts)
        out: list[str] = []
        for n in names:
            if n and n not in out:
                out.append(n)
        return out
