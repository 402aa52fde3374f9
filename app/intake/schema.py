"""The job notification body (PROTOCOL.md §1), validated strictly; unknown fields are ignored."""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    model_validator,
)

from agents.job import JOB_ID_PATTERN, JobType

_MAX_INT64 = 2**63 - 1


def _int64(value: Any) -> Any:
    """Go's protojson writes int64 as a decimal string; accept that, nothing else."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        return int(value)
    return value


Int64 = Annotated[StrictInt, BeforeValidator(_int64), Field(ge=0, le=_MAX_INT64)]
Identifier = Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=JOB_ID_PATTERN)]


class Room(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, validate_by_name=True)

    name: Annotated[StrictStr, Field(min_length=1, max_length=256)]
    sid: Annotated[StrictStr, Field(max_length=128)] = ""
    # A Go server serialises the proto field name: room.creation_time. created_at wins when
    # both are there.
    created_at: Int64 | None = Field(
        None, validation_alias=AliasChoices("created_at", "creation_time")
    )


class Participant(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    identity: Annotated[StrictStr, Field(min_length=1, max_length=256)]
    sid: Annotated[StrictStr, Field(max_length=128)] = ""


class JobNotification(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    job_id: Identifier
    dispatch_id: Annotated[StrictStr, Field(max_length=128)] = ""
    job_type: JobType
    room: Room
    participant: Participant | None = None
    metadata: Annotated[StrictStr, Field(max_length=32 * 1024)] | None = None
    access_token: Annotated[StrictStr, Field(min_length=1, max_length=8192)] | None = None
    server_url: (
        Annotated[
            StrictStr, Field(min_length=1, max_length=2048, pattern=r"^[A-Za-z][A-Za-z0-9+.\-]*://")
        ]
        | None
    ) = None
    timestamp: Int64

    @model_validator(mode="after")
    def _participant_for_participant_jobs(self) -> Self:
        if self.job_type in ("JT_PUBLISHER", "JT_PARTICIPANT") and self.participant is None:
            raise ValueError(f"participant is required for {self.job_type}")
        return self
