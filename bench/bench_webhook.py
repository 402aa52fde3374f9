"""Signed-notification throughput of ``POST /livekit/agent`` against a bare FastAPI endpoint.

Both run under uvicorn in their own subprocess on loopback with the same uvicorn settings (one
worker, default loop and HTTP implementation, no access log, log level warning). The service
runs in dev mode with the ``instant`` job body (each accepted job ends at once) and a capacity
far above the load, so what is measured is intake: size cap, HMAC, timestamps, JSON, schema,
admission, the job task, metrics. The bare endpoint reads the body and returns the same accepted
JSON. The same client load (aiohttp, fixed concurrency, distinct signed notifications) hits
each; rounds alternate between the two and the median round counts.

    python bench/bench_webhook.py [--requests 3000] [--concurrency 32] [--rounds 3]

Last line: ``bench_webhook: <ratio> x bare throughput (target 0.8)``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.security.signatures import sign_headers  # noqa: E402

SECRET = "bench-webhook-secret-0123456789abcdef"
ANSWER_TEMPLATE = {
    "accepted": True,
    "participant_identity": "ai-agent-AJ_x",
    "participant_name": "AI Assistant",
    "participant_metadata": '{"type":"ai"}',
}
UVICORN = {"log_level": "warning", "access_log": False, "log_config": None}


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.post("/livekit/agent")
    async def agent(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse(ANSWER_TEMPLATE)

    return app


def serve_bare(port: int) -> None:
    import uvicorn

    uvicorn.Server(uvicorn.Config(bare_app(), host="127.0.0.1", port=port, **UVICORN)).run()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(kind: str, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXTERNAL_AGENT_", "LIVEKIT_"))}
    if kind == "bare":
        cmd = [sys.executable, __file__, "--bare-server", str(port)]
    else:
        cmd = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
        env.update(
            {
                "LIVEKIT_WEBHOOK_SECRET": SECRET,
                "EXTERNAL_AGENT_DEV_MODE": "true",
                "EXTERNAL_AGENT_JOB_BODY": "app.jobs.bodies:instant",
                "EXTERNAL_AGENT_MAX_JOBS": "10000",
                "EXTERNAL_AGENT_LOG_LEVEL": "warning",
            }
        )
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)


def wait_up(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server on {port} exited with {proc.returncode}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"server on {port} did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), 0.0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def offers(prefix: str, n: int) -> list[tuple[bytes, dict[str, str]]]:
    now = int(time.time())
    out = []
    for i in range(n):
        body = {
            "job_id": f"AJ_{prefix}_{i}",
            "dispatch_id": f"AD_{i}",
            "job_type": "JT_ROOM",
            "room": {"sid": "RM_bench", "name": f"bench-{i}", "created_at": now},
            "metadata": "",
            "access_token": "eyJhbGc.bench.token",
            "server_url": "wss://livekit.example.com",
            "timestamp": now,
        }
        raw = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **sign_headers(raw, SECRET, timestamp=now)}
        out.append((raw, headers))
    return out


async def load(url: str, items: list[tuple[bytes, dict[str, str]]], concurrency: int) -> dict:
    latencies: list[float] = []
    failures = 0
    queue: asyncio.Queue[tuple[bytes, dict[str, str]]] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal failures
            while not queue.empty():
                raw, headers = queue.get_nowait()
                t0 = time.perf_counter()
                async with session.post(url, data=raw, headers=headers) as r:
                    data = await r.read()
                latencies.append(time.perf_counter() - t0)
                if r.status != 200 or b'"accepted":true' not in data.replace(b" ", b""):
                    failures += 1

        started = time.perf_counter()
        workers = [asyncio.create_task(worker(), name=f"bench-{i}") for i in range(concurrency)]
        await asyncio.gather(*workers)
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": len(items) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "failures": failures,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bare-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        serve_bare(args.bare_server)
        return

    ports = {"service": free_port(), "bare": free_port()}
    procs = {kind: start(kind, port) for kind, port in ports.items()}
    try:
        for kind, port in ports.items():
            wait_up(port, procs[kind])
        results: dict[str, list[dict]] = {"service": [], "bare": []}
        for rnd in range(args.rounds + 1):  # round 0 warms both up and is not counted
            for kind in ("service", "bare"):
                n = args.requests if rnd else max(200, args.requests // 10)
                url = f"http://127.0.0.1:{ports[kind]}/livekit/agent"
                items = offers(f"{kind}{rnd}", n)
                cpu0 = cpu_seconds(procs[kind].pid)
                res = asyncio.run(load(url, items, args.concurrency))
                res["cpu_us"] = (cpu_seconds(procs[kind].pid) - cpu0) / n * 1e6
                if res["failures"]:
                    raise SystemExit(f"{kind}: {res['failures']} requests were not accepted")
                if rnd:
                    results[kind].append(res)
        summary = {}
        for kind, runs in results.items():
            summary[kind] = {
                key: statistics.median(r[key] for r in runs)
                for key in ("rps", "p50_ms", "p99_ms", "cpu_us")
            }
            s = summary[kind]
            print(
                f"{kind:8s} {s['rps']:8.0f} req/s  p50 {s['p50_ms']:6.2f} ms  "
                f"p99 {s['p99_ms']:6.2f} ms  server CPU {s['cpu_us']:5.0f} us/req  "
                f"(median of {len(runs)} rounds of {args.requests}, concurrency {args.concurrency})"
            )
        ratio = summary["service"]["rps"] / summary["bare"]["rps"]
        cpu_ratio = summary["bare"]["cpu_us"] / max(summary["service"]["cpu_us"], 1e-9)
        print(f"server CPU per request, bare/service: {cpu_ratio:.2f} (load-independent view)")
        print(f"bench_webhook: {ratio:.2f} x bare throughput (target 0.8)")
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(30)


if __name__ == "__main__":
    main()
