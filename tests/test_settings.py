"""Settings: environment over config.yaml over defaults; placeholder secrets refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.settings import ClientSettings, ConfigFileError, Settings

GOOD = "a-real-secret-0123456789abcdef"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_environment_wins_over_yaml_which_wins_over_defaults(tmp_path, monkeypatch):
    path = write(
        tmp_path,
        f"webhook_secrets: [{GOOD}]\nmax_jobs: 3\ndrain_timeout: 9\n"
        "agent:\n  room:\n    connect_timeout: 5\n    connect_attempts: 4\n",
    )
    monkeypatch.setenv("EXTERNAL_AGENT_MAX_JOBS", "12")
    monkeypatch.setenv("EXTERNAL_AGENT_AGENT__ROOM__CONNECT_ATTEMPTS", "6")
    s = Settings.load(path)
    assert s.max_jobs == 12  # env
    assert s.drain_timeout == 9  # yaml
    assert s.retry_after == 5  # default
    assert (s.agent.room.connect_timeout, s.agent.room.connect_attempts) == (5, 6)


def test_config_path_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(
        "EXTERNAL_AGENT_CONFIG", str(write(tmp_path, "max_jobs: 2\ndev_mode: true\n"))
    )
    assert Settings.load().max_jobs == 2


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigFileError, match="not found"):
        Settings.load(tmp_path / "nope.yaml")


def test_livekit_secret_env_takes_several_comma_separated_secrets(monkeypatch):
    monkeypatch.setenv("LIVEKIT_WEBHOOK_SECRET", f"{GOOD}, second-secret-0123456789abc")
    monkeypatch.setenv("LIVEKIT_URL", "wss://lk.example.com")
    monkeypatch.setenv("LIVEKIT_API_KEY", "APIkey")
    monkeypatch.setenv("LIVEKIT_API_SECRET", "api-secret-0123456789abcdef")
    s = Settings.load()
    assert [x.get_secret_value() for x in s.webhook_secrets] == [
        GOOD,
        "second-secret-0123456789abc",
    ]
    assert s.livekit_url == "wss://lk.example.com" and s.can_mint_tokens


def test_livekit_secret_env_overrides_yaml_secrets(tmp_path, monkeypatch):
    path = write(tmp_path, "webhook_secrets: [yaml-secret-0123456789abcdef]\n")
    monkeypatch.setenv("LIVEKIT_WEBHOOK_SECRET", GOOD)
    assert [x.get_secret_value() for x in Settings.load(path).webhook_secrets] == [GOOD]


@pytest.mark.parametrize(
    "secret",
    ["", "secret", "changeme", "your-secure-webhook-secret", "short", "replace-me-0123456789abc"],
)
def test_placeholder_or_empty_secret_refuses_to_start(monkeypatch, secret):
    monkeypatch.setenv("LIVEKIT_WEBHOOK_SECRET", secret)
    with pytest.raises(ValidationError, match="refusing to start"):
        Settings.load()


def test_placeholder_api_secret_and_admin_token_are_refused():
    with pytest.raises(ValidationError, match="LIVEKIT_API_SECRET"):
        Settings(webhook_secrets=[GOOD], livekit_api_secret="secret")
    with pytest.raises(ValidationError, match="admin_token"):
        Settings(webhook_secrets=[GOOD], admin_token="changeme")


def test_dev_mode_allows_placeholders_and_local_rooms(monkeypatch):
    monkeypatch.setenv("EXTERNAL_AGENT_DEV_MODE", "true")
    s = Settings.load()
    assert s.webhook_secrets == [] and s.agent.room.allow_local_rooms is True
    explicit = Settings(dev_mode=True, agent={"room": {"allow_local_rooms": False}})
    assert explicit.agent.room.allow_local_rooms is False


def test_local_rooms_and_job_body_hook_need_dev_mode():
    with pytest.raises(ValidationError, match="allow_local_rooms needs dev_mode"):
        Settings(webhook_secrets=[GOOD], agent={"room": {"allow_local_rooms": True}})
    with pytest.raises(ValidationError, match="job_body"):
        Settings(webhook_secrets=[GOOD], job_body="app.jobs.bodies:idle")
    assert Settings(dev_mode=True, job_body="app.jobs.bodies:idle").job_body


def test_secrets_never_appear_in_repr_or_dump():
    s = Settings(webhook_secrets=[GOOD], admin_token="admin-token-0123456789abcdef")
    assert GOOD not in repr(s) and GOOD not in s.model_dump_json()
    assert "admin-token-0123456789" not in repr(s)


def test_unknown_job_type_and_bad_values_are_refused():
    with pytest.raises(ValidationError):
        Settings(webhook_secrets=[GOOD], job_types=["JT_NOPE"])
    with pytest.raises(ValidationError):
        Settings(webhook_secrets=[GOOD], max_jobs=0)
    with pytest.raises(ValidationError):
        Settings(webhook_secrets=[GOOD], registry="redis")


def test_client_settings_skip_the_production_checks(monkeypatch):
    monkeypatch.setenv("LIVEKIT_WEBHOOK_SECRET", "secret")
    assert ClientSettings.load().signing_secret is not None


def test_example_config_loads_and_documents_every_key(monkeypatch):
    example = Path(__file__).resolve().parent.parent / "config.yaml.example"
    monkeypatch.setenv("LIVEKIT_WEBHOOK_SECRET", GOOD)
    s = Settings.load(example)
    text = example.read_text()
    for name in Settings.model_fields:
        assert f"{name}:" in text, f"config.yaml.example does not document {name}"
    assert s.max_jobs >= 1
