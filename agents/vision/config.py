"""Configuration of the vision pipeline (frames sampled from video tracks, described by a
vision-capable model). Nested in the agent's configuration by whoever wires the pipelines."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_DESCRIBE_PROMPT = (
    "You watch a live video feed for a voice assistant. In one short spoken sentence, say what "
    "changed in the image compared with your previous description. Do not guess at what you "
    "cannot see clearly."
)

VISION_STEPS_SPEAK = ("visionllm", "tts", "return")
VISION_STEPS_TEXT = ("visionllm", "return")
VISION_STEPS_SILENT = ("visionllm",)
_KNOWN_STEPS = (VISION_STEPS_SPEAK, VISION_STEPS_TEXT, VISION_STEPS_SILENT)


class VisionConfig(BaseModel):
    """How often frames are sampled, how they are shrunk, and when the standalone vision
    pipeline describes a change."""

    model_config = ConfigDict(extra="forbid")

    fps: float = Field(1.0, gt=0, le=30, description="Frames sampled per second per track.")
    speaking_fps: float | None = Field(
        None, gt=0, le=30,
        description="Sampling rate while the track's participant is speaking; none = fps.",
    )
    idle_fps: float | None = Field(
        None, gt=0, le=30,
        description="Sampling rate while the participant is silent; none = fps.",
    )
    max_side: int = Field(
        512, ge=32, le=2048, description="Longest side (px) of the sampled image sent to models."
    )
    jpeg_quality: int = Field(80, ge=20, le=100, description="JPEG quality of sampled images.")
    change_threshold: float = Field(
        0.08, gt=0, le=1,
        description=(
            "Mean absolute difference (0..1) of small grayscale thumbnails from the last "
            "described image above which a frame counts as changed."
        ),
    )
    min_interval_s: float = Field(
        10.0, ge=0, description="Shortest time between two descriptions (s)."
    )
    busy_retry_s: float = Field(
        0.5, gt=0, le=10,
        description="While the user or agent is speaking, how often a pending change is retried.",
    )
    max_age_s: float = Field(
        10.0, gt=0,
        description="A track with no frame for this long is not live: its image is not attached.",
    )
    attach_to_voice: bool = Field(
        True, description="Attach the speaker's latest images to voice turns of a vision model."
    )
    describe_prompt: str = Field(
        DEFAULT_DESCRIBE_PROMPT, min_length=1, max_length=4000,
        description="System prompt of the standalone vision pipeline.",
    )
    max_tokens: int = Field(80, ge=8, le=1024, description="Answer limit of one description.")
    pipeline: list[str] = Field(
        default_factory=lambda: list(VISION_STEPS_SPEAK),
        description='Steps: ["visionllm", "tts", "return"] (describe and say), or '
        '["visionllm", "return"] / ["visionllm"] (publish descriptions only).',
    )

    @model_validator(mode="after")
    def _known_pipeline(self) -> Self:
        if tuple(self.pipeline) not in _KNOWN_STEPS:
            raise ValueError(
                f"vision pipeline must be one of {[list(s) for s in _KNOWN_STEPS]}, "
                f"got {self.pipeline}"
            )
        return self

    @property
    def speaks(self) -> bool:
        """Whether descriptions are spoken (the pipeline has ``tts`` and ``return``)."""
        return "tts" in self.pipeline

    def period(self, *, speaking: bool) -> float:
        """Seconds between two samples of one track."""
        rate = (self.speaking_fps if speaking else self.idle_fps) or self.fps
        return 1.0 / rate
