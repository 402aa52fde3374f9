"""Speech recognition through an OpenAI-compatible ``/audio/transcriptions`` endpoint (OpenAI,
or a local server with ``base_url``). The utterance goes up as a 16 kHz mono WAV file."""

from __future__ import annotations

import io
import wave

import numpy as np
import openai

from agents.providers._openai_common import OpenAIClientOwner, translated
from agents.providers.base import PCM, STT, CallPolicy, Transcript
from agents.providers.errors import ProviderError


def pcm_to_wav(pcm: PCM, *, sample_rate: int) -> bytes:
    """A mono 16-bit WAV file holding ``pcm``."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(np.ascontiguousarray(pcm, dtype="<i2").tobytes())
    return buf.getvalue()


def iso639_1(language: str | None) -> str | None:
    """The API wants ISO-639-1 (``en``); configuration speaks BCP-47 (``en-US``)."""
    if not language:
        return None
    return language.replace("_", "-").split("-", 1)[0].lower() or None


class OpenAISTT(OpenAIClientOwner, STT):
    """Buffered transcription: one utterance in, its text out. No interim results."""

    supports_interim = False

    def __init__(
        self,
        *,
        name: str,
        model: str = "gpt-4o-mini-transcribe",
        api_key: str,
        base_url: str | None = None,
        language: str | None = None,
        policy: CallPolicy | None = None,
    ) -> None:
        super().__init__(name=name, policy=policy)
        self.model = model
        self.language = language
        self.base_url = base_url
        self._open_client(api_key=api_key, base_url=base_url)

    async def _transcribe_impl(self, pcm: PCM, *, language: str | None) -> Transcript:
        self._check_open("STT")
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise ProviderError(
                "transcription input must be 1-D int16 PCM at 16 kHz", provider=self.name
            )
        if pcm.size == 0:
            raise ProviderError("no audio to transcribe", provider=self.name)
        wav = pcm_to_wav(pcm, sample_rate=self.sample_rate)
        lang = iso639_1(language or self.language)
        async with translated(provider=self.name, what="transcription"):
            result = await self._client.audio.transcriptions.create(
                model=self.model,
                file=("utterance.wav", wav, "audio/wav"),
                response_format="json",
                language=lang if lang else openai.omit,
            )
        text = getattr(result, "text", None)
        if not isinstance(text, str):
            raise ProviderError(
                "transcription: malformed response (no text field)", provider=self.name
            )
        return Transcript(text=text.strip(), language=lang)
