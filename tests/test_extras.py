"""Optional extras stay optional: what a configuration needs is known without importing it, a
missing one refuses ``serve`` in one line naming the extra, and the table of which module each
extra brings agrees with the package's own metadata. (The packaging tier, tests/packaging/,
proves the same in real venvs without the extras.)"""

from __future__ import annotations

import importlib.metadata
import re
import sys

import pytest
from conftest import SECRET

import agents.providers.embedded_vision
import agents.vision.analysis
import agents.vision.conversation
import agents.vision.pipeline  # noqa: F401 (present, so the test below can restore them)
from agents import extras
from agents.config import AgentConfig
from agents.conversation import AgentConversations
from agents.extras import MissingExtra, pipeline_extras
from agents.pipeline.config import PipelineConfig
from agents.pipeline.registry import build_provider
from app.cli import main
from app.extras import required_extras
from app.settings import Settings

OPENAI = {"type": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"}


def hide(monkeypatch: pytest.MonkeyPatch, *missing_extras: str) -> None:
    """Make the extras look uninstalled to the startup check."""
    real = extras.installed
    monkeypatch.setattr(extras, "installed", lambda e: e not in missing_extras and real(e))


def test_extra_table_matches_the_package_metadata():
    """Every module in EXTRA_MODULES comes from a distribution that extra requires, and every
    requirement of an extra brings at least one module in the table."""
    requires = importlib.metadata.requires(extras.DISTRIBUTION) or []
    by_extra: dict[str, set[str]] = {}
    for req in requires:
        found = re.search(r"extra\s*==\s*['\"]([\w-]+)['\"]", req)
        if found and found.group(1) in extras.EXTRA_MODULES:
            name = re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0]
            by_extra.setdefault(found.group(1), set()).add(name.lower().replace("_", "-"))
    assert set(by_extra) == set(extras.EXTRA_MODULES)
    dists_of = importlib.metadata.packages_distributions()
    for extra, modules in extras.EXTRA_MODULES.items():
        brought: set[str] = set()
        for module in modules:
            dists = {d.lower().replace("_", "-") for d in dists_of.get(module, [])}
            assert dists & by_extra[extra], f"{module} is not brought by the {extra!r} extra"
            brought |= dists
        assert by_extra[extra] <= brought, f"{extra}: {by_extra[extra] - brought} unlisted"


def test_what_each_configuration_needs():
    assert set(pipeline_extras(PipelineConfig())) == {"embedded"}
    vision = PipelineConfig.model_validate({"vision": {"enabled": True}})
    assert pipeline_extras(vision) == {
        "embedded": ["provider 'silero'", "provider 'moonshine'", "provider 'piper'"],
        "vision": ["provider 'embedded-vision'", "pipeline.vision"],
    }
    # OpenAI speech and model need no extra; the voice activity detector still does.
    remote = PipelineConfig.model_validate(
        {
            "providers": {
                "stt": {**OPENAI, "kind": "stt"},
                "llm": {**OPENAI, "kind": "llm"},
                "tts": {**OPENAI, "kind": "tts"},
            },
            "audio": {"stt": "stt", "llm": "llm", "tts": "tts"},
        }
    )
    assert pipeline_extras(remote) == {"embedded": ["provider 'silero'"]}
    redis = Settings(webhook_secrets=[SECRET], registry="redis", redis_url="redis://r:6379/0")
    assert required_extras(redis)["redis"] == ["registry: redis"]
    hook = Settings(dev_mode=True, job_body="app.jobs.bodies:idle")
    assert required_extras(hook) == {}


def test_serve_refuses_in_one_line_naming_the_missing_extras(monkeypatch, capsys):
    hide(monkeypatch, "vision", "redis")
    monkeypatch.setenv("LIVEKIT_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("EXTERNAL_AGENT_AGENT__PIPELINE__VISION__ENABLED", "true")
    monkeypatch.setenv("EXTERNAL_AGENT_REGISTRY", "redis")
    monkeypatch.setenv("EXTERNAL_AGENT_REDIS_URL", "redis://127.0.0.1:1/0")
    assert main(["serve"]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == (
        "error: the configuration needs the 'redis' extra (registry: redis) and the 'vision' "
        "extra (provider 'embedded-vision', pipeline.vision), not installed: "
        "pip install 'livekit-external-agent[redis,vision]'\n"
    )


def test_prewarm_refuses_in_one_line_without_the_extra(monkeypatch, capsys):
    hide(monkeypatch, "embedded")
    assert main(["prewarm"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.endswith("pip install 'livekit-external-agent[embedded]'")


def test_a_provider_module_importing_a_missing_extra_names_it(monkeypatch):
    """The safety net behind the startup check: an ImportError of an extra's module while a
    provider is built becomes MissingExtra."""
    monkeypatch.delitem(sys.modules, "agents.providers.embedded_vision")
    for name in [m for m in sys.modules if m.startswith("agents.vision.")]:
        if name not in ("agents.vision.config", "agents.vision.metrics", "agents.vision.stream"):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 -> ImportError(name="cv2")
    spec = PipelineConfig().providers["embedded-vision"]
    with pytest.raises(MissingExtra) as raised:
        build_provider("eyes", spec)
    assert str(raised.value) == (
        "the configuration needs the 'vision' extra (provider 'eyes'), not installed: "
        "pip install 'livekit-external-agent[vision]'"
    )
    config = AgentConfig.model_validate({"pipeline": {"vision": {"enabled": True}}})
    with pytest.raises(MissingExtra) as missing:
        AgentConversations(config)
    assert missing.value.extras == ["vision"]
    assert "pip install 'livekit-external-agent[vision]'" in str(missing.value)
