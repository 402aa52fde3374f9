"""Builds providers from their declarations. Vendor modules are imported lazily, so an optional
extra that is not installed only matters when a pipeline names a provider that needs it.

One registry serves every job of the service: providers are stateless per call (a VAD hands out
a stream per speaker), so the models load once and are shared.
"""

from __future__ import annotations

import structlog

from agents.extras import MissingExtra, extra_of_module
from agents.pipeline.config import PipelineConfig, ProviderSpec
from agents.providers.base import LLM, STT, TTS, VAD, CallPolicy, Provider
from agents.providers.errors import ProviderUnavailable
from agents.providers.smart_turn import SmartTurn

log = structlog.get_logger("agents.pipeline.registry")


def _policy(spec: ProviderSpec) -> CallPolicy:
    return CallPolicy(
        timeout=spec.timeout,
        chunk_timeout=spec.chunk_timeout or spec.timeout,
        attempts=spec.attempts,
    )


def _secret(spec: ProviderSpec) -> str:
    return spec.api_key.get_secret_value() if spec.api_key is not None else ""


def build_provider(nickname: str, spec: ProviderSpec) -> Provider:
    """Construct one provider. Raises :class:`ProviderUnavailable` when its package is missing
    (:class:`~agents.extras.MissingExtra`, naming the extra, when an extra brings it)."""
    try:
        return _build(nickname, spec)
    except ImportError as e:
        extra = extra_of_module(e.name)
        if extra is not None:
            raise MissingExtra({extra: [f"provider {nickname!r}"]}) from e
        raise ProviderUnavailable(
            f"provider type {spec.type!r} needs an optional package that is not installed "
            f"({e.name or e}); install the matching extra",
            provider=nickname,
        ) from e


def _build(nickname: str, spec: ProviderSpec) -> Provider:
    policy = _policy(spec)
    if spec.type == "silero":
        from agents.providers.silero_vad import SileroVAD

        return SileroVAD(name=nickname, threads=spec.threads, gate_dbfs=spec.gate_dbfs)
    if spec.type == "moonshine":
        from agents.providers.moonshine_stt import MoonshineSTT  # type: ignore[import-not-found,unused-ignore]

        stt: Provider = MoonshineSTT(
            name=nickname, model="tiny" if spec.model == "tiny" else "base",
            threads=spec.threads, int8=spec.int8, policy=policy,
        )
        return stt
    if spec.type == "piper":
        from agents.providers.piper_tts import PiperTTS

        return PiperTTS(
            name=nickname, model_path=spec.model_path, speaker_id=spec.speaker_id,
            length_scale=spec.length_scale, threads=spec.threads, streaming=spec.streaming,
            policy=policy,
        )
    if spec.type == "scripted-intake":
        from agents.providers.scripted_intake import ScriptedIntakeLLM

        return ScriptedIntakeLLM(name=nickname, policy=policy)
    if spec.type == "embedded-vision":
        from agents.providers.embedded_vision import EmbeddedVisionLLM  # type: ignore[import-not-found,unused-ignore]

        vision: Provider = EmbeddedVisionLLM(name=nickname, policy=policy)
        return vision
    # openai: one vendor file per kind
    if not spec.model:
        raise ProviderUnavailable("an openai provider needs a model", provider=nickname)
    if spec.kind == "stt":
        from agents.providers.openai_stt import OpenAISTT

        return OpenAISTT(
            name=nickname, model=spec.model, api_key=_secret(spec), base_url=spec.base_url,
            language=spec.language, policy=policy,
        )
    if spec.kind == "llm":
        from agents.providers.openai_llm import OpenAILLM  # type: ignore[import-not-found,unused-ignore]

        llm: Provider = OpenAILLM(
            name=nickname, model=spec.model, api_key=_secret(spec), base_url=spec.base_url,
            temperature=spec.temperature, vision=spec.vision, policy=policy,
        )
        return llm
    from agents.providers.openai_tts import OpenAITTS  # type: ignore[import-not-found,unused-ignore]

    tts: Provider = OpenAITTS(
        name=nickname, model=spec.model, voice=spec.voice or "alloy", api_key=_secret(spec),
        base_url=spec.base_url, policy=policy,
    )
    return tts


class ProviderRegistry:
    """The providers a configuration names, built once and shared by every job."""

    def __init__(
        self, *, config: PipelineConfig, prebuilt: dict[str, Provider] | None = None
    ) -> None:
        self._config = config
        self._providers: dict[str, Provider] = dict(prebuilt or {})
        self._smart_turn: SmartTurn | None = None
        self._closed = False

    def load(self) -> None:
        """Build every provider the enabled pipelines name (loads models: call at startup)."""
        for nickname in self._config.nicknames_in_use():
            self.get(nickname)
        self.end_of_turn()

    def end_of_turn(self) -> SmartTurn | None:
        """The end-of-turn model when ``turn.detector`` is ``smart-turn`` (built once)."""
        turn = self._config.turn
        if turn.detector != "smart-turn":
            return None
        if self._closed:
            raise RuntimeError("provider registry is closed")
        if self._smart_turn is None:
            self._smart_turn = SmartTurn(model_path=turn.smart_turn_model)
            log.info("provider_built", provider=self._smart_turn.name, type="smart-turn",
                     kind="turn")
        return self._smart_turn

    async def prewarm(self) -> None:
        """Build every provider in use and let each load its models now (a few seconds for
        the embedded speech models) rather than in the first call's first turn."""
        self.load()
        for nickname in self._config.nicknames_in_use():
            provider = self._providers[nickname]
            try:
                await provider.prewarm()
            except Exception as e:  # noqa: BLE001 (a provider that cannot warm up loads later)
                log.warning("provider_prewarm_failed", provider=nickname, error=str(e))
        eot = self.end_of_turn()
        if eot is not None:
            try:
                await eot.prewarm()
            except Exception as e:  # noqa: BLE001 (as above)
                log.warning("provider_prewarm_failed", provider=eot.name, error=str(e))

    def get(self, nickname: str) -> Provider:
        if self._closed:
            raise RuntimeError("provider registry is closed")
        provider = self._providers.get(nickname)
        if provider is None:
            spec = self._config.providers.get(nickname)
            if spec is None:
                raise KeyError(nickname)
            provider = build_provider(nickname, spec)
            log.info("provider_built", provider=nickname, type=spec.type, kind=spec.kind)
            self._providers[nickname] = provider
        return provider

    def vad(self, nickname: str) -> VAD:
        provider = self.get(nickname)
        if not isinstance(provider, VAD):
            raise _wrong_kind(provider, "vad", nickname)
        return provider

    def stt(self, nickname: str) -> STT:
        provider = self.get(nickname)
        if not isinstance(provider, STT):
            raise _wrong_kind(provider, "stt", nickname)
        return provider

    def llm(self, nickname: str) -> LLM:
        provider = self.get(nickname)
        if not isinstance(provider, LLM):
            raise _wrong_kind(provider, "llm", nickname)
        return provider

    def tts(self, nickname: str) -> TTS:
        provider = self.get(nickname)
        if not isinstance(provider, TTS):
            raise _wrong_kind(provider, "tts", nickname)
        return provider

    async def aclose(self) -> None:
        """Close every provider built. Idempotent."""
        if self._closed:
            return
        self._closed = True
        providers, self._providers = list(self._providers.values()), {}
        if self._smart_turn is not None:
            providers.append(self._smart_turn)
            self._smart_turn = None
        for provider in providers:
            try:
                await provider.aclose()
            except Exception as e:  # noqa: BLE001 (closing must go on)
                log.warning("provider_close_failed", provider=provider.name, error=str(e))


def _wrong_kind(provider: Provider, kind: str, nickname: str) -> ProviderUnavailable:
    return ProviderUnavailable(
        f"{nickname!r} is a {provider.kind} provider, not a {kind}", provider=nickname
    )
