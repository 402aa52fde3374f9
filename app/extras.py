"""The optional extras the service's configuration needs (see :mod:`agents.extras`).

``external-agent serve`` checks them before loading anything, so a configured provider whose
extra is not installed refuses at startup with one line naming the extra and the pip command.
"""

from __future__ import annotations

from agents.extras import MissingExtra, agent_extras, missing_extras
from app.settings import Settings


def required_extras(settings: Settings) -> dict[str, list[str]]:
    """Extra -> what in the configuration needs it."""
    # With the job_body testing hook (dev mode) the agent and its providers are not loaded.
    needs = agent_extras(settings.agent) if settings.job_body is None else {}
    if settings.registry == "redis":
        needs.setdefault("redis", []).append("registry: redis")
    return needs


def check_extras(settings: Settings) -> None:
    """Raise :class:`~agents.extras.MissingExtra` when a needed extra is not installed."""
    error = missing_extras(required_extras(settings))
    if error is not None:
        raise error


__all__ = ["MissingExtra", "check_extras", "required_extras"]
