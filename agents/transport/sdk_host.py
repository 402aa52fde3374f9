"""What the host costs the LiveKit SDK on every room connect: ``lsb_release``.

``livekit`` 1.2 (its native ``livekit-ffi`` 0.13.2, through the ``os_info`` crate) runs
``lsb_release -a`` and ``getconf LONG_BIT`` for every connect, to fill the ``os`` fields of the
signal URL, and blocks one of its tokio workers until they exit. Where ``lsb_release`` is
installed (Debian: a shell script of seven processes; Ubuntu: a Python program) a burst of joins
waits for them: at 20 concurrent connects, p50 292-312 ms against 191-226 ms without it
(docs/livekit.md, "Dispatch latency"). The image has none. The service cannot stop the SDK from
looking it up on ``PATH``, so it says so once at startup.
"""

from __future__ import annotations

import os
import shutil

import structlog

log = structlog.get_logger("agents.transport.sdk_host")


def lsb_release_on_path() -> str | None:
    """The ``lsb_release`` the SDK would run (``None``: none, or one hidden by a bind of
    ``/bin/false`` as ``scripts/without-lsb-release`` does)."""
    found = shutil.which("lsb_release")
    if found is None:
        return None
    try:
        if os.path.samefile(found, "/bin/false"):
            return None
    except OSError:
        pass
    return found


def warn_about_host() -> None:
    """Log ``lsb_release_on_path`` (a warning) when the SDK will run ``lsb_release`` per join."""
    found = lsb_release_on_path()
    if found is not None:
        log.warning("lsb_release_on_path", path=found,
                    detail="the LiveKit SDK runs it on every room connect: joins in a burst "
                           "wait for it; remove lsb-release from the host or run the image")
