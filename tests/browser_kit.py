"""Headless Chromium for the page tests (not a test module): Debian's ``chromium`` driven by
Playwright (``executable_path``; never ``playwright install``), a fresh profile per browser,
fake media devices, and a WAV rendered offline with espeak-ng as the microphone."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

CHROMIUM = Path("/usr/bin/chromium")
WAV_RATE = 48000
REPO = Path(__file__).resolve().parent.parent
SCREENSHOTS = REPO / "docs" / "img"

BASE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
)


def espeak(text: str, workdir: Path) -> np.ndarray:
    """``text`` spoken by espeak-ng, as 48 kHz mono int16."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise RuntimeError("espeak-ng is missing: `make browser` installs it (apt)")
    path = workdir / "espeak.wav"
    subprocess.run([binary, "-v", "en-us", "-s", "140", "-w", str(path), text],
                   check=True, capture_output=True, timeout=30)
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    path.unlink()
    positions = np.arange(0, pcm.size, rate / WAV_RATE)
    return np.interp(positions, np.arange(pcm.size), pcm.astype(np.float32)).astype(np.int16)


def write_microphone_wav(path: Path, script: list[tuple[float, str]]) -> Path:
    """A WAV for ``--use-file-for-fake-audio-capture``: for each ``(silence_s, text)``, that
    much silence, then the text spoken; three seconds of silence at the end."""
    parts: list[np.ndarray] = []
    for silence, text in script:
        parts.append(np.zeros(int(silence * WAV_RATE), np.int16))
        parts.append(espeak(text, path.parent))
    parts.append(np.zeros(3 * WAV_RATE, np.int16))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(WAV_RATE)
        w.writeframes(np.concatenate(parts).tobytes())
    return path


@contextlib.asynccontextmanager
async def chromium(
    profile: Path, *, microphone: Path | None = None, allow_microphone: bool = True
) -> AsyncIterator[Any]:
    """A Playwright browser context on Debian's Chromium with a fresh profile. With
    ``allow_microphone`` the fake microphone plays ``microphone`` once (then silence); without
    it every permission prompt is refused, as a person clicking "Block" would."""
    from playwright.async_api import async_playwright

    if not os.access(CHROMIUM, os.X_OK):
        raise RuntimeError("no /usr/bin/chromium: `make browser` installs it (apt)")
    flags = [*BASE_FLAGS, "--use-fake-device-for-media-stream"]
    if allow_microphone:
        flags.append("--use-fake-ui-for-media-stream")
        if microphone is not None:
            flags.append(f"--use-file-for-fake-audio-capture={microphone}%noloop")
    else:
        flags.append("--deny-permission-prompts")
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=flags,
            viewport={"width": 1280, "height": 900},
            permissions=["microphone"] if allow_microphone else [],
        )
        try:
            yield context
        finally:
            await context.close()
