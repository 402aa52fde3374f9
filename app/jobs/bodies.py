"""Choosing the job body, and the development bodies behind the ``job_body`` testing hook.

In production the body is the agent (``agents.entry.make_job_body``). With ``dev_mode`` on,
``job_body: "module:function"`` replaces it, which is how the end-to-end tests, the drain test
and the benchmark exercise the lifecycle without a LiveKit server:

- ``app.jobs.bodies:idle``: connecting, running, then waits until cancelled.
- ``app.jobs.bodies:instant``: completes at once.
- ``app.jobs.bodies:hold``: when ``metadata`` is a number, runs that many seconds and completes;
  otherwise waits until cancelled.
- ``app.jobs.bodies:deaf``: ``hold``, and the replica's ``health_problem`` is set from its first
  job on, as the agent's is when a job receives audio and decodes none (the restart test).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from typing import cast

from agents.job import JobBody, JobOutcome, JobReporter, JobSpec
from app.errors import JobBodyImportError
from app.settings import Settings


async def idle(spec: JobSpec, reporter: JobReporter) -> JobOutcome:
    reporter.state("connecting")
    reporter.state("running")
    await asyncio.Event().wait()
    raise AssertionError("unreachable")  # pragma: no cover


async def instant(spec: JobSpec, reporter: JobReporter) -> JobOutcome:
    return JobOutcome(end_reason="instant")


async def hold(spec: JobSpec, reporter: JobReporter) -> JobOutcome:
    reporter.state("connecting")
    reporter.state("running")
    try:
        seconds = float(spec.metadata)
    except ValueError:
        await asyncio.Event().wait()
        raise AssertionError("unreachable") from None  # pragma: no cover
    await asyncio.sleep(max(0.0, seconds))
    reporter.record("held_seconds", seconds)
    return JobOutcome(end_reason="held")


async def deaf(spec: JobSpec, reporter: JobReporter) -> JobOutcome:
    deaf.health_problem = (  # type: ignore[attr-defined]
        f"audio_not_decoded: job {spec.job_id} receives audio and decodes none (testing body)")
    return await hold(spec, reporter)


deaf.health_problem = None  # type: ignore[attr-defined]


def load_job_body(path: str) -> JobBody:
    """Import ``module:function`` and check that it is an async function."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
        body = getattr(module, attr)
    except (ImportError, AttributeError) as e:
        raise JobBodyImportError(f"cannot load job body {path!r}: {e}") from e
    if not inspect.iscoroutinefunction(body):
        raise JobBodyImportError(f"job body {path!r} is not an async function")
    return cast(JobBody, body)


def default_job_body(settings: Settings) -> JobBody:
    """The testing hook when set (dev mode only, enforced by the settings), else the agent."""
    if settings.job_body is not None:
        return load_job_body(settings.job_body)
    # Imported lazily: the agent is heavy, and the service's tests must not depend on it.
    try:
        entry = importlib.import_module("agents.entry")
    except ImportError as e:
        raise JobBodyImportError(f"cannot load the agent (agents.entry): {e}") from e
    make_job_body = entry.make_job_body
    try:
        return cast(JobBody, make_job_body(settings.agent))
    except entry.AgentUnavailable as e:  # a configured model or extra is missing
        raise JobBodyImportError(f"cannot start the agent: {e}") from e
