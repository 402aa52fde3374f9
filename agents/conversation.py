"""What the configured agent says and hears: the per-service conversation factory.

One :class:`AgentConversations` per service holds the providers the configuration names (built
and warmed once, shared by every job) and builds each job's conversation: the voice pipeline,
and, when ``pipeline.vision.enabled``, a frame store that attaches the speaker's latest images to
voice turns plus the standalone vision pipeline beside it. With ``knowledge`` collections
or ``mcp`` servers configured it also holds the service's knowledge base and MCP connections,
and gives each job its scope of them (:class:`~agents.pipeline.extras.TurnExtras`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from agents.config import AgentConfig
from agents.extras import MissingExtra, extra_of_module
from agents.io import Conversation
from agents.participant import ConversationContext
from agents.pipeline.extras import TurnExtras
from agents.pipeline.factory import ConversationFactory as VoiceFactory
from agents.pipeline.factory import make_conversation_factory
from agents.pipeline.registry import ProviderRegistry
from agents.tooling import ToolingConversation

if TYPE_CHECKING:
    from agents.knowledge import KnowledgeBase
    from agents.mcp_tools import McpPool

log = structlog.get_logger("agents.conversation")


class AgentConversations:
    """``Callable[[ConversationContext], Conversation]`` with ``prewarm`` and ``aclose``."""

    def __init__(self, config: AgentConfig, *, registry: ProviderRegistry | None = None) -> None:
        self._config = config
        if config.pipeline.vision.enabled:
            # The vision modules need the "vision" extra: fail here, at startup, naming it.
            _require_vision()
        self._registry = registry or ProviderRegistry(config=config.pipeline)
        self._voice: VoiceFactory = make_conversation_factory(
            config.pipeline, registry=self._registry, load=True
        )
        # Built now, so a missing extra refuses startup rather than the first call.
        self._knowledge: KnowledgeBase | None = None
        if config.knowledge.enabled:
            from agents.knowledge import KnowledgeBase

            self._knowledge = KnowledgeBase(config=config.knowledge)
        self._mcp: McpPool | None = None
        if config.mcp.enabled:
            from agents.mcp_tools import McpPool

            self._mcp = McpPool(config=config.mcp)

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
        if self._knowledge is not None:
            await self._knowledge.prewarm()
        if self._mcp is not None:
            await self._mcp.prewarm()

    def __call__(self, ctx: ConversationContext) -> Conversation:
        job_tools = None
        knowledge = None
        if self._knowledge is not None:
            knowledge = self._knowledge.for_job(ctx.overrides.get("knowledge"),
                                                job_id=ctx.spec.job_id)
        if self._mcp is not None:
            job_tools = self._mcp.for_job(job_id=ctx.spec.job_id,
                                          headers=ctx.overrides.get("mcp_headers"),
                                          refresh=ctx.overrides.get("mcp_refresh"))
        extras = TurnExtras(knowledge=knowledge, tools=job_tools)
        conversation = self._conversation(ctx, extras)
        if job_tools is None:
            return conversation
        return ToolingConversation(inner=conversation, tools=job_tools)

    def _conversation(self, ctx: ConversationContext, extras: TurnExtras) -> Conversation:
        vision_cfg = self._config.pipeline.vision
        if not vision_cfg.enabled:
            return self._voice(
                spec=ctx.spec, audio=ctx.audio, messages=ctx.messages, persona=ctx.persona,
                audience=ctx.audience, extras=extras, resume=ctx.resumed_conversation,
                on_checkpoint=ctx.checkpoint,
            )
        from agents.vision.conversation import WatchingConversation
        from agents.vision.frames import FrameStore
        from agents.vision.pipeline import VisionPipeline

        frames = FrameStore(config=vision_cfg)
        voice = self._voice(
            spec=ctx.spec, audio=ctx.audio, messages=ctx.messages, persona=ctx.persona,
            frames=frames, audience=ctx.audience, extras=extras,
            resume=ctx.resumed_conversation, on_checkpoint=ctx.checkpoint,
        )
        vision = VisionPipeline(
            frames=frames, llm=self._registry.llm(vision_cfg.llm), messages=ctx.messages,
            config=vision_cfg, speech=voice if vision_cfg.speaks else None,
        )
        return WatchingConversation(inner=voice, frames=frames, vision=vision)

    async def aclose(self) -> None:
        """Close the shared providers, knowledge watcher and MCP connections (when the
        service stops). Idempotent."""
        if self._mcp is not None:
            await self._mcp.aclose()
        if self._knowledge is not None:
            await self._knowledge.aclose()
        await self._voice.aclose()


def _require_vision() -> None:
    try:
        import agents.vision.conversation  # noqa: F401
        import agents.vision.frames  # noqa: F401
        import agents.vision.pipeline  # noqa: F401
    except ImportError as e:
        if extra_of_module(e.name) is None:
            raise
        raise MissingExtra({"vision": ["pipeline.vision"]}) from e
