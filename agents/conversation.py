"""What the configured agent says and hears: the per-service conversation factory.

One :class:`AgentConversations` per service holds the providers the configuration names (built
and warmed once, shared by every job) and builds each job's conversation: the voice pipeline,
and, when ``pipeline.vision.enabled``, a frame store that attaches the speaker's latest images to
voice turns plus the standalone vision pipeline beside it.
"""

from __future__ import annotations

import structlog

from agents.config import AgentConfig
from agents.io import Conversation
from agents.participant import ConversationContext
from agents.pipeline.factory import ConversationFactory as VoiceFactory
from agents.pipeline.factory import make_conversation_factory
from agents.pipeline.registry import ProviderRegistry
from agents.vision.conversation import WatchingConversation
from agents.vision.frames import FrameStore
from agents.vision.pipeline import VisionPipeline

log = structlog.get_logger("agents.conversation")


class AgentConversations:
    """``Callable[[ConversationContext], Conversation]`` with ``prewarm`` and ``aclose``."""

    def __init__(self, config: AgentConfig, *, registry: ProviderRegistry | None = None) -> None:
        self._config = config
        self._registry = registry or ProviderRegistry(config=config.pipeline)
        self._voice: VoiceFactory = make_conversation_factory(
            config.pipeline, registry=self._registry, load=True
        )

    @property
    def registry(self) -> ProviderRegistry:
        return self._registry

    @property
    def output_sample_rate(self) -> int | None:
        """The voice pipeline's speech rate: the agent's track is published at it."""
        audio = self._config.pipeline.audio
        if audio.has("tts") and audio.tts:
            return self._registry.tts(audio.tts).sample_rate
        return None

    async def prewarm(self) -> None:
        """Load every model the pipelines name now, not in the first call's first turn."""
        await self._registry.prewarm()

    def __call__(self, ctx: ConversationContext) -> Conversation:
        vision_cfg = self._config.pipeline.vision
        if not vision_cfg.enabled:
            return self._voice(
                spec=ctx.spec, audio=ctx.audio, messages=ctx.messages, persona=ctx.persona,
                audience=ctx.audience,
            )
        frames = FrameStore(config=vision_cfg)
        voice = self._voice(
            spec=ctx.spec, audio=ctx.audio, messages=ctx.messages, persona=ctx.persona,
            frames=frames, audience=ctx.audience,
        )
        vision = VisionPipeline(
            frames=frames, llm=self._registry.llm(vision_cfg.llm), messages=ctx.messages,
            config=vision_cfg, speech=voice if vision_cfg.speaks else None,
        )
        return WatchingConversation(inner=voice, frames=frames, vision=vision)

    async def aclose(self) -> None:
        """Close the shared providers (when the service stops). Idempotent."""
        await self._voice.aclose()
