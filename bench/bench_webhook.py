"""Signed-notification throughput of ``POST /livekit/agent`` against a bare FastAPI endpoint.

Both run under uvicorn in their own subprocess on loopback with the same process setup: the
uvicorn settings of ``app.server.run`` (one worker, uvicorn's automatic loop and HTTP choice,
which is uvloop and httptools when installed, no access log, log level warning, lifespan on)
and ``gc.freeze()`` before serving. The service runs in dev mode with the ``instant`` job body
(each accepted job ends at once) and a capacity far above the load, so what is measured is
intake: size cap, HMAC, timestamps, JSON, schema, admission, the job task, metrics. The bare
endpoint is a FastAPI route that reads the body and returns the same accepted JSON. The same
client load (aiohttp, fixed concurrency, distinct signed notifications; never a repeated
job_id) hits each. Each round runs both back to back (the order flips every round) and gives
one throughput ratio; the headline is the median of those ratios. Short paired rounds see the
same background load on a shared machine, so their ratio is steadier than either throughput.
The server CPU per request, which that load hardly moves, is printed as a cross-check.

    python bench/bench_webhook.py [--requests 2000] [--concurrency 32] [--rounds 9]

Last line: ``bench_webhook: <ratio> x bare throughput (target 0.8)``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
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
# As app.server.run configures uvicorn for the service (its log level from the settings).
UVICORN = {
    "log_level": "warning",
    "access_log": False,
    "log_config": None,
    "lifespan": "on",
    "timeout_graceful_shutdown": 5,
}


def bare_app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/livekit/agent")
    async def agent(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse(ANSWER_TEMPLATE)

    return app


def serve_bare(port: int) -> None:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(bare_app(), host="127.0.0.1", port=port, **UVICORN))
    gc.collect()
    gc.freeze()  # as app.server.run does
    server.run()


def implementations() -> str:
    """What uvicorn's automatic choice picks in both servers (same interpreter, same venv)."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"loop {loop}, http {http}"


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
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=9)
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
        ratios: list[float] = []
        for rnd in range(args.rounds + 1):  # round 0 warms both up and is not counted
            order = ("service", "bare") if rnd % 2 else ("bare", "service")
            for kind in order:
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
            if rnd:
                ratios.append(results["service"][-1]["rps"] / results["bare"][-1]["rps"])
        print(f"uvicorn ({implementations()}), one worker each, concurrency {args.concurrency}")
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
                f"(median of {len(runs)} rounds of {args.requests})"
            )
        cpu_ratio = summary["bare"]["cpu_us"] / max(summary["service"]["cpu_us"], 1e-9)
        print(f"server CPU per request, bare/service: {cpu_ratio:.2f} (load-independent view)")
        print("throughput ratio per round: " + " ".join(f"{r:.2f}" for r in ratios))
        ratio = statistics.median(ratios)
        print(f"bench_webhook: {ratio:.2f} x bare throughput (target 0.8)")
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(30)


if __name__ == "__main__":
    main()
