"""The agent participant's attributes, set through the SDK's native call with its answer read.

``rtc.LocalParticipant.set_attributes`` (``livekit`` 1.2) waits for the native callback and
drops the error it carries: a server that refuses the update (the token has no
``canUpdateOwnMetadata``) would look like a success. This sends the same request and reads the
callback's ``error``; it also subscribes for that one callback only, where the SDK's call is
handed every native event of the process (each audio frame of every job) while it waits.
"""

from __future__ import annotations

from livekit import rtc
from livekit.rtc._ffi_client import FfiClient
from livekit.rtc._proto import ffi_pb2 as proto_ffi

from agents.transport.base import AttributesRefused, TransportError


async def set_local_attributes(participant: rtc.LocalParticipant,
                               attributes: dict[str, str]) -> None:
    """Merge ``attributes`` into ``participant``'s (an empty value deletes a key). Raises
    :class:`AttributesRefused` when the server refuses (``NotAllowed``), :class:`TransportError`
    with the SDK's reason otherwise."""
    req = proto_ffi.FfiRequest()
    req.set_local_attributes.local_participant_handle = participant._ffi_handle.handle
    for key, value in attributes.items():
        entry = req.set_local_attributes.attributes.add()
        entry.key, entry.value = key, value
    ffi = FfiClient.instance
    queue = ffi.queue.subscribe(
        filter_fn=lambda e: e.WhichOneof("message") == "set_local_attributes")
    try:
        try:
            async_id = ffi.request(req).set_local_attributes.async_id
        except Exception as e:  # the SDK raises a bare Exception with the native error
            raise TransportError(f"set attributes failed: {e}", retryable=True) from e
        event = await queue.wait_for(lambda e: e.set_local_attributes.async_id == async_id)
    finally:
        ffi.queue.unsubscribe(queue)
    error = event.set_local_attributes.error
    if error and "notallowed" in error.lower().replace(" ", ""):  # e.g. no permission
        raise AttributesRefused(f"set attributes failed: {error}")
    if error:
        raise TransportError(f"set attributes failed: {error}", retryable=True)
