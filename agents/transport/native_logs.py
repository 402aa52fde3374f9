"""Whether the SDK's native log records cross into Python.

``livekit`` 1.2 initialises its native library with ``capture_logs`` on: every record of the
Rust and WebRTC stack, debug ones included, is batched, sent through the FFI callback as
protobuf, parsed in Python while holding the GIL, and then (debug records, nearly all of them)
dropped, the others logged to the ``livekit`` logger. A connect produces about 2,000 of them;
in a burst of connects that is a sizeable share of the process's CPU, spent on the event loop's
interpreter. The native library supports capture off: its records then go to its own logger
(``env_logger``: stderr, filtered by ``RUST_LOG``, errors only when it is unset). The SDK has
no option for it, so :func:`set_native_log_capture` has the library initialise that way when
the SDK first loads it.

It must run before the SDK's first call (its FFI client is a process-wide singleton created on
first use); afterwards it changes nothing and says so. This reads the SDK's private layout
(``livekit.rtc._ffi_client.get_ffi_lib`` and ``FfiClient._instance``) here, in one place; when
the layout is not there it logs that and leaves the SDK as it is.
"""

from __future__ import annotations

import ctypes
from typing import Any

import structlog

log = structlog.get_logger("agents.transport.native_logs")

_captured: bool | None = None
"""Whether the SDK's library captures (or will capture) its records; None: not decided yet."""


def set_native_log_capture(capture: bool) -> bool:
    """Have the SDK's native library initialise with log capture ``capture`` (the SDK's own
    choice is ``True``). Returns whether the choice is in effect: ``False`` when the library
    was already initialised with another choice, or the SDK's layout is not the one known
    here. The first call decides for the process."""
    global _captured
    if _captured is None:
        _captured = capture or not _keep_records_native()
    return _captured == capture


def _keep_records_native() -> bool:
    """Wrap the SDK's library loader so that the library initialises with capture off;
    ``False`` (and a warning) when that is no longer possible or the layout is unknown."""
    from livekit.rtc import _ffi_client

    loader = getattr(_ffi_client, "get_ffi_lib", None)
    client = getattr(_ffi_client, "FfiClient", None)
    if loader is None or client is None or not hasattr(client, "_instance"):
        log.warning("native_log_capture_unsupported")
        return False
    if client._instance is not None:  # already initialised, with the SDK's choice
        log.warning("native_log_capture_too_late")
        return False

    def load_library() -> Any:
        lib = loader()
        initialize = lib.livekit_ffi_initialize
        initialize.argtypes = [_ffi_client.ffi_cb_fnc, ctypes.c_bool, ctypes.c_char_p,
                               ctypes.c_char_p]

        def initialize_without_capture(callback: Any, _capture: bool, sdk: bytes,
                                       version: bytes) -> Any:
            return initialize(callback, False, sdk, version)

        # The SDK sets argtypes on what it finds here; the real function's are set above.
        lib.livekit_ffi_initialize = initialize_without_capture
        return lib

    _ffi_client.get_ffi_lib = load_library
    return True
