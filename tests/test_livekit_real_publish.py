"""The agent leaving while its audio track is being published, against a real
``livekit-server`` (issue 16, item 12): leaving waits for the publication, so the SDK never fails
the publisher's negotiation on a closed connection."""

from __future__ import annotations

import asyncio
import logging

import pytest
from livekit_env import LiveKitServer
from test_livekit_adapter_events import Events

from agents.transport.livekit import LiveKitTransport

pytestmark = [pytest.mark.livekit, pytest.mark.timeout(120)]


async def test_leaving_during_the_publication_negotiates_nothing_on_a_closed_connection(
    livekit_server: LiveKitServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="livekit")
    for n in range(5):
        transport = LiveKitTransport()
        await transport.connect(
            url=livekit_server.url,
            token=livekit_server.agent_token(f"publish-race-{n}", f"ai-agent-{n}"),
            listener=Events(),
            wants_audio=lambda _info: False,
        )
        publishing = asyncio.create_task(transport.publish_audio(sample_rate=24000))
        await asyncio.sleep(0.01 * n)
        publishing.cancel()  # the job ends while its track is being set up
        await transport.aclose()
        await asyncio.gather(publishing, return_exceptions=True)
    await asyncio.sleep(1.0)  # the SDK logs a failed negotiation asynchronously
    failures = [r.getMessage() for r in caplog.records if "negotiat" in r.getMessage().lower()
                and r.levelno >= logging.WARNING]
    assert failures == []
