"""Signature schemes on raw bytes: LiveKit hex HMAC and Standard Webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from pydantic import SecretStr

from app.errors import IntakeError
from app.security.signatures import (
    check_timestamp,
    livekit_signature,
    sign_headers,
    verify_signature,
)

S1, S2 = SecretStr("first-secret-0123456789abcdef"), SecretStr("second-secret-0123456789abcd")
BODY = b'{"job_id":"AJ_1"}'


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def test_livekit_signature_is_hex_hmac_sha256_of_the_raw_body():
    expected = hmac.new(S1.get_secret_value().encode(), BODY, hashlib.sha256).hexdigest()
    assert livekit_signature(BODY, S1) == expected


def test_the_matching_secret_of_a_rotation_is_reported():
    headers = lower(sign_headers(BODY, S2, timestamp=100))
    assert verify_signature(BODY, headers, [S1, S2]).secret_index == 1
    assert verify_signature(BODY, headers, [S2, S1]).secret_index == 0


def test_uppercase_hex_and_sha256_prefix_are_accepted():
    headers = lower(sign_headers(BODY, S1, timestamp=100))
    headers["x-livekit-signature"] = "SHA256=" + headers["x-livekit-signature"].upper()
    assert verify_signature(BODY, headers, [S1]).scheme == "livekit"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda h: h.pop("x-livekit-timestamp"),
        lambda h: h.update({"x-livekit-timestamp": "12.5"}),
        lambda h: h.update({"x-livekit-timestamp": "-5"}),
        lambda h: h.update({"x-livekit-signature": "zz"}),
        lambda h: h.update({"x-livekit-signature": "é" * 64}),
    ],
)
def test_malformed_livekit_headers_are_401(mutate):
    headers = lower(sign_headers(BODY, S1, timestamp=100))
    mutate(headers)
    with pytest.raises(IntakeError) as e:
        verify_signature(BODY, headers, [S1])
    assert e.value.status == 401


def test_standard_webhooks_signs_id_timestamp_and_body():
    headers = lower(sign_headers(BODY, S1, timestamp=1700000000, scheme="standard", msg_id="m1"))
    signed = b"m1.1700000000." + BODY
    digest = hmac.new(S1.get_secret_value().encode(), signed, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(digest).decode()
    assert verify_signature(BODY, headers, [S1]).scheme == "standard"
    for key, value in (("webhook-id", "m2"), ("webhook-timestamp", "1700000001")):
        changed = {**headers, key: value}
        with pytest.raises(IntakeError, match="invalid signature"):
            verify_signature(BODY, changed, [S1])


def test_standard_webhooks_whsec_secret_is_the_decoded_key_and_any_listed_v1_matches():
    key = b"0123456789abcdef0123456789abcdef"
    secret = SecretStr("whsec_" + base64.b64encode(key).decode())
    signed = b"m1.100." + BODY
    good = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    headers = {
        "webhook-id": "m1",
        "webhook-timestamp": "100",
        "webhook-signature": f"v1,AAAA v2,xyz v1,{good}",
    }
    assert verify_signature(BODY, headers, [S1, secret]).secret_index == 1


def test_no_signature_or_no_secret_is_401():
    with pytest.raises(IntakeError, match="missing signature"):
        verify_signature(BODY, {}, [S1])
    with pytest.raises(IntakeError, match="no webhook secret"):
        verify_signature(BODY, lower(sign_headers(BODY, S1, timestamp=1)), [])


def test_timestamp_tolerance_applies_both_ways():
    check_timestamp(1000, now=1300, tolerance=300)
    check_timestamp(1600, now=1300, tolerance=300)
    for value in (999, 1601):
        with pytest.raises(IntakeError, match="stale timestamp"):
            check_timestamp(value, now=1300, tolerance=300)
