"""MCP tools offered to the model next to the built-in ones.

:class:`McpPool` is service-wide: it holds one connection per server that is shared by all jobs
(started in ``prewarm``, closed at shutdown). A server with per-job headers (a caller's token
from the metadata allowlist) or ``per_job: true`` gets a connection per job instead, opened
when the job's conversation starts and closed when it ends (:class:`JobTools`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import structlog

from agents.mcp_tools.config import McpConfig
from agents.mcp_tools.connection import SEPARATOR, McpConnection
from agents.pipeline.trace import append_capped
from agents.providers.base import ToolCall, ToolSpec
from agents.providers.errors import ProviderUnavailable

log = structlog.get_logger("agents.mcp")

EXTRA_HINT = "install the 'mcp' extra: pip install 'livekit-external-agent[mcp]'"
MAX_ARGUMENT_BYTES = 64 * 1024


def check_installed() -> None:
    """Raise :class:`ProviderUnavailable` (one line) when the ``mcp`` extra is missing."""
    try:
        import httpx2  # noqa: F401
        import mcp  # noqa: F401
    except ImportError as e:
        raise ProviderUnavailable(f"MCP servers need {e.name}; {EXTRA_HINT}",
                                  provider="mcp") from e


class McpPool:
    """Service-wide MCP connections; ``for_job`` builds a job's tool set."""

    def __init__(self, *, config: McpConfig) -> None:
        check_installed()
        self.config = config
        self._shared = {
            name: McpConnection(server=name, config=cfg)
            for name, cfg in config.servers.items() if not cfg.connects_per_job
        }

    async def prewarm(self) -> None:
        """Start every shared connection and wait (bounded) for the first connect; a server
        that is not up yet keeps being retried in the background."""
        for conn in self._shared.values():
            conn.start()
        waits = [c.wait_connected(c.config.connect_timeout) for c in self._shared.values()]
        for name, up in zip(self._shared, await asyncio.gather(*waits), strict=True):
            if not up:
                log.warning("mcp_not_connected_at_start", server=name)

    def for_job(
        self, *, job_id: str, headers: Mapping[str, Mapping[str, str]] | None = None,
        refresh: Mapping[str, str] | None = None,
    ) -> JobTools:
        """A job's MCP tools: the shared connections plus per-job ones with the job's headers
        (only header names the server's ``job_headers`` lists; the rest are dropped) and, for a
        server with ``token_refresh``, the caller's refresh token."""
        own: dict[str, McpConnection] = {}
        for name, cfg in self.config.servers.items():
            if not cfg.connects_per_job:
                continue
            given = dict((headers or {}).get(name, {}))
            allowed = {h.lower() for h in cfg.job_headers}
            refused = sorted(k for k in given if k.lower() not in allowed)
            if refused:
                log.warning("mcp_job_headers_refused", job_id=job_id, server=name,
                            headers=refused[:20])
            kept = {k: v for k, v in given.items() if k.lower() in allowed}
            own[name] = McpConnection(server=name, config=cfg, headers=kept, job_id=job_id,
                                      refresh_token=(refresh or {}).get(name))
        unknown = sorted(set(headers or {}) - set(self.config.servers))
        if unknown:
            log.warning("mcp_job_headers_unknown_servers", job_id=job_id, servers=unknown[:20])
        return JobTools(shared=self._shared, own=own, job_id=job_id)

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self._shared.values()))


class JobTools:
    """One job's MCP tools. ``open``/``aclose`` manage the job's own connections."""

    def __init__(
        self, *, shared: Mapping[str, McpConnection], own: Mapping[str, McpConnection],
        job_id: str,
    ) -> None:
        self._conns: dict[str, McpConnection] = {**shared, **own}
        self._own = dict(own)
        self._job_id = job_id
        self.calls: list[dict[str, Any]] = []

    def start(self) -> None:
        """Start the job's own connections (they connect in the background)."""
        for conn in self._own.values():
            conn.start()

    async def open(self) -> None:
        """Start the job's own connections and wait (bounded) until they are up."""
        self.start()
        await asyncio.gather(
            *(c.wait_connected(c.config.connect_timeout) for c in self._own.values())
        )

    def specs(self) -> list[ToolSpec]:
        """The tools of the servers connected now (a server down offers none)."""
        return [spec for conn in self._conns.values() for spec in conn.specs()]

    def handles(self, name: str) -> bool:
        return SEPARATOR in name and name.split(SEPARATOR, 1)[0] in self._conns

    async def call(self, call: ToolCall) -> str:
        """Run one model tool call; the JSON text that goes back to the model."""
        server, _, tool = call.name.partition(SEPARATOR)
        conn = self._conns[server]
        ok, text = await self._call(conn, call, tool)
        row = {"call_id": call.id, "tool": call.name, "ok": ok}
        append_capped(self.calls, row)
        log.info("mcp_tool_called", job_id=self._job_id, **row)
        body = {"ok": True, "result": text} if ok else {"ok": False, "error": text}
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))

    async def _call(self, conn: McpConnection, call: ToolCall, tool: str) -> tuple[bool, str]:
        if call.name not in {s.name for s in conn.specs()} and conn.connected:
            return False, f"tool {call.name[:100]!r} is not offered"
        if len(call.arguments.encode()) > MAX_ARGUMENT_BYTES:
            return False, f"arguments are too long (at most {MAX_ARGUMENT_BYTES} bytes)"
        try:
            args: Any = json.loads(call.arguments) if call.arguments.strip() else {}
        except json.JSONDecodeError as e:
            return False, f"arguments are not valid JSON: {e.msg} at position {e.pos}"
        if not isinstance(args, dict):
            return False, "arguments must be a JSON object"
        return await conn.call(tool, args)

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self._own.values()))
