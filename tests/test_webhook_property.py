"""Property: random bodies and headers never produce a 5xx or a job."""

from __future__ import annotations

import json
import time
from typing import Any

from conftest import SECRET, ControlledBody, make_settings, notification, signed
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.main import create_app

HEADER_NAMES = st.sampled_from(
    [
        "x-livekit-signature",
        "x-livekit-timestamp",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "content-length",
        "content-type",
        "x-other",
    ]
)
HEADER_VALUES = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=15,
)
FIELD_VALUES = st.none() | st.integers() | st.text(max_size=30) | st.booleans() | JSON


def _client() -> tuple[TestClient, ControlledBody]:
    body = ControlledBody()
    return TestClient(create_app(make_settings(max_jobs=1000), job_body=body)), body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=512), headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES))
def test_random_bytes_and_headers_never_5xx_or_a_job(raw: bytes, headers: dict[str, str]):
    client, body = _client()
    with client:
        r = client.post("/livekit/agent", content=raw, headers=headers)
        assert r.status_code < 500, r.text
        assert r.json()["accepted"] is False
        assert client.app.state.runtime.manager.active_jobs == 0  # type: ignore[attr-defined]
    assert body.specs == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=JSON)
def test_validly_signed_random_json_never_5xx_or_a_job(obj: Any):
    client, body = _client()
    with client:
        raw, headers = signed(json.dumps(obj).encode(), secret=SECRET)
        r = client.post("/livekit/agent", content=raw, headers=headers)
        assert r.status_code in (400, 401, 422), r.text
        assert r.json()["accepted"] is False
    assert body.specs == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    field=st.sampled_from(
        [
            "job_id",
            "dispatch_id",
            "job_type",
            "room",
            "participant",
            "metadata",
            "access_token",
            "server_url",
            "timestamp",
        ]
    ),
    value=FIELD_VALUES,
)
def test_one_corrupted_field_never_5xx_and_jobs_only_from_valid_offers(field: str, value: Any):
    client, body = _client()
    n = notification(timestamp=int(time.time()))
    n[field] = value
    with client:
        raw, headers = signed(n)
        r = client.post("/livekit/agent", content=raw, headers=headers)
        assert r.status_code < 500, r.text
        accepted = r.status_code == 200 and r.json()["accepted"] is True
        if not accepted:
            assert client.app.state.runtime.manager.active_jobs == 0  # type: ignore[attr-defined]
    assert len(body.specs) <= (1 if accepted else 0)
