"""What an outside probe broke at the doors (issue 16, items 3, 5, 6, 8, 10): bad input always
gets a 4xx with the contract's JSON, never a 5xx; one id rule at every door; records never
overwrite each other."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    ADMIN,
    API_KEY,
    API_SECRET,
    AppFactory,
    ControlledBody,
    make_settings,
    notification,
    signed,
)
from livekit.protocol import agent as pb

from agents.job import valid_job_id
from agents.record import artifact_name, write_artifact
from app.dispatch.ports import InvalidJobError
from app.dispatch.protocol import job_request_from_proto

HUGE = "9" * 5000  # past Python's 4300-digit int parsing limit
BIG = "9" * 4000  # parses, but overflows float()


def _raw(template: dict[str, Any], field: str, digits: str) -> bytes:
    """``template`` as JSON with ``field`` set to the literal integer ``digits``."""
    text = json.dumps({**template, field: "@@"})
    return text.replace('"@@"', digits).encode()


@pytest.mark.parametrize("digits", [HUGE, BIG], ids=["5000-digits", "4000-digits"])
@pytest.mark.parametrize("field", ["timestamp", "unknown_field", "job_id"])
async def test_huge_integer_in_a_signed_body_is_a_4xx_with_contract_json(
    make_app: AppFactory, body: ControlledBody, field: str, digits: str
) -> None:
    harness = await make_app(make_settings(), body)
    raw = _raw(notification(), field, digits)
    response = await harness.post(*signed(raw))
    if field == "unknown_field" and digits == BIG:  # parses; unknown fields are ignored
        assert response.status_code == 200 and response.json()["accepted"] is True
        return
    assert 400 <= response.status_code < 500
    assert response.json()["accepted"] is False and response.json()["error"]
    assert harness.manager.active_jobs == 0


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
async def test_non_finite_body_timestamp_is_stale(
    make_app: AppFactory, body: ControlledBody, literal: str
) -> None:
    harness = await make_app(make_settings(), body)
    response = await harness.post(*signed(_raw(notification(), "timestamp", literal)))
    assert response.status_code == 401 and response.json()["error"] == "stale timestamp"


@pytest.mark.parametrize(
    "job_id", [".", "..", "a/b", "x" * 129, "ÄJ_1", "-x", "@x", "a b", "a%2Fb", ""]
)
async def test_job_ids_the_jobs_api_cannot_address_are_refused_with_422(
    make_app: AppFactory, body: ControlledBody, job_id: str
) -> None:
    harness = await make_app(make_settings(), body)
    response = await harness.send(notification(job_id=job_id))
    assert response.status_code == 422
    assert response.json()["accepted"] is False
    assert harness.manager.list_jobs() == []


@pytest.mark.parametrize("job_id", ["AJ_abc123", "COL:1", "COL@1", "a.b", "_x", "x" * 128])
async def test_every_accepted_job_id_is_reachable_at_the_jobs_api(
    make_app: AppFactory, body: ControlledBody, job_id: str
) -> None:
    harness = await make_app(make_settings(), body)
    response = await harness.send(notification(job_id=job_id))
    assert response.status_code == 200 and response.json()["accepted"] is True
    auth = {"authorization": f"Bearer {ADMIN}"}
    listed = (await harness.client.get("/jobs", headers=auth)).json()["jobs"]
    assert [job["job_id"] for job in listed] == [job_id]
    got = await harness.client.get(f"/jobs/{job_id}", headers=auth)
    assert got.status_code == 200 and got.json()["job_id"] == job_id
    cancelled = await harness.client.delete(f"/jobs/{job_id}", headers=auth)
    assert cancelled.status_code == 202


def test_the_manager_refuses_an_invalid_id_from_any_door() -> None:
    assert not valid_job_id("..") and not valid_job_id("LW_" + "x" * 126)
    job = pb.Job(id="../x", type=pb.JT_ROOM, room={"name": "r"})
    with pytest.raises(InvalidJobError):
        job_request_from_proto(job)


async def test_manager_admission_refuses_invalid_job_ids(
    make_app: AppFactory, body: ControlledBody
) -> None:
    from app.admission import JobRequest

    harness = await make_app(make_settings(), body)
    request = JobRequest(
        source="dispatch", job_id="a/b", dispatch_id="", job_type="JT_ROOM", room_name="r",
        access_token="t", server_url="wss://livekit.example.com",
    )
    result = await harness.manager.admit(request)
    assert result.verdict == "refused" and "job_id" in (result.error or "")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_wrong_method_on_webhook_paths_answers_contract_json(
    make_app: AppFactory, body: ControlledBody, method: str
) -> None:
    settings = make_settings(livekit_api_key=API_KEY, livekit_api_secret=API_SECRET)
    harness = await make_app(settings, body)
    for path in ("/livekit/agent", "/livekit/webhook"):
        response = await harness.client.request(method, path)
        assert response.status_code == 405, path
        assert response.json() == {"accepted": False, "error": "method not allowed (POST only)"}
        assert "POST" in response.headers["allow"]
    # Other paths keep FastAPI's body.
    assert "detail" in (await harness.client.request(method, "/health/nope")).json()


def test_artifact_names_are_injective_and_filesystem_safe() -> None:
    ids = ["COL:1", "COL@1", "COL_1", "COL%3A1", "ÄJ", "ÖJ", "..", ".", "a/b", "x" * 300,
           "x" * 299 + "y", "~", "%7E"]
    names = [artifact_name(i) for i in ids]
    assert len(set(names)) == len(ids)
    for name in names:
        assert name and "/" not in name and "." not in name and len(name) <= 200
        assert name.isascii()


def test_records_never_overwrite_each_other(tmp_path: Path) -> None:
    paths = [
        write_artifact(tmp_path, {"job_id": job_id, "n": n})
        for n, job_id in enumerate(["COL:1", "COL@1", "COL_1", "COL_1", "ÄJ", "ÖJ"])
    ]
    assert len(set(paths)) == 6
    contents = sorted(json.loads(p.read_text())["n"] for p in paths)
    assert contents == [0, 1, 2, 3, 4, 5]
    assert not list(tmp_path.glob(".tmp-*"))


def test_stale_check_takes_huge_integers() -> None:
    from app.errors import IntakeError
    from app.security.signatures import check_timestamp

    with pytest.raises(IntakeError):
        check_timestamp(10**4000, now=time.time(), tolerance=300)
