"""The buffered voice pipeline (issue 4): turns, speech recognition, the model with its tools,
speech, barge-in, per-turn traces. See ``docs/pipeline.md``."""

from agents.pipeline.config import (
    AudioPipelineConfig,
    PipelineConfig,
    ProviderSpec,
    TurnConfig,
    VisionPipelineConfig,
)
from agents.pipeline.context import FrameSource
from agents.pipeline.factory import ConversationFactory, make_conversation_factory
from agents.pipeline.registry import ProviderRegistry, build_provider
from agents.pipeline.trace import PIPELINE_REGISTRY
from agents.pipeline.voice import VoicePipeline

__all__ = [
    "PIPELINE_REGISTRY",
    "AudioPipelineConfig",
    "ConversationFactory",
    "FrameSource",
    "PipelineConfig",
    "ProviderRegistry",
    "ProviderSpec",
    "TurnConfig",
    "VisionPipelineConfig",
    "VoicePipeline",
    "build_provider",
    "make_conversation_factory",
]
