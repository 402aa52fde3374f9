"""One FFI subscriber for every audio stream of the process, routing each frame to its stream.

The SDK (``livekit`` 1.2) hands every native event to every subscriber whose filter accepts it,
and each ``rtc.AudioStream`` subscribes with a filter that accepts *every* audio stream event:
with N streams in the process each 10 ms frame is queued N times (a thread-safe loop wake-up
each), and N-1 of the streams unpack it only to drop it. The cost of a frame grows with the
number of jobs: N² per 10 ms. :class:`AudioEventRouter` takes a stream's delivery over: one
subscriber whose filter looks the stream up by handle and queues the event for that stream only.

This reads the SDK's private layout (``FfiClient.instance.queue._subscribers`` and ``_lock``,
the stream's ``_ffi_queue``, ``_ffi_handle`` and ``_loop``) here, in one place; when the layout is
not there, :meth:`adopt` says so and the stream keeps the SDK's own delivery.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from livekit import rtc
from livekit.rtc._ffi_client import FfiClient

log = structlog.get_logger("agents.transport.ffi_routing")


class AudioEventRouter:
    """Routes ``audio_stream_event`` s to the streams adopted, by stream handle."""

    def __init__(self) -> None:
        self._routes: dict[int, tuple[Any, asyncio.AbstractEventLoop]] = {}
        self._subscription: Any = None
        self.unsupported = False

    @property
    def streams(self) -> int:
        return len(self._routes)

    def _route(self, event: Any) -> bool:
        """The subscriber's filter, on the SDK's callback thread: queue the event for its
        stream and never for this subscriber's own queue."""
        if event.WhichOneof("message") != "audio_stream_event":
            return False
        target = self._routes.get(event.audio_stream_event.stream_handle)
        if target is not None:
            queue, loop = target
            loop.call_soon_threadsafe(queue.put_nowait, event)
        return False

    def adopt(self, stream: rtc.AudioStream) -> bool:
        """Deliver ``stream``'s events through this router from now on (``False``: the SDK's
        layout is not the one known here; the stream is left as it was)."""
        ffi = getattr(FfiClient.instance, "queue", None)
        subscribers = getattr(ffi, "_subscribers", None)
        lock = getattr(ffi, "_lock", None)
        queue = getattr(stream, "_ffi_queue", None)
        handle = getattr(getattr(stream, "_ffi_handle", None), "handle", None)
        loop = getattr(stream, "_loop", None)
        task = getattr(stream, "_task", None)
        if (ffi is None or not isinstance(subscribers, list) or lock is None or queue is None
                or not isinstance(handle, int) or loop is None or task is None):
            if not self.unsupported:
                self.unsupported = True
                log.warning("audio_event_routing_unsupported")
            return False
        with lock:
            if self._subscription is None:
                self._subscription = ffi.subscribe(loop, filter_fn=self._route)
            self._routes[handle] = (queue, loop)
            # The SDK's own subscription goes; put() holds this lock while it delivers, so no
            # event is delivered twice or lost between the two paths.
            subscribers[:] = [s for s in subscribers if s[0] is not queue]
        # The route stays until the stream's reader ends: its end-of-stream event comes this way.
        task.add_done_callback(lambda _t, h=handle: self._routes.pop(h, None))
        return True

    def close(self) -> None:
        """Drop the subscription once no adopted stream is left (an adopted stream still
        reading needs it for its frames and its end)."""
        if self._routes:
            log.warning("audio_event_router_close_with_streams", streams=len(self._routes))
            return
        sub, self._subscription = self._subscription, None
        if sub is not None:
            FfiClient.instance.queue.unsubscribe(sub)
