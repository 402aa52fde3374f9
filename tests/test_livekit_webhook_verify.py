"""LiveKit webhook verification with tokens minted by livekit-api, and the event dedup memory."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json

import pytest
from livekit import api

import app.dispatch.webhook_verify as verify_mod
from app.dispatch.ports import WebhookPayloadError, WebhookVerificationError
from app.dispatch.webhook_verify import ConstantTimeWebhookReceiver, EventDeduplicator

KEY = "devkey"
SECRET = "a-test-secret-that-is-long-enough-for-hs256"
BODY = json.dumps(
    {
        "event": "room_started",
        "id": "EV_abc",
        "createdAt": "1700000000",
        "room": {"sid": "RM_1", "name": "support-1"},
    }
).encode()


def sign(
    body: bytes,
    *,
    key: str = KEY,
    secret: str = SECRET,
    ttl: datetime.timedelta = datetime.timedelta(minutes=5),
    sha: str | None = None,
) -> str:
    token = api.AccessToken(key, secret).with_ttl(ttl)
    digest = sha if sha is not None else base64.b64encode(hashlib.sha256(body).digest()).decode()
    if digest:
        token = token.with_sha256(digest)
    return token.to_jwt()


@pytest.fixture
def receiver() -> ConstantTimeWebhookReceiver:
    return ConstantTimeWebhookReceiver(api_key=KEY, api_secret=SECRET)


def test_valid_webhook_verifies_and_parses(receiver: ConstantTimeWebhookReceiver) -> None:
    event = receiver.receive_bytes(BODY, sign(BODY))
    assert (event.event, event.id, event.room.name) == ("room_started", "EV_abc", "support-1")
    assert event.created_at == 1700000000


def test_bearer_prefix_is_accepted(receiver: ConstantTimeWebhookReceiver) -> None:
    assert receiver.receive_bytes(BODY, "Bearer " + sign(BODY)).id == "EV_abc"


def test_sdk_style_receive_uses_the_same_checks(receiver: ConstantTimeWebhookReceiver) -> None:
    assert receiver.receive(BODY.decode(), sign(BODY)).id == "EV_abc"
    with pytest.raises(WebhookVerificationError):
        receiver.receive(BODY.decode() + " ", sign(BODY))


def test_tampered_body_is_rejected(receiver: ConstantTimeWebhookReceiver) -> None:
    tampered = BODY.replace(b"support-1", b"support-2")
    with pytest.raises(WebhookVerificationError, match="sha256"):
        receiver.receive_bytes(tampered, sign(BODY))


def test_wrong_secret_is_rejected(receiver: ConstantTimeWebhookReceiver) -> None:
    with pytest.raises(WebhookVerificationError, match="signature"):
        receiver.receive_bytes(BODY, sign(BODY, secret="another-secret-long-enough-for-hs256!"))


def test_token_for_another_api_key_is_rejected(receiver: ConstantTimeWebhookReceiver) -> None:
    with pytest.raises(WebhookVerificationError, match="API key"):
        receiver.receive_bytes(BODY, sign(BODY, key="otherkey"))


def test_expired_token_is_rejected(receiver: ConstantTimeWebhookReceiver) -> None:
    old = sign(BODY, ttl=datetime.timedelta(minutes=-5))
    with pytest.raises(WebhookVerificationError, match="expired"):
        receiver.receive_bytes(BODY, old)


def test_missing_or_garbage_token_is_rejected(receiver: ConstantTimeWebhookReceiver) -> None:
    for auth in (None, "", "Bearer ", "not-a-jwt", "a.b.c"):
        with pytest.raises(WebhookVerificationError):
            receiver.receive_bytes(BODY, auth)


def test_token_without_body_hash_is_rejected(receiver: ConstantTimeWebhookReceiver) -> None:
    with pytest.raises(WebhookVerificationError, match="no sha256"):
        receiver.receive_bytes(BODY, sign(BODY, sha=""))
    with pytest.raises(WebhookVerificationError, match="base64"):
        receiver.receive_bytes(BODY, sign(BODY, sha="%%%not base64%%%"))


def test_hash_is_compared_in_constant_time(
    receiver: ConstantTimeWebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = verify_mod.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(verify_mod.hmac, "compare_digest", spy)
    receiver.receive_bytes(BODY, sign(BODY))
    digest = hashlib.sha256(BODY).digest()
    assert (digest, digest) in calls  # (PyJWT compares the token signature the same way)


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'"room_started"', b"\xff\xfe", b'{"event": 5}', b"[" * 5000],
)
def test_verified_body_that_is_not_an_event_is_a_payload_error(
    receiver: ConstantTimeWebhookReceiver, body: bytes
) -> None:
    with pytest.raises(WebhookPayloadError):
        receiver.receive_bytes(body, sign(body))


def test_receiver_needs_credentials() -> None:
    with pytest.raises(ValueError):
        ConstantTimeWebhookReceiver(api_key="", api_secret=SECRET)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_dedup_remembers_answers_for_the_window() -> None:
    clock = FakeClock()
    dedup = EventDeduplicator(window=60, max_entries=10, clock=clock)
    dedup.remember("EV_1", {"status": "dispatched"})
    clock.now += 59
    assert dedup.get("EV_1") == {"status": "dispatched"}
    clock.now += 2
    assert dedup.get("EV_1") is None
    assert len(dedup) == 0


def test_dedup_is_bounded_dropping_the_oldest() -> None:
    dedup = EventDeduplicator(window=60, max_entries=2, clock=FakeClock())
    for i in range(3):
        dedup.remember(f"EV_{i}", {"n": i})
    assert dedup.get("EV_0") is None
    assert dedup.get("EV_1") == {"n": 1} and dedup.get("EV_2") == {"n": 2}
    assert len(dedup) == 2
