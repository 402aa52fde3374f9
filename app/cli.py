"""``external-agent``: serve the service, sign a body for curl, dispatch a job to a service;
``prewarm`` loads the models (the image build), ``health`` asks a running service (HEALTHCHECK).

Exit codes: 0 success; 1 the service refused (``dispatch``); 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Sequence
from typing import Any

from pydantic import SecretStr, ValidationError

from app.errors import JobBodyImportError, TokenMintError
from app.settings import ClientSettings, ConfigFileError, Settings


def _config_error(error: Exception) -> int:
    """Print a configuration problem without echoing any input value (secrets)."""
    if isinstance(error, ValidationError):
        for e in error.errors(include_url=False, include_input=False):
            loc = ".".join(str(p) for p in e["loc"]) or "settings"
            print(f"configuration error: {loc}: {e['msg']}", file=sys.stderr)
    else:
        print(f"configuration error: {error}", file=sys.stderr)
    return 2


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = Settings.load(args.config)
    except (ValidationError, ConfigFileError) as e:
        return _config_error(e)
    from agents.extras import ProviderUnavailable
    from app.extras import check_extras
    from app.jobs.bodies import default_job_body
    from app.logs import configure_logging
    from app.main import create_app
    from app.server import run

    try:
        check_extras(settings)  # before anything heavy is imported; one line, exit 2
    except ProviderUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # Process-wide, and first: building the job body loads providers and models, which log.
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    try:
        job_body = default_job_body(settings)
    except JobBodyImportError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    except ProviderUnavailable as e:  # a model that is missing
        print(f"error: {e}", file=sys.stderr)
        return 2
    app = create_app(settings, job_body=job_body)
    run(
        app,
        host=args.host or settings.host,
        port=args.port or settings.port,
        http=settings.http,
        log_level=settings.log_level,
    )
    return 0


def _prewarm(args: argparse.Namespace) -> int:
    """Load the models the configuration names (every declared provider with
    ``--every-provider``) and exit; the image build runs it. Secrets are not needed."""
    import asyncio

    from agents.entry import load_models
    from agents.extras import ProviderUnavailable

    try:
        settings = Settings.load(args.config, dev_mode=True)
    except (ValidationError, ConfigFileError) as e:
        return _config_error(e)
    started = time.monotonic()
    try:
        names = asyncio.run(load_models(settings.agent, every_provider=args.every_provider))
    except ProviderUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    took = time.monotonic() - started
    print(f"loaded {len(names)} providers ({', '.join(names)}) in {took:.1f} s")
    return 0


def _health(args: argparse.Namespace) -> int:
    """GET the running service's /health (the image's HEALTHCHECK): 0 when it answers 200."""
    import httpx

    try:
        port = args.port or ClientSettings.load(args.config).port
    except (ValidationError, ConfigFileError) as e:
        return _config_error(e)
    url = args.url or f"http://127.0.0.1:{port}/health"
    try:
        response = httpx.get(url, timeout=args.timeout)
    except httpx.HTTPError as e:
        print(f"unhealthy: {url}: {type(e).__name__}", file=sys.stderr)
        return 1
    print(response.text)
    return 0 if response.status_code == 200 else 1


def _secret(args: argparse.Namespace) -> tuple[SecretStr | None, ClientSettings | None]:
    if args.secret:
        return SecretStr(args.secret), None
    client = ClientSettings.load(args.config)
    return client.signing_secret, client


def _warn_about_body(body: bytes, tolerance: float = 300.0) -> None:
    try:
        ts = json.loads(body).get("timestamp")
    except (ValueError, AttributeError):
        print("warning: the body is not a JSON object", file=sys.stderr)
        return
    if not isinstance(ts, int | float) or isinstance(ts, bool):
        print("warning: the body has no numeric 'timestamp'; it will be refused", file=sys.stderr)
    elif abs(ts - time.time()) > tolerance:
        print("warning: the body's 'timestamp' is stale; it will be refused", file=sys.stderr)


def _sign(args: argparse.Namespace) -> int:
    from app.security.signatures import sign_headers

    try:
        secret, _ = _secret(args)
    except (ValidationError, ConfigFileError) as e:
        return _config_error(e)
    if secret is None:
        print("error: no secret: pass --secret or set LIVEKIT_WEBHOOK_SECRET", file=sys.stderr)
        return 2
    body = sys.stdin.buffer.read()
    _warn_about_body(body)
    timestamp = args.timestamp if args.timestamp is not None else int(time.time())
    headers = sign_headers(
        body,
        secret,
        timestamp=timestamp,
        scheme=args.scheme,
        msg_id=args.id or f"msg_{secrets.token_hex(12)}",
    )
    for name, value in headers.items():
        print(f"{name}: {value}")
    return 0


def build_notification(args: argparse.Namespace, client: ClientSettings) -> dict[str, Any]:
    from app.jobs.tokens import mint_agent_token

    job_id = args.job_id or f"AJ_{secrets.token_hex(6)}"
    body: dict[str, Any] = {
        "job_id": job_id,
        "dispatch_id": args.dispatch_id or f"AD_{secrets.token_hex(6)}",
        "job_type": args.job_type,
        "room": {"sid": "", "name": args.room, "created_at": int(time.time())},
        "metadata": args.metadata,
        "timestamp": int(time.time()),
    }
    if args.participant:
        body["participant"] = {"sid": "", "identity": args.participant}
    server_url = args.server_url or client.livekit_url
    if server_url:
        body["server_url"] = server_url
    if client.livekit_api_key and client.livekit_api_secret is not None:
        body["access_token"] = mint_agent_token(
            api_key=client.livekit_api_key,
            api_secret=client.livekit_api_secret,
            room=args.room,
            identity=client.agent_identity_prefix + job_id,
            name=client.agent_name,
            metadata=client.agent_metadata,
            ttl_seconds=client.token_ttl,
        )
    return body


def _dispatch(args: argparse.Namespace) -> int:
    import httpx

    from app.security.signatures import sign_headers

    try:
        client = ClientSettings.load(args.config)
    except (ValidationError, ConfigFileError) as e:
        return _config_error(e)
    secret = SecretStr(args.secret) if args.secret else client.signing_secret
    if secret is None:
        print("error: no secret: pass --secret or set LIVEKIT_WEBHOOK_SECRET", file=sys.stderr)
        return 2
    if args.job_type != "JT_ROOM" and not args.participant:
        print(f"error: --participant is required for {args.job_type}", file=sys.stderr)
        return 2
    try:
        notification = build_notification(args, client)
    except TokenMintError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    raw = json.dumps(notification, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json"}
    headers.update(sign_headers(raw, secret, timestamp=int(time.time())))
    url = args.url or f"http://{client.host}:{client.port}{client.webhook_path}"
    try:
        response = httpx.post(url, content=raw, headers=headers, timeout=args.timeout)
    except httpx.HTTPError as e:
        print(f"error: could not reach {url}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"status": response.status_code, "job_id": notification["job_id"]}))
    print(response.text)
    try:
        accepted = bool(response.json().get("accepted"))
    except (ValueError, AttributeError):
        accepted = False
    return 0 if response.status_code == 200 and accepted else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="external-agent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the service")
    serve.add_argument("--config", help="config.yaml (default: $EXTERNAL_AGENT_CONFIG)")
    serve.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8080)")
    serve.set_defaults(func=_serve)

    prewarm = sub.add_parser("prewarm", help="load the configured models and exit (image build)")
    prewarm.add_argument("--config", help="config.yaml (default: $EXTERNAL_AGENT_CONFIG)")
    prewarm.add_argument(
        "--every-provider", action="store_true",
        help="every declared provider, not only those the enabled pipelines use",
    )
    prewarm.set_defaults(func=_prewarm)

    health = sub.add_parser("health", help="exit 0 when the local service's /health answers 200")
    health.add_argument("--url", help="default: http://127.0.0.1:PORT/health")
    health.add_argument("--port", type=int, help="default: the configured port")
    health.add_argument("--config", help="config.yaml to read the port from")
    health.add_argument("--timeout", type=float, default=3.0, help="HTTP timeout (s)")
    health.set_defaults(func=_health)

    sign = sub.add_parser("sign", help="sign a JSON body read on stdin; print curl headers")
    sign.add_argument("--secret", help="secret (default: first of LIVEKIT_WEBHOOK_SECRET)")
    sign.add_argument("--config", help="config.yaml to read the secret from")
    sign.add_argument("--scheme", choices=["livekit", "standard"], default="livekit")
    sign.add_argument("--timestamp", type=int, help="unix seconds (default: now)")
    sign.add_argument("--id", help="webhook-id for --scheme standard (default: random)")
    sign.set_defaults(func=_sign)

    dispatch = sub.add_parser("dispatch", help="build, sign and POST a job notification")
    dispatch.add_argument("--room", required=True, help="room name")
    dispatch.add_argument("--url", help="webhook URL (default: http://HOST:PORT/livekit/agent)")
    dispatch.add_argument(
        "--job-type", choices=["JT_ROOM", "JT_PUBLISHER", "JT_PARTICIPANT"], default="JT_ROOM"
    )
    dispatch.add_argument("--participant", help="target identity (JT_PUBLISHER/JT_PARTICIPANT)")
    dispatch.add_argument("--job-id", help="job id (default: random AJ_...)")
    dispatch.add_argument("--dispatch-id", help="dispatch id (default: random AD_...)")
    dispatch.add_argument("--metadata", default="", help="job metadata (string, may be JSON)")
    dispatch.add_argument("--server-url", help="LiveKit URL for the job (default: LIVEKIT_URL)")
    dispatch.add_argument("--secret", help="secret (default: first of LIVEKIT_WEBHOOK_SECRET)")
    dispatch.add_argument("--config", help="config.yaml to read settings from")
    dispatch.add_argument("--timeout", type=float, default=15.0, help="HTTP timeout (s)")
    dispatch.set_defaults(func=_dispatch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
