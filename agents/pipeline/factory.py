"""How the room participant gets a conversation for a job: one factory per service, built from
the configuration, holding the shared providers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from agents.config import PersonaConfig
from agents.io import AudioOutput, Conversation, MessageOutput
from agents.job import JobSpec
from agents.pipeline.config import PipelineConfig
from agents.pipeline.context import FrameSource
from agents.pipeline.extras import TurnExtras
from agents.pipeline.registry import ProviderRegistry
from agents.pipeline.voice import VoicePipeline
from agents.resume import ConversationCheckpoint
from agents.tools import AgentTools, TodoBoard

log = structlog.get_logger("agents.pipeline.factory")


class ConversationFactory:
    """Callable with keyword arguments ``spec, audio, messages, persona`` (and optionally
    ``frames`` and ``extras``); returns a fresh :class:`VoicePipeline` per job. ``aclose``
    closes the shared providers (call it when the service stops)."""

    def __init__(self, *, config: PipelineConfig, registry: ProviderRegistry) -> None:
        self.config = config
        self.registry = registry

    def __call__(
        self,
        *,
        spec: JobSpec,
        audio: AudioOutput,
        messages: MessageOutput,
        persona: PersonaConfig,
        frames: FrameSource | None = None,
        audience: asyncio.Event | None = None,
        extras: TurnExtras | None = None,
        resume: ConversationCheckpoint | None = None,
        on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
    ) -> VoicePipeline:
        cfg = self.config
        reg = self.registry
        # Todo ids are unique: PersonaConfig and the metadata overrides both validate it, and a
        # checkpoint's board was such a board.
        board = resume.board() if resume is not None else TodoBoard(items=list(persona.todo_items))
        tts = reg.tts(cfg.audio.tts) if cfg.audio.has("tts") and cfg.audio.tts else None
        if tts is not None and persona.voice and not tts.accepts_voice(persona.voice):
            log.warning("voice_unknown_default_used", job_id=spec.job_id, voice=persona.voice,
                        provider=tts.name)
            persona = persona.model_copy(update={"voice": None})
        return VoicePipeline(
            config=cfg, spec=spec, audio=audio, messages=messages, persona=persona,
            vad=reg.vad(cfg.vad),
            stt=reg.stt(cfg.audio.stt),
            llm=reg.llm(cfg.audio.llm) if cfg.audio.has("llm") and cfg.audio.llm else None,
            tts=tts,
            tools=AgentTools(board=board),
            frames=frames, extras=extras,
            end_of_turn=reg.end_of_turn(),
            audience=audience, resume=resume, on_checkpoint=on_checkpoint,
        )

    async def aclose(self) -> None:
        await self.registry.aclose()


def make_conversation_factory(
    config: PipelineConfig, *, registry: ProviderRegistry | None = None, load: bool = True
) -> ConversationFactory:
    """Build the factory. With ``load`` (the default) every provider the pipelines name is built
    now, so a missing extra or model fails at startup, not in the first call."""
    reg = registry or ProviderRegistry(config=config)
    if load:
        reg.load()
    return ConversationFactory(config=config, registry=reg)



if TYPE_CHECKING:  # mypy checks that a VoicePipeline is a Conversation

    def _is_conversation(pipeline: VoicePipeline) -> Conversation:
        return pipeline
