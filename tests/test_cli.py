"""The CLI in-process: sign prints verifiable curl headers; config errors exit 2 without
echoing secrets."""

from __future__ import annotations

import io
import json
import sys
import time
from types import SimpleNamespace

import pytest
from pydantic import SecretStr

from app.cli import main
from app.security.signatures import verify_signature

SECRET = "cli-secret-0123456789abcdef"


def run_sign(monkeypatch, capsys, body: bytes, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO(body)))
    code = main(["sign", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def headers_of(text: str) -> dict[str, str]:
    return {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def test_sign_prints_two_curl_headers_that_verify(monkeypatch, capsys):
    body = json.dumps({"job_id": "AJ_1", "timestamp": int(time.time())}).encode()
    code, out, err = run_sign(monkeypatch, capsys, body, "--secret", SECRET)
    assert code == 0 and err == ""
    assert [line.split(":")[0] for line in out.splitlines()] == [
        "X-LiveKit-Signature",
        "X-LiveKit-Timestamp",
    ]
    verified = verify_signature(body, headers_of(out), [SecretStr(SECRET)])
    assert abs(verified.header_timestamp - time.time()) < 60


def test_sign_reads_the_secret_from_the_environment_and_signs_standard_webhooks(
    monkeypatch, capsys
):
    monkeypatch.setenv("LIVEKIT_WEBHOOK_SECRET", f"{SECRET},older-secret-0123456789abc")
    body = json.dumps({"timestamp": int(time.time())}).encode()
    code, out, _ = run_sign(monkeypatch, capsys, body, "--scheme", "standard", "--id", "m1")
    assert code == 0
    headers = headers_of(out)
    assert headers["webhook-id"] == "m1"
    assert verify_signature(body, headers, [SecretStr(SECRET)]).scheme == "standard"


def test_sign_without_a_secret_exits_2(monkeypatch, capsys):
    code, out, err = run_sign(monkeypatch, capsys, b"{}")
    assert code == 2 and out == "" and "LIVEKIT_WEBHOOK_SECRET" in err


def test_sign_warns_when_the_body_timestamp_would_be_refused(monkeypatch, capsys):
    code, _, err = run_sign(monkeypatch, capsys, b'{"timestamp": 1}', "--secret", SECRET)
    assert code == 0 and "stale" in err
    code, _, err = run_sign(monkeypatch, capsys, b"{}", "--secret", SECRET)
    assert code == 0 and "timestamp" in err


def test_serve_refuses_a_placeholder_secret_without_echoing_it(monkeypatch, capsys):
    monkeypatch.setenv("LIVEKIT_WEBHOOK_SECRET", "changeme")
    monkeypatch.setenv("EXTERNAL_AGENT_ADMIN_TOKEN", "very-private-admin-token-xyz")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "refusing to start" in err
    assert "very-private-admin-token-xyz" not in err and "changeme" not in err


def test_serve_with_a_missing_config_file_exits_2(tmp_path, capsys):
    assert main(["serve", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "not found" in capsys.readouterr().err


def test_serve_with_an_unloadable_job_body_exits_2(monkeypatch, capsys):
    monkeypatch.setenv("EXTERNAL_AGENT_DEV_MODE", "1")
    monkeypatch.setenv("EXTERNAL_AGENT_JOB_BODY", "app.jobs.bodies:nope")
    # serve configures logging process-wide before it loads the body: not in the test process.
    monkeypatch.setattr("app.logs.configure_logging", lambda **_: None)
    assert main(["serve"]) == 2
    assert "cannot load job body" in capsys.readouterr().err


def test_dispatch_to_nothing_listening_exits_1(capsys):
    code = main(
        [
            "dispatch",
            "--room",
            "r",
            "--secret",
            SECRET,
            "--url",
            "http://127.0.0.1:9/x",
            "--timeout",
            "2",
        ]
    )
    assert code == 1 and "could not reach" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error():
    with pytest.raises(SystemExit) as e:
        main(["frobnicate"])
    assert e.value.code == 2
