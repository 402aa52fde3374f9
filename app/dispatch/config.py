"""Settings of the two doors a stock LiveKit server uses: native agent dispatch (the worker
websocket) and LiveKit server webhooks. ``app.settings`` nests them as ``worker`` and
``livekit_webhook`` (env: ``EXTERNAL_AGENT_WORKER__...``, ``EXTERNAL_AGENT_LIVEKIT_WEBHOOK__...``).
The LiveKit URL and API key/secret are the service's ``livekit`` settings, not repeated here."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agents.job import JobType

WorkerType = Literal["room", "publisher"]
RuleEvent = Literal["room_started", "participant_joined"]


class WorkerPermissions(BaseModel):
    """What the agent participant may do in the room; sent at registration, the server puts them
    in the token of every job it assigns to this worker."""

    model_config = ConfigDict(extra="forbid")

    can_publish: bool = Field(True, description="Publish tracks (the agent's speech).")
    can_subscribe: bool = Field(True, description="Subscribe to the room's tracks.")
    can_publish_data: bool = Field(True, description="Publish data messages (transcripts etc.).")
    can_update_metadata: bool = Field(True, description="Update its own metadata/attributes.")
    hidden: bool = Field(False, description="Hide the agent from the other participants.")


class DeferSettings(BaseModel):
    """Deferred native dispatch: a room whose job was refused for capacity is remembered, and its
    dispatch re-issued through the LiveKit API (``CreateDispatch``) when a slot frees."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True,
        description="Remember rooms refused for capacity and re-dispatch them, oldest first. "
        "While on, the worker stays `available` to the server at capacity (so offers are heard "
        "and remembered) until max_entries rooms wait.",
    )
    max_entries: int = Field(100, ge=1, le=100_000, description="Rooms remembered at most.")
    ttl: float = Field(
        120.0, gt=0, le=86400, description="A room waiting longer than this is dropped (s)."
    )
    reissue_timeout: float = Field(
        10.0, gt=0, le=300,
        description="A re-issued dispatch holds its slot until its offer arrives or this "
        "passes (s), so one freed slot does not re-issue several rooms.",
    )


class WorkerSettings(BaseModel):
    """Native agent dispatch: the service registers as an agent worker with the LiveKit server
    (``<livekit.url>/agent``) and takes the jobs the server hands it."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True,
        description="Register as a worker when livekit.url, api_key and api_secret are set.",
    )
    agent_name: str = Field(
        "external-agent",
        max_length=128,
        description=(
            "Name jobs are dispatched to (`lk dispatch create --agent-name ...`). An empty name "
            "means automatic dispatch: the server sends a job for every new room."
        ),
    )
    worker_type: WorkerType = Field(
        "room",
        description="`room`: one job per room; `publisher`: one job per publishing participant.",
    )
    permissions: WorkerPermissions = Field(default_factory=WorkerPermissions)
    reconnect_initial_delay: float = Field(
        0.5, gt=0, description="First reconnect delay (s) after the connection drops."
    )
    reconnect_max_delay: float = Field(
        30.0, gt=0, description="Cap of the exponential reconnect delay (s)."
    )
    reconnect_max_attempts: int = Field(
        0, ge=0, description="Consecutive failed connects before giving up; 0 retries forever."
    )
    connect_timeout: float = Field(10.0, gt=0, description="Deadline for connect + register (s).")
    ping_interval: float = Field(10.0, gt=0, description="Seconds between WorkerPing messages.")
    ping_timeout: float = Field(
        30.0, gt=0, description="Reconnect when no WorkerPong arrived for this long (s)."
    )
    status_interval: float = Field(
        5.0, gt=0, description="Seconds between UpdateWorkerStatus (load, job count) messages."
    )
    assignment_timeout: float = Field(
        7.5,
        gt=0,
        description="How long a slot is held after answering `available` while the server "
        "has not sent the JobAssignment yet (s).",
    )

    server_target_load: float = Field(
        0.7, gt=0, le=1.0,
        description="The LiveKit server's `agent.target_load` (0.7 by default): it sends no offer "
        "to a worker reporting a higher load, so the reported load (jobs / max_jobs) is scaled "
        "to reach it only at max_jobs.",
    )
    defer: DeferSettings = Field(
        default_factory=DeferSettings,
        description="Deferred dispatch of rooms refused for capacity (JT_ROOM jobs).",
    )

    @model_validator(mode="after")
    def _check_delays(self) -> WorkerSettings:
        if self.reconnect_max_delay < self.reconnect_initial_delay:
            raise ValueError("reconnect_max_delay must be >= reconnect_initial_delay")
        if self.ping_timeout <= self.ping_interval:
            raise ValueError("ping_timeout must be longer than ping_interval")
        return self


class DispatchRule(BaseModel):
    """When a verified LiveKit webhook event matches, our agent is dispatched into its room.

    Examples: ``{event: room_started, room_pattern: "support-*"}`` or
    ``{event: participant_joined, participant_pattern: "caller-*"}``."""

    model_config = ConfigDict(extra="forbid")

    event: RuleEvent = Field(description="LiveKit webhook event name.")
    room_pattern: str = Field(
        "*", min_length=1, description="Shell-style glob on the room name (case-sensitive)."
    )
    participant_pattern: str = Field(
        "*",
        min_length=1,
        description="Glob on the participant identity (participant_joined only).",
    )
    include_agents: bool = Field(
        False,
        description="participant_joined: also match agent participants (kind AGENT). Off, so an "
        "agent joining never triggers another agent.",
    )
    exclude_identity_prefixes: list[str] = Field(
        default_factory=lambda: ["ai-agent-"],
        description="participant_joined: identities starting with one of these never match "
        "(our own agents' identities start with `ai-agent-`).",
    )
    job_type: JobType | None = Field(
        None,
        description="Job type of the dispatched job. Default: JT_ROOM for room_started, "
        "JT_PARTICIPANT (listen to the joining participant) for participant_joined.",
    )
    metadata: str = Field(
        "",
        max_length=16384,
        description="Job metadata, e.g. a JSON object with per-job overrides (allowlist).",
    )

    @model_validator(mode="after")
    def _check_type(self) -> DispatchRule:
        if self.event == "room_started" and self.job_type not in (None, "JT_ROOM"):
            raise ValueError("room_started has no participant: job_type must be JT_ROOM")
        return self

    def effective_job_type(self) -> JobType:
        if self.job_type is not None:
            return self.job_type
        return "JT_ROOM" if self.event == "room_started" else "JT_PARTICIPANT"


class LiveKitWebhookSettings(BaseModel):
    """``POST /livekit/webhook``: LiveKit server webhooks (signed with the API key/secret),
    turned into jobs by :class:`DispatchRule` s."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True, description="Serve the endpoint (it also needs livekit.api_key/api_secret)."
    )
    rules: list[DispatchRule] = Field(
        default_factory=list,
        description="Dispatch rules, first match wins. No rules: events are verified and ignored.",
    )
    dedup_window: float = Field(
        600.0,
        gt=0,
        description="Seconds an event id is remembered to drop redeliveries. It bounds replays "
        "too: events older than dedup_window - token_leeway, and tokens living longer, are "
        "refused.",
    )
    dedup_max_entries: int = Field(
        10000, ge=1, description="Bound on remembered event ids (oldest dropped first)."
    )
    max_body_bytes: int = Field(
        65536, ge=1024, description="Larger bodies are refused with 413 before any parsing."
    )
    token_leeway: float = Field(
        60.0, ge=0, le=600, description="Clock skew allowed on the token's exp/nbf (s)."
    )

    @model_validator(mode="after")
    def _window_covers_leeway(self) -> LiveKitWebhookSettings:
        if self.dedup_window <= 2 * self.token_leeway:
            raise ValueError("dedup_window must be longer than twice token_leeway")
        return self

    @property
    def max_event_age(self) -> float:
        """Events whose ``createdAt`` is older, and tokens whose ``exp`` lies further ahead, are
        refused: a captured (body, token) pair cannot be replayed once the dedup memory has
        forgotten its event id. (A LiveKit server's webhook tokens live 5 minutes.)"""
        return self.dedup_window - self.token_leeway
