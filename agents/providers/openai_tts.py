"""Speech synthesis through an OpenAI-compatible ``/audio/speech`` endpoint, streamed as raw PCM
(``response_format="pcm"``: 24 kHz, 16-bit little-endian, mono) while the server produces it.

HTTP chunks may end in the middle of a sample; the odd byte is carried to the next chunk, so every
yielded array holds whole samples.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import numpy as np
import structlog

from agents.providers._openai_common import OpenAIClientOwner, translated
from agents.providers.base import PCM, TTS, CallPolicy

log = structlog.get_logger("agents.providers.openai_tts")

PCM_SAMPLE_RATE = 24000


class PCMReframer:
    """Turns a byte stream of int16 little-endian samples into arrays of whole samples."""

    def __init__(self) -> None:
        self._carry = b""

    def feed(self, data: bytes) -> PCM | None:
        data = self._carry + data
        whole = len(data) - (len(data) % 2)
        self._carry = data[whole:]
        if whole == 0:
            return None
        return np.frombuffer(data[:whole], dtype="<i2").astype(np.int16, copy=False)

    @property
    def leftover(self) -> int:
        """Bytes still waiting for their other half."""
        return len(self._carry)


class OpenAITTS(OpenAIClientOwner, TTS):
    """Streamed PCM speech from ``/audio/speech``."""

    def __init__(
        self,
        *,
        name: str,
        model: str = "gpt-4o-mini-tts",
        voice: str = "alloy",
        api_key: str,
        base_url: str | None = None,
        policy: CallPolicy | None = None,
    ) -> None:
        super().__init__(name=name, policy=policy)
        self.model = model
        self.voice = voice
        self.base_url = base_url
        self._open_client(api_key=api_key, base_url=base_url)

    @property
    def sample_rate(self) -> int:
        return PCM_SAMPLE_RATE

    async def _synthesize_impl(self, text: str, *, voice: str | None) -> AsyncIterator[PCM]:
        self._check_open("TTS")
        if not text.strip():
            return
        reframer = PCMReframer()
        async with AsyncExitStack() as stack:
            async with translated(provider=self.name, what="synthesis"):
                response = await stack.enter_async_context(
                    self._client.audio.speech.with_streaming_response.create(
                        model=self.model,
                        voice=voice or self.voice,
                        input=text,
                        response_format="pcm",
                    )
                )
            chunks = response.iter_bytes()
            aclose = getattr(chunks, "aclose", None)  # an async generator: close it with us
            if aclose is not None:
                stack.push_async_callback(aclose)
            while True:
                async with translated(provider=self.name, what="synthesis"):
                    try:
                        data = await anext(chunks)
                    except StopAsyncIteration:
                        break
                pcm = reframer.feed(data)
                if pcm is not None:
                    yield pcm
        if reframer.leftover:
            # Harmless for the listener, but the server broke the format: say so.
            log.warning("tts_pcm_odd_length", provider=self.name, leftover=reframer.leftover)
