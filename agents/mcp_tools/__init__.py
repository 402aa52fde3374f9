"""MCP servers' tools, offered to the model next to the built-in tools."""

from agents.mcp_tools.config import McpConfig, McpServerConfig
from agents.mcp_tools.toolbox import JobTools, McpPool

__all__ = ["JobTools", "McpConfig", "McpPool", "McpServerConfig"]
