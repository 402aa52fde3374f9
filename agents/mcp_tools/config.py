"""Configuration of MCP servers whose tools the model may call (``agent.mcp`` in config.yaml)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,23}$")
HEADER_PATTERN = re.compile(r"^[A-Za-z0-9-]{1,64}$")


class TokenRefreshConfig(BaseModel):
    """Where a caller's expired bearer token is renewed with its refresh token (OAuth 2.0)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="The token endpoint (grant_type=refresh_token).")
    client_id: str | None = Field(None, description="This service's client id, if required.")
    client_secret: SecretStr | None = Field(None, description="Its secret; never logged.")
    leeway_s: float = Field(30.0, ge=0, le=600, description="Renew this long before expiry.")
    timeout: float = Field(10.0, gt=0, le=60, description="Seconds for the token request.")

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("token_refresh.url must be an http(s) url")
        return value


class McpServerConfig(BaseModel):
    """One MCP server: a command spoken to over stdio, or a Streamable HTTP endpoint."""

    model_config = ConfigDict(extra="forbid")

    transport: Literal["stdio", "http"]
    command: str | None = Field(None, description="stdio: the executable to start.")
    args: list[str] = Field(default_factory=list, description="stdio: its arguments.")
    env: dict[str, SecretStr] = Field(
        default_factory=dict, description="stdio: extra environment (values never logged)."
    )
    cwd: str | None = Field(None, description="stdio: working directory.")
    url: str | None = Field(None, description="http: the endpoint, e.g. https://host/mcp.")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="http: headers sent on every request (never logged)."
    )
    tools: list[str] = Field(
        description='The allowlist: tool names offered to the model ("*" for every tool).',
        min_length=1,
    )
    job_headers: list[str] = Field(
        default_factory=list,
        description="http: header names a job's metadata may set (`mcp_headers: {server: "
        "{name: value}}`). A server with job headers is connected per job.",
    )
    token_refresh: TokenRefreshConfig | None = Field(
        None,
        description="http: renew a job's expired `Authorization: Bearer` token with the refresh "
        "token its metadata carries (`mcp_refresh: {server: token}`). Needs Authorization in "
        "job_headers.",
    )
    per_job: bool = Field(
        False, description="Connect once per job rather than once per service."
    )
    timeout: float = Field(15.0, gt=0, le=300, description="Seconds per tool call.")
    connect_timeout: float = Field(10.0, gt=0, le=120, description="Seconds to connect.")
    reconnect_backoff: float = Field(0.5, gt=0, le=30, description="First retry delay (s).")
    reconnect_max_backoff: float = Field(30.0, gt=0, le=600, description="Longest retry delay.")
    max_result_chars: int = Field(
        8000, ge=100, le=100_000, description="Longer tool results are cut for the model."
    )

    @field_validator("job_headers")
    @classmethod
    def _header_names(cls, value: list[str]) -> list[str]:
        bad = [h for h in value if not HEADER_PATTERN.match(h)]
        if bad:
            raise ValueError(f"invalid header names: {bad}")
        return value

    @model_validator(mode="after")
    def _transport_fields(self) -> McpServerConfig:
        if self.transport == "stdio" and not self.command:
            raise ValueError("a stdio MCP server needs a command")
        if self.transport == "http":
            if not self.url or not self.url.startswith(("http://", "https://")):
                raise ValueError("an http MCP server needs an http(s) url")
        elif self.job_headers:
            raise ValueError("job_headers apply to http servers only")
        if self.token_refresh is not None and "authorization" not in {
            h.lower() for h in self.job_headers
        }:
            raise ValueError("token_refresh needs Authorization in job_headers")
        return self

    @property
    def connects_per_job(self) -> bool:
        return self.per_job or bool(self.job_headers)


class McpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    servers: dict[str, McpServerConfig] = Field(
        default_factory=dict,
        description="MCP servers by name (lowercase, at most 24 characters); the model sees "
        "their tools as `<server>__<tool>`.",
    )

    @field_validator("servers")
    @classmethod
    def _names(cls, value: dict[str, McpServerConfig]) -> dict[str, McpServerConfig]:
        for name in value:
            if not NAME_PATTERN.match(name) or "__" in name:
                raise ValueError(
                    f"server name {name!r}: lowercase letters, digits, - and _ (at most 24, "
                    "no '__')"
                )
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.servers)
