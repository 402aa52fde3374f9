"""The service's configuration: environment over ``config.yaml`` over defaults.

This is the only module that reads the environment. Every setting has an ``EXTERNAL_AGENT_``
variable (nested keys joined with ``__``, e.g. ``EXTERNAL_AGENT_AGENT__ROOM__CONNECT_TIMEOUT``);
a few also answer to the names LiveKit tooling uses: ``LIVEKIT_WEBHOOK_SECRET`` (one secret, or
several separated by commas for rotation), ``LIVEKIT_URL``, ``LIVEKIT_API_KEY`` and
``LIVEKIT_API_SECRET``. The YAML file comes from ``--config`` or ``EXTERNAL_AGENT_CONFIG`` and
mirrors ``config.yaml.example``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from agents.config import AgentConfig
from agents.job import JOB_TYPES, JobType
from app.dispatch.config import LiveKitWebhookSettings, WorkerSettings
from app.jobs.failover import FailoverSettings
from app.jobs.load import LoadSettings
from app.security.failures import AuthFailureSettings
from app.web.config import PlaygroundSettings

CONFIG_ENV = "EXTERNAL_AGENT_CONFIG"

# Values copied from examples and templates; refused outside development mode.
PLACEHOLDER_SECRETS = frozenset(
    {
        "",
        "secret",
        "changeme",
        "changethis",
        "change-me",
        "placeholder",
        "your-secure-webhook-secret",
        "your-webhook-secret",
        "your-secret",
        "devkey",
        "devsecret",
        "test",
        "password",
    }
)
PLACEHOLDER_PREFIXES = ("replace-me", "replace_me", "your-", "your_", "change-me", "changeme")
MIN_SECRET_LENGTH = 16

_yaml_path: ContextVar[Path | None] = ContextVar("external_agent_yaml_path", default=None)


def _split_secrets(value: Any) -> Any:
    """``LIVEKIT_WEBHOOK_SECRET=a,b`` and YAML lists both become a list of secrets."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _is_placeholder(secret: SecretStr | None) -> bool:
    if secret is None:
        return True
    value = secret.get_secret_value().strip().lower()
    return (
        value in PLACEHOLDER_SECRETS
        or value.startswith(PLACEHOLDER_PREFIXES)
        or len(value) < MIN_SECRET_LENGTH
    )


class ClientSettings(BaseSettings):
    """What the CLI's ``sign`` and ``dispatch`` need: no checks beyond types, so they also work
    against a development service."""

    model_config = SettingsConfigDict(
        env_prefix="EXTERNAL_AGENT_",
        env_nested_delimiter="__",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        validation_alias=AliasChoices(
            "webhook_secrets", "EXTERNAL_AGENT_WEBHOOK_SECRETS", "LIVEKIT_WEBHOOK_SECRET"
        ),
        description="Shared HMAC secrets; several for rotation (the first one signs).",
    )
    livekit_url: str | None = Field(
        None,
        validation_alias=AliasChoices("livekit_url", "EXTERNAL_AGENT_LIVEKIT_URL", "LIVEKIT_URL"),
        description="LiveKit server URL, used when a notification carries no server_url.",
    )
    livekit_api_key: str | None = Field(
        None,
        validation_alias=AliasChoices(
            "livekit_api_key", "EXTERNAL_AGENT_LIVEKIT_API_KEY", "LIVEKIT_API_KEY"
        ),
        description="API key used to mint room tokens when a notification carries none.",
    )
    livekit_api_secret: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices(
            "livekit_api_secret", "EXTERNAL_AGENT_LIVEKIT_API_SECRET", "LIVEKIT_API_SECRET"
        ),
        description="API secret paired with livekit_api_key.",
    )
    webhook_path: str = Field("/livekit/agent", pattern=r"^/[A-Za-z0-9_\-./]*$")
    host: str = Field("127.0.0.1", description="Interface `serve` binds (the image uses 0.0.0.0).")
    port: int = Field(8080, ge=1, le=65535)
    agent_identity_prefix: str = Field("ai-agent-", max_length=64)
    agent_name: str = Field("AI Assistant", max_length=128)
    agent_metadata: str = Field('{"type":"ai"}', max_length=4096)
    token_ttl: float = Field(6 * 3600.0, gt=60, description="Lifetime of minted room tokens (s).")

    @field_validator("webhook_secrets", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _split_secrets(value)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _yaml_path.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    @classmethod
    def load(cls, config_path: Path | str | None = None, **overrides: Any) -> Self:
        """Build the settings: ``overrides`` over the environment over the YAML file
        (``config_path``, else ``EXTERNAL_AGENT_CONFIG``, else none) over defaults. Raises
        :class:`ConfigFileError` when the file is named but missing, pydantic's
        ``ValidationError`` on bad values."""
        path = resolve_config_path(config_path)
        with _using_yaml(path):
            return cls(**overrides)

    @property
    def signing_secret(self) -> SecretStr | None:
        return self.webhook_secrets[0] if self.webhook_secrets else None


class ConfigFileError(Exception):
    """The configuration file named by ``--config`` / ``EXTERNAL_AGENT_CONFIG`` is unusable."""

    retryable = False


def resolve_config_path(config_path: Path | str | None) -> Path | None:
    raw = config_path if config_path is not None else os.environ.get(CONFIG_ENV)
    if raw is None or str(raw) == "":
        return None
    path = Path(raw)
    if not path.is_file():
        raise ConfigFileError(f"configuration file not found: {path}")
    return path


@contextmanager
def _using_yaml(path: Path | None) -> Iterator[None]:
    token = _yaml_path.set(path)
    try:
        yield
    finally:
        _yaml_path.reset(token)


class HttpSettings(BaseModel):
    """Limits on every HTTP connection (app/http_guard.py, docs/operations.md)."""

    model_config = ConfigDict(extra="forbid")

    max_header_bytes: int = Field(
        16 * 1024, ge=1024, le=1024 * 1024, description="Request line plus headers; over: 431."
    )
    header_timeout: float = Field(
        10.0, gt=0, le=600, description="Seconds to receive a request's headers (idle included)."
    )
    body_timeout: float = Field(
        30.0, gt=0, le=3600, description="Seconds to receive a request's whole body."
    )
    keep_alive_timeout: float = Field(
        5.0, gt=0, le=600, description="Seconds an idle keep-alive connection is kept."
    )
    max_connections: int = Field(
        1000,
        ge=2,
        le=1_000_000,
        description="Open connections at most; a new one evicts the longest-idle or stalled one.",
    )


class Settings(ClientSettings):
    """Everything the service reads at start-up. Secrets are ``SecretStr`` and never logged."""

    dev_mode: bool = Field(
        False,
        description="Development mode: allows empty or placeholder secrets, local:// rooms "
        "and the job_body testing hook. Never in production.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"

    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    timestamp_tolerance: float = Field(300.0, gt=0, le=3600)
    admin_token: SecretStr | None = Field(
        None, description="Bearer token for the /jobs admin API; the API is off without one."
    )

    enabled: bool = Field(True, description="Accept jobs at all (false answers every offer no).")
    job_types: list[JobType] = Field(default_factory=lambda: list(JOB_TYPES), min_length=1)
    max_jobs: Annotated[int, Field(ge=1, le=10_000)] | Literal["auto"] = Field(
        10,
        description="Jobs running at once; `auto`: as many as fit in load_limits.max_cpu at the "
        "measured cost of a job (see load_limits).",
    )
    load_limits: LoadSettings = Field(
        default_factory=LoadSettings,
        description="Measured limits (event-loop lag, CPU, audio backlog) admission also checks.",
    )
    retry_after: int = Field(5, ge=1, le=3600, description="Retry-After seconds on 503.")
    drain_timeout: float = Field(30.0, ge=0, description="Seconds running jobs get on SIGTERM.")
    restart_when_unhealthy: bool = Field(
        True,
        description="When the agent reports that this replica cannot serve (a job receives "
        "audio and decodes none): drain as on SIGTERM, then exit, so that the orchestrator starts "
        "a fresh process. Off: drain and keep running (readiness stays 503).",
    )
    job_history: int = Field(200, ge=0, le=100_000, description="Finished jobs kept in memory.")

    registry: Literal["memory", "redis"] = Field(
        "memory", description="Where job_id idempotency lives; redis when replicas must agree."
    )
    redis_url: SecretStr | None = None
    idempotency_ttl: float = Field(3600.0, gt=0, description="How long a job_id is remembered.")
    idempotency_max: int = Field(100_000, ge=100, description="job_ids kept by the memory store.")
    failover: FailoverSettings = Field(
        default_factory=FailoverSettings,
        description="Calls go on on another replica when theirs is lost (docs/failover.md).",
    )

    job_body: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="Testing hook (dev_mode only): 'module:function' of the job body to run "
        "instead of the agent.",
    )

    auth_failures: AuthFailureSettings = Field(
        default_factory=AuthFailureSettings,
        description="Per-source rate limit on failed signature checks (429 + Retry-After).",
    )
    http: HttpSettings = Field(
        default_factory=HttpSettings, description="Header size, time limits, connection cap."
    )
    agent: AgentConfig = Field(default_factory=AgentConfig)
    worker: WorkerSettings = Field(
        default_factory=WorkerSettings, description="Native agent dispatch (docs/livekit.md)."
    )
    livekit_webhook: LiveKitWebhookSettings = Field(
        default_factory=LiveKitWebhookSettings,
        description="POST /livekit/webhook: LiveKit server webhooks (docs/livekit.md).",
    )
    playground: PlaygroundSettings = Field(
        default_factory=PlaygroundSettings,
        description="GET /playground: try the agent from a browser (docs/playground.md).",
    )

    @model_validator(mode="before")
    @classmethod
    def _dev_mode_room_default(cls, data: Any) -> Any:
        """In development mode, local:// rooms are allowed unless the config says otherwise."""
        if not isinstance(data, dict) or not _truthy(data.get("dev_mode")):
            return data
        agent = data.get("agent")
        agent = dict(agent) if isinstance(agent, dict) else {} if agent is None else agent
        if isinstance(agent, dict):
            room = agent.get("room")
            room = dict(room) if isinstance(room, dict) else {} if room is None else room
            if isinstance(room, dict):
                room.setdefault("allow_local_rooms", True)
                agent["room"] = room
            data = {**data, "agent": agent}
        return data

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Self:
        if self.dev_mode:
            return self
        problems: list[str] = []
        if not self.webhook_secrets:
            problems.append("no webhook secret configured (LIVEKIT_WEBHOOK_SECRET)")
        elif any(_is_placeholder(s) for s in self.webhook_secrets):
            problems.append(
                f"a webhook secret is a placeholder or shorter than {MIN_SECRET_LENGTH} characters"
            )
        if self.livekit_api_secret is not None and _is_placeholder(self.livekit_api_secret):
            problems.append("LIVEKIT_API_SECRET is a placeholder or too short")
        if self.admin_token is not None and _is_placeholder(self.admin_token):
            problems.append("admin_token is a placeholder or too short")
        if self.playground.token is not None and _is_placeholder(self.playground.token):
            problems.append("playground.token is a placeholder or too short")
        if self.agent.room.allow_local_rooms:
            problems.append("agent.room.allow_local_rooms needs dev_mode")
        if self.job_body is not None:
            problems.append("job_body is a testing hook and needs dev_mode")
        if problems:
            raise ValueError(
                "refusing to start: " + "; ".join(problems) + " (set dev_mode for development)"
            )
        return self

    @model_validator(mode="after")
    def _redis_needs_url(self) -> Self:
        if self.registry == "redis" and self.redis_url is None:
            raise ValueError("registry=redis needs redis_url")
        if self.failover.enabled and (self.registry != "redis" or not self.can_mint_tokens):
            raise ValueError(
                "failover.enabled needs registry=redis (with redis_url) and LIVEKIT_API_KEY / "
                "LIVEKIT_API_SECRET (a job taken over joins with a token minted here)"
            )
        return self

    @property
    def can_mint_tokens(self) -> bool:
        return bool(self.livekit_api_key) and self.livekit_api_secret is not None


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)
