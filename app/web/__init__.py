"""The browser pages the service serves: the playground (``GET /playground``) and the operators'
console (``GET /console``). Their HTML, CSS and scripts are package data in ``static/``; the
LiveKit client is ``static/livekit-client.esm.js``, built from npm ``livekit-client`` (the version
pinned in ``web/package.json``) by ``make web`` and committed, so nothing loads from a CDN."""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/web"
