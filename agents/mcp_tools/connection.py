"""One connection to one MCP server (the official ``mcp`` SDK), owned by a named task.

The SDK's client lives in an async context that must be entered and left by one task, so a
:class:`McpConnection` runs that task: connect (within ``connect_timeout``), list the tools,
keep only the allowlisted ones, then hold the session until it is lost or closed. A lost
connection (the process exited, the endpoint went away) is reconnected with exponential
backoff, for as long as the connection is open. :meth:`call` never raises: a tool's error, a
timeout or an unreachable server come back as a result the model can read. A call that finds
the connection broken waits for the reconnect and is sent once more, within its timeout.
Configured headers and environment values are credentials: they are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
from collections.abc import Mapping
from typing import Any

import structlog

from agents.mcp_tools.config import McpServerConfig
from agents.providers.base import ToolSpec

log = structlog.get_logger("agents.mcp")

SEPARATOR = "__"
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_DESCRIPTION_CHARS = 1000


class _Lost(Exception):
    """The connection broke under a call (not the tool's own error)."""


class McpConnection:
    """``start`` it, ``call`` its tools, ``aclose`` it (idempotent)."""

    def __init__(
        self, *, server: str, config: McpServerConfig, headers: Mapping[str, str] | None = None,
        job_id: str | None = None, refresh_token: str | None = None,
    ) -> None:
        self.server = server
        self.config = config
        self._headers = dict(headers or {})
        self._auth: Any = None  # a RefreshingBearer, kept across reconnects
        bearer = next((k for k in self._headers if k.lower() == "authorization"), None)
        if config.token_refresh is not None and refresh_token and bearer is not None:
            from agents.mcp_tools.auth import RefreshingBearer

            self._auth = RefreshingBearer(
                access_token=self._headers.pop(bearer), refresh_token=refresh_token,
                config=config.token_refresh, server=server, job_id=job_id,
            )
        self._log = log.bind(server=server, job_id=job_id) if job_id else log.bind(server=server)
        self._client: Any = None
        self._tools: dict[str, ToolSpec] = {}
        self._up = asyncio.Event()
        self._lost = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self.connects = 0

    # -- public --------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    def specs(self) -> list[ToolSpec]:
        """The allowlisted tools of the current session, named ``<server>__<tool>``."""
        return list(self._tools.values())

    def start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._own(), name=f"mcp-{self.server}")

    async def wait_connected(self, within: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._up.wait()
        return self._up.is_set()

    async def call(self, tool: str, arguments: dict[str, Any]) -> tuple[bool, str]:
        """Call ``tool`` (its MCP name). Returns (ok, text for the model); never raises except
        on cancellation (barge-in cancels a call in flight)."""
        cfg = self.config
        try:
            async with asyncio.timeout(cfg.timeout):
                for attempt in (1, 2):
                    await self._up.wait()
                    try:
                        return await self._call_once(tool, arguments)
                    except _Lost as e:
                        self._log.warning("mcp_call_connection_lost", tool=tool,
                                          attempt=attempt, error=str(e)[:200])
                        self._mark_lost()
                return False, f"the {self.server} server dropped the connection twice"
        except TimeoutError:
            state = "did not answer" if self._up.is_set() else "is not reachable"
            self._log.warning("mcp_call_timeout", tool=tool, timeout=cfg.timeout,
                              connected=self._up.is_set())
            return False, f"the {self.server} server {state} within {cfg.timeout:g} s"

    async def aclose(self) -> None:
        self._closed = True
        self._lost.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- the owner task --------------------------------------------------------------------

    async def _own(self) -> None:
        delay = self.config.reconnect_backoff
        while not self._closed:
            try:
                await self._session()
                delay = self.config.reconnect_backoff  # it was up: start the backoff over
            except asyncio.CancelledError:
                raise
            except BaseException as e:  # noqa: BLE001 (SDK task groups raise groups)
                self._log.warning("mcp_connect_failed", error_type=type(e).__name__,
                                  error=_brief(e), retry_in=round(delay, 2))
            finally:
                self._up.clear()
                self._client = None
            if self._closed:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.config.reconnect_max_backoff)

    async def _session(self) -> None:
        from mcp import Client

        cfg = self.config
        self._lost.clear()
        async with contextlib.AsyncExitStack() as stack:
            async with asyncio.timeout(cfg.connect_timeout):
                client = await stack.enter_async_context(
                    Client(await self._transport(stack), mode="legacy")
                )
                listed = await self._list_tools(client)
            self._tools = listed
            self._client = client
            self.connects += 1
            self._up.set()
            self._log.info("mcp_connected", tools=sorted(listed), connects=self.connects)
            await self._lost.wait()
        if not self._closed:
            self._log.info("mcp_reconnecting")

    async def _transport(self, stack: contextlib.AsyncExitStack) -> Any:
        cfg = self.config
        if cfg.transport == "stdio":
            from mcp.client.stdio import StdioServerParameters, stdio_client

            assert cfg.command is not None
            params = StdioServerParameters(
                command=cfg.command, args=list(cfg.args), cwd=cfg.cwd,
                env={k: v.get_secret_value() for k, v in cfg.env.items()} or None,
            )
            return stdio_client(params, errlog=sys.stderr)
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        assert cfg.url is not None
        headers = {k: v.get_secret_value() for k, v in cfg.headers.items()}
        headers.update(self._headers)
        http = await stack.enter_async_context(httpx2.AsyncClient(
            headers=headers, auth=self._auth,
            timeout=httpx2.Timeout(cfg.connect_timeout, read=max(300.0, cfg.timeout)),
        ))
        return streamable_http_client(cfg.url, http_client=http)

    async def _list_tools(self, client: Any) -> dict[str, ToolSpec]:
        allow = set(self.config.tools)
        out: dict[str, ToolSpec] = {}
        cursor: str | None = None
        for _ in range(100):  # pages
            page = await client.list_tools(cursor=cursor)
            for tool in page.tools:
                if "*" not in allow and tool.name not in allow:
                    continue
                name = f"{self.server}{SEPARATOR}{tool.name}"
                if not _TOOL_NAME.match(name):
                    self._log.warning("mcp_tool_name_unusable", tool=tool.name[:100])
                    continue
                schema = dict(tool.input_schema or {"type": "object", "properties": {}})
                out[name] = ToolSpec(
                    name=name,
                    description=(tool.description or tool.title or tool.name)[
                        :MAX_DESCRIPTION_CHARS],
                    parameters=schema,
                )
            cursor = page.next_cursor
            if not cursor:
                break
        missing = sorted(allow - {"*"} - {n.split(SEPARATOR, 1)[1] for n in out})
        if missing:
            self._log.warning("mcp_allowed_tools_missing", tools=missing)
        return out

    async def _call_once(self, tool: str, arguments: dict[str, Any]) -> tuple[bool, str]:
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED, INVALID_REQUEST

        client = self._client
        if client is None:
            raise _Lost("not connected")
        try:
            result = await client.call_tool(tool, arguments)
        except MCPError as e:
            # A Streamable HTTP server that restarted answers 404 "Session not found" for the
            # old session id; the spec says to start a new session, so it counts as lost.
            if e.code == CONNECTION_CLOSED or (
                e.code == INVALID_REQUEST and "session" in str(e).lower()
            ):
                raise _Lost(str(e)) from e
            return False, f"{self.server} refused the call: {e}"
        except (asyncio.CancelledError, TimeoutError):
            raise
        except Exception as e:  # noqa: BLE001 (transport errors of any library: reconnect)
            raise _Lost(f"{type(e).__name__}: {e}") from e
        return (not result.is_error), self._result_text(result)

    def _result_text(self, result: Any) -> str:
        parts: list[str] = []
        for item in result.content:
            text = getattr(item, "text", None)
            parts.append(text if isinstance(text, str) else f"[{getattr(item, 'type', 'item')}]")
        text = "\n".join(parts)
        if not text and result.structured_content is not None:
            text = json.dumps(result.structured_content, ensure_ascii=False)
        limit = self.config.max_result_chars
        return text if len(text) <= limit else text[:limit] + " [cut]"

    def _mark_lost(self) -> None:
        self._up.clear()
        self._lost.set()


def _brief(error: BaseException) -> str:
    """One line about an error, the first leaf of an exception group."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return f"{type(error).__name__}: {error}"[:300]
