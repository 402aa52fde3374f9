"""Configuration of what runs inside a job. The service's settings (``app.settings``) nest this
model under the ``agent`` key of ``config.yaml`` (env: ``EXTERNAL_AGENT_AGENT__...``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agents.knowledge.config import KnowledgeConfig
from agents.mcp_tools.config import McpConfig
from agents.messages import TodoItem
from agents.pipeline.config import PipelineConfig


class RoomConfig(BaseModel):
    """Joining and staying in the room."""

    model_config = ConfigDict(extra="forbid")

    connect_timeout: float = Field(10.0, gt=0, description="Deadline for one connect attempt (s).")
    connect_attempts: int = Field(3, ge=1, le=10, description="Attempts before the job fails.")
    connect_backoff: float = Field(0.5, ge=0, description="First retry delay (s), doubled after.")
    noise_suppression: bool = Field(
        True, description="Run rtc.AudioProcessingModule noise suppression on incoming speech."
    )
    allow_local_rooms: bool = Field(
        False,
        description="Accept local:// server URLs (the in-memory room). Development only.",
    )
    video: bool = Field(
        False,
        description="Also subscribe to the camera and screen-share tracks of the people the job "
        "listens to and hand the frames to the conversation (for the vision pipeline).",
    )
    output_sample_rate: int = Field(
        24000, ge=8000, le=48000,
        description="Rate of the agent's published audio track when no speech engine sets it "
        "(with a tts step the track is published at the speech engine's rate).",
    )
    max_audio_backlog_ms: float = Field(
        300.0, ge=20, le=10_000,
        description="A speaker's audio queued longer than this (the process fell behind) is "
        "dropped, but the newest frame, so the agent hears in real time again (ms).",
    )
    route_audio_events: bool = Field(
        True,
        description="Deliver each audio frame from the SDK to its own stream only (one "
        "subscriber routing by stream handle) instead of to every stream of the process; off "
        "restores the SDK's own delivery.",
    )
    native_log_capture: bool = Field(
        False,
        description="Forward the SDK's native log records (about 2,000 per connect, nearly all "
        "debug) to Python's `livekit` logger, as the SDK does by default; off, they stay native "
        "(stderr, filtered by RUST_LOG: errors only when unset) and cost Python nothing.",
    )
    single_peer_connection: bool = Field(
        False,
        description="Join with one WebRTC peer connection for publishing and subscribing "
        "instead of two. The SDK (livekit 1.2) joins with one when not told; measured on "
        "livekit-server 1.13.5, two join a burst of dispatches in about half the CPU and are "
        "seen in the room sooner (docs/livekit.md#dispatch-latency), so the service asks for two.",
    )
    sdk_frame_ms: Literal[10, 20, 30] = Field(
        30,
        description="Audio the SDK hands over per event (ms), handed on whole to the noise "
        "suppressor (one call) and the pipeline: fewer native events, loop wake-ups and calls "
        "per second; turn decisions move by at most 20 ms.",
    )
    participant_wait: float = Field(
        30.0, gt=0,
        description="How long the agent waits after joining for its target participant (or, "
        "for JT_ROOM, anyone) to be in the room before the job ends as absent (s).",
    )


def unique_todo_ids(items: list[TodoItem]) -> list[TodoItem]:
    """Todo item ids name items in tool calls: two items with one id are a configuration error."""
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise ValueError(f"todo item id {item.id!r} appears twice")
        seen.add(item.id)
    return items


class PersonaConfig(BaseModel):
    """Who the agent is. Each field may be overridden per job through the metadata allowlist
    (see :mod:`agents.overrides`)."""

    model_config = ConfigDict(extra="forbid")

    instructions: str = Field(
        "You are a friendly, concise voice assistant. Keep answers to one or two sentences.",
        description="The agent's instructions (system prompt).",
    )
    greeting: str | None = Field(
        None, description="Said once when the agent joins; none when unset."
    )
    voice: str | None = Field(None, description="Voice name for the speech provider.")
    language: str | None = Field(None, description="Language hint for speech recognition (BCP-47).")
    todo_items: list[TodoItem] = Field(
        default_factory=list, description="The todo list the agent works through."
    )

    @field_validator("todo_items")
    @classmethod
    def _unique_todo_ids(cls, items: list[TodoItem]) -> list[TodoItem]:
        return unique_todo_ids(items)


class AgentConfig(BaseModel):
    """Everything about the agent participant that is not a credential."""

    model_config = ConfigDict(extra="forbid")

    persona: PersonaConfig = Field(default_factory=PersonaConfig)
    pipeline: PipelineConfig = Field(
        default_factory=PipelineConfig,
        description="The voice and vision pipelines and the providers they name.",
    )

    room: RoomConfig = Field(default_factory=RoomConfig)
    knowledge: KnowledgeConfig = Field(
        default_factory=KnowledgeConfig,
        description="Approved knowledge retrieved into every turn (needs the knowledge extra).",
    )
    mcp: McpConfig = Field(
        default_factory=McpConfig,
        description="MCP servers whose tools the model may call (needs the mcp extra).",
    )

    @property
    def wants_video(self) -> bool:
        """Subscribe to camera and screen-share tracks: asked for, or the vision pipeline runs."""
        return self.room.video or self.pipeline.vision.enabled

    artifacts_dir: Path | None = Field(
        None, description="Where each finished job's record is written as <job_id>.json."
    )
