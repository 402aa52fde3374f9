"""Failed signature checks are rate-limited per source: 429 with Retry-After, no HMAC work for a
limited source, memory bounded, off-switchable (issue 16, item 11)."""

from __future__ import annotations

import base64
import hashlib
import json
import time

import pytest
from conftest import (
    API_KEY,
    API_SECRET,
    AppFactory,
    ControlledBody,
    make_settings,
    notification,
    signed,
)
from livekit import api

from app.security.failures import AuthFailureSettings, FailureLimiter


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def forged() -> tuple[bytes, dict[str, str]]:
    raw, headers = signed(notification())
    headers["X-LiveKit-Signature"] = "0" * 64
    return raw, headers


async def test_a_source_that_keeps_failing_gets_429_with_retry_after(
    make_app: AppFactory, body: ControlledBody
) -> None:
    settings = make_settings(auth_failures={"limit": 5, "window": 60})
    harness = await make_app(settings, body)
    calls = 0
    verify = harness.runtime.intake_policy.verifier.verify

    def counting(*args: object) -> object:
        nonlocal calls
        calls += 1
        return verify(*args)  # type: ignore[arg-type]

    object.__setattr__(harness.runtime.intake_policy, "verifier", type("V", (), {})())
    harness.runtime.intake_policy.verifier.verify = counting  # type: ignore[attr-defined]
    for _ in range(5):
        assert (await harness.post(*forged())).status_code == 401
    limited = await harness.post(*forged())
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.json() == {"accepted": False, "error": "too many failed signature checks"}
    assert calls == 5  # the limited request cost no verification
    # While limited, even a good signature from that source waits (it shares the address).
    assert (await harness.send(notification())).status_code == 429


async def test_good_signatures_are_never_counted(
    make_app: AppFactory, body: ControlledBody
) -> None:
    harness = await make_app(make_settings(auth_failures={"limit": 2}), body)
    for n in range(5):
        response = await harness.send(notification(job_id=f"AJ_{n}"))
        assert response.status_code in (200, 503)
    assert (await harness.post(*forged())).status_code == 401


async def test_the_limit_can_be_turned_off(make_app: AppFactory, body: ControlledBody) -> None:
    harness = await make_app(make_settings(auth_failures={"enabled": False, "limit": 1}), body)
    for _ in range(5):
        assert (await harness.post(*forged())).status_code == 401


async def test_behind_a_trusted_proxy_the_header_names_the_source(
    make_app: AppFactory, body: ControlledBody
) -> None:
    settings = make_settings(auth_failures={"limit": 2, "source_header": "x-forwarded-for"})
    harness = await make_app(settings, body)
    raw, headers = forged()
    for _ in range(2):
        headers["x-forwarded-for"] = "198.51.100.9, 203.0.113.1"
        assert (await harness.post(raw, headers)).status_code == 401
    assert (await harness.post(raw, headers)).status_code == 429
    headers["x-forwarded-for"] = "198.51.100.9, 203.0.113.2"  # another client, same proxy
    assert (await harness.post(raw, headers)).status_code == 401


async def test_the_livekit_webhook_limits_failed_tokens_too(
    make_app: AppFactory, body: ControlledBody
) -> None:
    settings = make_settings(livekit_api_key=API_KEY, livekit_api_secret=API_SECRET,
                             auth_failures={"limit": 3})
    harness = await make_app(settings, body)
    raw = json.dumps({"event": "room_started", "id": "EV_1",
                      "createdAt": str(int(time.time())), "room": {"name": "r"}}).encode()
    digest = base64.b64encode(hashlib.sha256(raw).digest()).decode()
    wrong = api.AccessToken(API_KEY, "another-secret-0123456789abcdef0123").with_sha256(digest)
    headers = {"authorization": wrong.to_jwt()}
    for _ in range(3):
        assert (await harness.client.post("/livekit/webhook", content=raw,
                                          headers=headers)).status_code == 401
    limited = await harness.client.post("/livekit/webhook", content=raw, headers=headers)
    assert limited.status_code == 429 and "retry-after" in limited.headers
    assert limited.json()["accepted"] is False


def test_windows_end_and_memory_stays_bounded() -> None:
    clock = Clock()
    limiter = FailureLimiter(
        settings=AuthFailureSettings(limit=2, window=10, max_sources=100), clock=clock
    )
    limiter.failed("a")
    limiter.failed("a")
    assert limiter.retry_after("a") == 10
    clock.now += 9.5
    assert limiter.retry_after("a") == 1
    clock.now += 1
    assert limiter.retry_after("a") is None
    limiter.failed("a")
    assert limiter.retry_after("a") is None  # a new window, one failure
    for n in range(10_000):
        limiter.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(limiter) <= 100


def test_source_header_must_be_a_header_name() -> None:
    with pytest.raises(ValueError):
        AuthFailureSettings(source_header="x-forwarded-for\r\nx")
