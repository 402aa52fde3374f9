"""The LiveKit doors' own overhead, each against a bare baseline measured in the same run.

1. Webhook verification: our ``ConstantTimeWebhookReceiver.receive_bytes`` (token, constant-time
   body hash, JSON object check, parse) against livekit-api's ``WebhookReceiver.receive`` on the
   same signed bodies.
2. Native dispatch offers: ``AvailabilityRequest`` -> ``AvailabilityResponse`` round trips over a
   loopback websocket to the protocol-level test server (``tests/agent_protocol_server.py``),
   answered by our ``AgentWorker`` (task per offer, admission ``reserve`` on a scripted manager,
   bookkeeping) against a bare client that answers every offer with a fixed response. Offers are
   sent one at a time, so this is the round-trip latency each offer pays.

    python bench/bench_livekit_doors.py [--events 3000] [--offers 1000]

Last line: ``bench_livekit_doors: <ratio> x bare offer throughput (target 0.5)``, the ratio of
median round trips (offers go one at a time).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import hashlib
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import aiohttp
import structlog

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from agent_protocol_server import AgentProtocolServer, make_job  # noqa: E402
from dispatch_fakes import FakeJobManager  # noqa: E402
from livekit import api  # noqa: E402
from livekit.protocol import agent as pb  # noqa: E402

from app.dispatch.config import WorkerSettings  # noqa: E402
from app.dispatch.protocol import register_message, worker_token  # noqa: E402
from app.dispatch.webhook_verify import ConstantTimeWebhookReceiver  # noqa: E402
from app.dispatch.worker import AgentWorker  # noqa: E402

KEY = "benchkey"
SECRET = "bench-livekit-secret-0123456789abcdef0123"


def signed_events(n: int) -> list[tuple[bytes, str]]:
    out = []
    for i in range(n):
        body = json.dumps(
            {
                "event": "participant_joined",
                "id": f"EV_{i}",
                "createdAt": str(1700000000 + i),
                "room": {"sid": "RM_b", "name": f"support-{i}"},
                "participant": {"sid": f"PA_{i}", "identity": f"caller-{i}", "kind": "STANDARD"},
            }
        ).encode()
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        token = (
            api.AccessToken(KEY, SECRET)
            .with_sha256(digest)
            .with_ttl(datetime.timedelta(minutes=10))
            .to_jwt()
        )
        out.append((body, token))
    return out


def bench_verify(events: list[tuple[bytes, str]], rounds: int = 5) -> tuple[float, float]:
    """Median events/s over ``rounds`` alternating rounds (the machine is shared and noisy)."""
    ours = ConstantTimeWebhookReceiver(api_key=KEY, api_secret=SECRET)
    sdk = api.WebhookReceiver(api.TokenVerifier(KEY, SECRET))
    texts = [(body.decode(), token) for body, token in events]
    ours_rates, sdk_rates = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for body, token in events:
            ours.receive_bytes(body, token)
        ours_rates.append(len(events) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for text, token in texts:
            sdk.receive(text, token)
        sdk_rates.append(len(events) / (time.perf_counter() - t0))
    return statistics.median(ours_rates), statistics.median(sdk_rates)


async def offers_round_trips(server: AgentProtocolServer, n: int, prefix: str) -> list[float]:
    times = []
    for i in range(n):
        job = make_job(f"{prefix}_{i}", room=f"r{i}")
        t0 = time.perf_counter()
        resp = await server.request_availability(job)
        times.append(time.perf_counter() - t0)
        assert resp.job_id == job.id
        server.received.clear()  # keep the server's scan O(1)
    return times


async def bare_client(url: str, stop: asyncio.Event) -> None:
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {worker_token(KEY, SECRET)}"}
        async with session.ws_connect(url.replace("http", "ws") + "/agent", headers=headers) as ws:
            await ws.send_bytes(register_message(WorkerSettings()).SerializeToString())
            async for raw in ws:
                msg = pb.ServerMessage.FromString(raw.data)
                if msg.WhichOneof("message") == "availability":
                    resp = pb.AvailabilityResponse(
                        job_id=msg.availability.job.id,
                        available=True,
                        participant_identity="ai-agent-x",
                        participant_name="AI Assistant",
                        participant_metadata='{"type":"ai"}',
                    )
                    await ws.send_bytes(pb.WorkerMessage(availability=resp).SerializeToString())
                if stop.is_set():
                    return


async def bench_offers(n: int) -> tuple[list[float], list[float]]:
    # Bare client.
    server = AgentProtocolServer(api_key=KEY, api_secret=SECRET)
    await server.start()
    stop = asyncio.Event()
    task = asyncio.create_task(bare_client(server.url, stop), name="bench-bare-client")
    await server.wait_connections(1)
    await offers_round_trips(server, 50, "warm")
    bare = await offers_round_trips(server, n, "bare")
    stop.set()
    await server.aclose()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    # Our worker; each accepted offer holds a slot, so capacity is above the load.
    server = AgentProtocolServer(api_key=KEY, api_secret=SECRET)
    await server.start()
    manager = FakeJobManager(capacity=10 * n + 100)
    worker = AgentWorker(
        manager=manager,
        settings=WorkerSettings(status_interval=60, ping_interval=30, ping_timeout=60),
        livekit_url=server.url,
        api_key=KEY,
        api_secret=SECRET,
    )
    await worker.start()
    await worker.wait_registered()
    await offers_round_trips(server, 50, "warm")
    ours = await offers_round_trips(server, n, "ours")
    await worker.aclose()
    await server.aclose()
    return ours, bare


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--offers", type=int, default=1000)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    ours_v, sdk_v = bench_verify(signed_events(args.events))
    ratio_v = ours_v / sdk_v
    print(f"webhook verify: ours {ours_v:,.0f}/s, livekit-api {sdk_v:,.0f}/s, ratio {ratio_v:.2f}")

    ours, bare = asyncio.run(bench_offers(args.offers))
    p50_o, p50_b = statistics.median(ours) * 1e3, statistics.median(bare) * 1e3
    p99_o = statistics.quantiles(ours, n=100)[98] * 1e3
    p99_b = statistics.quantiles(bare, n=100)[98] * 1e3
    print(
        f"worker offers one at a time: ours p50 {p50_o:.3f} ms p99 {p99_o:.3f} ms; "
        f"bare p50 {p50_b:.3f} ms p99 {p99_b:.3f} ms"
    )
    # Offers go one at a time, so throughput is 1 / latency; the median resists the noise of a
    # shared machine.
    print(f"bench_livekit_doors: {p50_b / p50_o:.2f} x bare offer throughput (target 0.5)")


if __name__ == "__main__":
    main()
