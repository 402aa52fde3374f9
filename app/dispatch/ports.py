"""What the LiveKit doors need from the job manager, and their error types."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from app.admission import Admission
from app.errors import ServiceError

JobEndCallback = Callable[[str, str, "str | None"], None]
"""``(job_id, final_state, reason)``; ``final_state`` is ``completed``, ``failed`` or
``cancelled``. Called on the event loop; must not block or raise."""


class JobManagerPort(Admission, Protocol):
    """:class:`Admission` plus the read-only view the worker reports to the LiveKit server."""

    def on_job_end(self, callback: JobEndCallback) -> object:
        """Register ``callback`` for every job that reaches a final state."""
        ...

    @property
    def active_jobs(self) -> int:
        """Jobs admitted and not finished (running, connecting, reserved)."""
        ...

    @property
    def used_slots(self) -> int:
        """Slots taken: running jobs, reservations and offers being decided."""
        ...

    @property
    def max_jobs(self) -> int: ...

    @property
    def draining(self) -> bool: ...


class DispatchError(ServiceError):
    """Base of the LiveKit doors' errors. ``retryable``: the same call may succeed later."""


class WorkerConnectionError(DispatchError):
    """The worker websocket could not be opened, registered or kept alive."""

    retryable = True


class WorkerProtocolError(DispatchError):
    """The server sent something the worker protocol does not allow (e.g. no registration
    answer as the first message)."""

    retryable = True


class InvalidJobError(DispatchError):
    """A job offered by the server cannot be turned into a :class:`~app.admission.JobRequest`."""


class WebhookVerificationError(DispatchError):
    """A LiveKit webhook's signature (JWT, body hash) is missing, invalid, expired or does not
    cover the body. Answered with 401."""


class WebhookPayloadError(DispatchError):
    """A verified LiveKit webhook body does not parse as a ``WebhookEvent``. Answered with 400."""
