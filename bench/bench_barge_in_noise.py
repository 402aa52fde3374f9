"""Barge-in against noise: how soon speech over the agent pauses it, and how often noise does.

Offline, through what the service's ears do to a caller's audio: 16 kHz 10 ms frames, WebRTC's
noise suppression (``agents.audio_frontend.AudioFrontend``), Silero VAD and the turn detector
(``agents.pipeline.turns.TurnDetector``); after every frame the barge-in rule itself
(``agents.pipeline.bargein.pause_due``) is asked, for the rule without the fast pause (the
baseline: ``barge_in_min_ms`` 200 at ``barge_in_confidence`` 0.7) and for fast settings
(``barge_in_fast_ms`` F at ``barge_in_fast_confidence`` C). Every clip starts after 1 s of room
tone (the suppressor adapts) and is mixed over it.

The corpus, all offline:

- **noises**: the recorded sounds of Debian's ``sound-theme-freedesktop`` (a phone ringing, a
  bell, chimes, a camera shutter, a rattling bin, an alarm...; its spoken channel names are speech
  and go below), and sounds synthesized from a seeded generator: typing, coughs, breathing,
  knocking, a fan, a door slam, claps, music-like chords, a whistle. Each at a near (-20 dBFS
  peak) and a far (-35 dBFS) level.
- **short vocal sounds** that are no bid for the floor ("Hm.", "Mm-hmm.", "Ha ha.", "Ahem."...),
  in the same voices as the speech; counted apart: they are speech to a VAD, and the baseline
  pauses on most of them too (their transcript then decides).
- **speech**: interruptions ("Wait.", "Hold on." ...) in the embedded Piper voice and in three
  espeak-ng voices, and the sound theme's recorded human voice saying channel names; at a
  normal (-26 dBFS RMS) and a quiet (-36 dBFS) level.

Per setting: noise clips that would pause the agent (false pauses: the baseline's count is the
bar), and for speech the time from its onset (the first 10 ms of the clean clip within 30 dB of
its loudest) to the decision, p50 and p95, and clips never decided (misses). A false pause costs
the caller a gap in the agent's speech (it resumes after ``false_interruption_timeout``); the
room adds its own delay to the decision (``bench_voice_to_voice.py``'s barge-in figure).

    python bench/bench_barge_in_noise.py [F/C ...]   # fast settings; default: see DEFAULT_FAST

Then what the words decide, for every clip the default setting pauses on: the utterance it
paused in is recognised by Moonshine, as the service would, and two rules are applied: the one
before ``turn.paused_min_speech_ms`` and ``turn.backchannels`` (a turn from ``min_speech_ms``,
250 ms; any words stop the agent) and today's (a turn from 64 ms; words other than
backchannels stop it). Printed: how many interruptions, short vocal sounds and noises stop the
agent under each, and the clips the two rules disagree on.

Last lines: ``bench_barge_in_noise: fast F/C decides <ratio>x sooner than without (p50 a vs b
ms), pauses on noise x vs y of n, on short vocal sounds ...``, for the fastest setting that
pauses on no more noises and short vocal sounds than the baseline; and ``after the pause,
interruptions that stop the agent a vs b before of n; short vocal sounds ...``. The embedded
voice renders without its random variation (``noise_scale`` 0), so every run hears the same
clips.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from livekit import rtc  # noqa: E402

from agents.audio_frontend import AudioFrontend  # noqa: E402
from agents.pipeline.bargein import pause_due, words_stop  # noqa: E402
from agents.pipeline.config import TurnConfig  # noqa: E402
from agents.pipeline.turns import TurnDetector, TurnEnded  # noqa: E402
from agents.providers.silero_vad import SileroVAD  # noqa: E402

RATE = 16000
FRAME = RATE // 100
SOUNDS = Path("/usr/share/sounds/freedesktop/stereo")
LEAD_S = 1.0
ROOM_TONE_DBFS = -65.0
NOISE_PEAKS_DBFS = (-10.0, -20.0, -35.0)
SPEECH_RMS_DBFS = (-26.0, -36.0)
PHRASES = ["Wait.", "Hold on.", "No, stop.", "Excuse me.", "Sorry, I meant Tuesday.",
           "Actually, cancel that."]
NON_WORDS = ["Hm.", "Mm-hmm.", "Uh-huh.", "Ha ha.", "Ahem.", "Oh."]
"""Short vocal sounds that are not a bid for the floor (backchannels, a laugh, a throat clear)."""
ESPEAK_VOICES = ["en-us", "en-gb", "en-us+f3"]
DEFAULT_FAST = ["64/0.9", "96/0.9", "128/0.9", "64/0.8", "96/0.8", "96/0.7"]

Pcm = npt.NDArray[np.float32]


# -- the corpus ---------------------------------------------------------------------------------

def sox_16k(args: list[str], data: bytes | None = None) -> Pcm:
    """Audio through sox to 16 kHz mono float in [-1, 1], the same every run (``-D``: sox
    would otherwise dither the 16-bit output at random, and a model's score can move with it)."""
    out = subprocess.run(["sox", "-D", *args, "-t", "raw", "-r", str(RATE), "-c", "1", "-e",
                          "signed", "-b", "16", "-"], input=data, capture_output=True,
                         check=True).stdout
    return np.frombuffer(out, np.int16).astype(np.float32) / 32768.0


def synthesized(rng: np.random.Generator) -> dict[str, Pcm]:
    t = (np.arange(int(2.0 * RATE)) / RATE).astype(np.float32)

    def burst(n_ms: float, tau_ms: float, lowpass: int = 1) -> Pcm:
        n = int(n_ms * RATE / 1000)
        x = rng.standard_normal(n).astype(np.float32)
        if lowpass > 1:
            x = np.convolve(x, np.ones(lowpass) / lowpass, mode="same").astype(np.float32)
        return x * np.exp(-np.arange(n) / (tau_ms * RATE / 1000)).astype(np.float32)

    def place(total_s: float, parts: list[tuple[float, Pcm]]) -> Pcm:
        out = np.zeros(int(total_s * RATE), np.float32)
        for at, p in parts:
            i = int(at * RATE)
            out[i:i + p.size] += p[: out.size - i]
        return out

    typing = place(2.0, [(float(a), burst(6, 1.5)) for a in
                         np.cumsum(rng.uniform(0.08, 0.25, 12))])
    cough = place(1.0, [(0.05, burst(250, 60, lowpass=4)), (0.45, burst(220, 50, lowpass=4))])
    pink = np.cumsum(rng.standard_normal(t.size)).astype(np.float32)
    pink -= np.convolve(pink, np.ones(400) / 400, mode="same").astype(np.float32)
    breath = pink[: int(1.6 * RATE)] * np.sin(np.pi * np.arange(int(1.6 * RATE)) /
                                              (0.8 * RATE)).astype(np.float32) ** 2
    knock_one = (np.sin(2 * np.pi * 180 * t[:1600]) + 0.6 * np.sin(2 * np.pi * 420 * t[:1600]))
    knock_one = (knock_one * np.exp(-t[:1600] / 0.03)).astype(np.float32) + burst(100, 3) * 0.5
    knock = place(1.2, [(0.05, knock_one), (0.3, knock_one), (0.55, knock_one)])
    fan = pink * 0.3 + (0.4 * np.sin(2 * np.pi * 100 * t) + 0.2 * np.sin(2 * np.pi * 150 * t))
    slam = place(0.8, [(0.05, burst(500, 120, lowpass=16))])
    claps = place(1.0, [(0.05, burst(40, 8)), (0.5, burst(40, 8))])
    chords = np.zeros(t.size, np.float32)
    for i, root in enumerate((220.0, 262.0, 196.0, 247.0)):
        seg = slice(int(i * 0.5 * RATE), int((i + 1) * 0.5 * RATE))
        for ratio in (1.0, 1.26, 1.5):
            for h in (1, 2, 3):
                chords[seg] += np.sin(2 * np.pi * root * ratio * h * t[seg]) / h
    whistle = np.sin(2 * np.pi * np.cumsum(np.linspace(900, 1600, int(1.2 * RATE))) / RATE)
    return {"typing": typing, "cough": cough, "breathing": breath, "knocking": knock,
            "fan": fan.astype(np.float32), "door slam": slam, "claps": claps,
            "chords": chords, "whistle": whistle.astype(np.float32)}


def recorded_noises() -> dict[str, Pcm]:
    return {p.stem: sox_16k([str(p)]) for p in sorted(SOUNDS.glob("*.oga"))
            if not p.stem.startswith("audio-channel-")}


async def piper(phrases: list[str]) -> tuple[int, list[bytes]]:
    """The embedded Piper voice's rate, and each phrase in it (16-bit PCM)."""
    from agents.providers.piper_tts import PiperTTS

    # the same every run (no variation), whole sentences at full peak as before
    tts = PiperTTS(name="caller-voice", noise_scale=0.0, noise_w_scale=0.0, streaming=False)
    try:
        return tts.sample_rate, [np.concatenate([c async for c in tts.synthesize(text)]).tobytes()
                                 for text in phrases]
    finally:
        await tts.aclose()


def speech_clips(phrases: list[str], *, recorded: bool) -> dict[str, Pcm]:
    rate, rendered = asyncio.run(piper(phrases))
    raw = ["-t", "raw", "-r", str(rate), "-c", "1", "-e", "signed", "-b", "16", "-"]
    clips = {f"piper: {text}": sox_16k(raw, pcm)
             for text, pcm in zip(phrases, rendered, strict=True)}
    for voice in ESPEAK_VOICES:
        for text in phrases:
            wav = subprocess.run(["espeak-ng", "-v", voice, "-s", "165", "--stdout", text],
                                 capture_output=True, check=True).stdout
            clips[f"espeak {voice}: {text}"] = sox_16k(["-t", "wav", "-"], wav)
    for p in sorted(SOUNDS.glob("audio-channel-*.oga")) if recorded else ():
        clips[f"recorded: {p.stem}"] = sox_16k([str(p)])
    return clips


def scaled(pcm: Pcm, *, peak_dbfs: float | None = None, rms_dbfs: float | None = None) -> Pcm:
    if peak_dbfs is not None:
        return pcm * (10 ** (peak_dbfs / 20) / max(float(np.abs(pcm).max()), 1e-9))
    assert rms_dbfs is not None
    frames = pcm[: pcm.size // FRAME * FRAME].reshape(-1, FRAME)
    rms = np.sqrt((frames ** 2).mean(axis=1))
    voiced = rms[rms > rms.max() * 10 ** (-30 / 20)]  # the clip's speech, not its silences
    return pcm * (10 ** (rms_dbfs / 20) / max(float(np.sqrt((voiced ** 2).mean())), 1e-9))


def onset_s(pcm: Pcm) -> float:
    frames = pcm[: pcm.size // FRAME * FRAME].reshape(-1, FRAME)
    rms = np.sqrt((frames ** 2).mean(axis=1))
    return LEAD_S + int(np.argmax(rms >= rms.max() * 10 ** (-30 / 20))) * 0.01


# -- the ears -----------------------------------------------------------------------------------

@dataclass
class Trajectory:
    """After each frame: (end of that frame in s, speech ms, mean voice probability); and each
    utterance that ended: (end in s, speech ms, its audio)."""

    points: list[tuple[float, float, float]] = field(default_factory=list)
    utterances: list[tuple[float, float, npt.NDArray[np.int16]]] = field(default_factory=list)

    def after_pause(self, turn: TurnConfig) -> tuple[float, npt.NDArray[np.int16]] | None:
        """The utterance the rule paused the agent in: (its speech ms, its audio)."""
        at = self.decided(turn)
        if at is None:
            return None
        return next(((ms, pcm) for end, ms, pcm in self.utterances if end >= at), None)

    def decided(self, turn: TurnConfig, *, after: float = 0.0) -> float | None:
        for at, ms, conf in self.points:
            if at > after and pause_due(turn, ms, conf, fast=True):
                return at
        return None


def hear(vad: SileroVAD, clip: Pcm, rng: np.random.Generator) -> Trajectory:
    tone = rng.standard_normal(int(LEAD_S * RATE) + clip.size + RATE // 2).astype(np.float32)
    audio = tone * 10 ** (ROOM_TONE_DBFS / 20)
    audio[int(LEAD_S * RATE): int(LEAD_S * RATE) + clip.size] += clip
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    frontend = AudioFrontend(noise_suppression=True)
    # every utterance kept (min_speech_ms 0): what is a turn is decided after, per rule
    det = TurnDetector(speaker="caller", vad=vad.stream(), config=TurnConfig(min_speech_ms=0))
    out = Trajectory()
    for i in range(pcm.size // FRAME):
        frame = rtc.AudioFrame(pcm[i * FRAME:(i + 1) * FRAME].tobytes(), RATE, 1, FRAME)
        frame = frontend.process("caller", frame)
        for ev in det.push(np.frombuffer(frame.data, np.int16).copy()):
            if isinstance(ev, TurnEnded):
                out.utterances.append(((i + 1) * 0.01, ev.speech_ms, ev.pcm))
        out.points.append(((i + 1) * 0.01, det.speech_ms, det.speech_confidence))
    return out


@dataclass
class Held:
    """What the words over the paused agent decide, for the clips that paused it."""

    stop_before: list[str] = field(default_factory=list)
    """Stopped by the rule before ``paused_min_speech_ms``: a turn from ``min_speech_ms``, any
    words stop."""
    stop_now: list[str] = field(default_factory=list)
    """Stopped by today's rule: a turn from ``paused_min_speech_ms``, words other than
    backchannels stop."""
    paused: int = 0


async def words_decide(
    held: dict[str, list[tuple[str, float, npt.NDArray[np.int16]]]],
) -> dict[str, Held]:
    """Recognise each utterance that paused the agent, by kind of clip (one Moonshine, as the
    service would), and apply both rules."""
    from agents.providers.moonshine_stt import MoonshineSTT

    turn = TurnConfig()
    stt = MoonshineSTT(policy=None)
    out = {kind: Held(paused=len(clips)) for kind, clips in held.items()}
    try:
        for kind, clips in held.items():
            for name, ms, pcm in clips:
                text = (await stt.transcribe(pcm)).text.strip()
                if ms >= turn.min_speech_ms and text:
                    out[kind].stop_before.append(f"{name}: {text!r}")
                if ms >= turn.paused_turn_ms and words_stop(turn, text):
                    out[kind].stop_now.append(f"{name}: {text!r}")
    finally:
        await stt.aclose()
    return out


def paused_on(vad: SileroVAD, rng: np.random.Generator, clips: dict[str, Pcm],
              levels: dict[str, tuple[float, ...]], names: list[str],
              turns: list[TurnConfig], held: list[tuple[str, float, npt.NDArray[np.int16]]],
              ) -> dict[str, list[str]]:
    """Per setting, the clips (at each level: ``scaled``'s one keyword) that pause the agent.
    Those the default setting pauses on go to ``held`` with the utterance it paused in."""
    (key, values), = levels.items()
    out: dict[str, list[str]] = {n: [] for n in names}
    default = TurnConfig()
    for name, clip in clips.items():
        for level in values:
            traj = hear(vad, scaled(clip, **{key: level}), rng)
            for n, turn in zip(names, turns, strict=True):
                if traj.decided(turn) is not None:
                    out[n].append(f"{name} @{level:.0f}")
            utterance = traj.after_pause(default)
            if utterance is not None:
                held.append((f"{name} @{level:.0f}", *utterance))
    return out


def setting(spec: str | None) -> TurnConfig:
    """The barge-in rule with the fast pause ``"ms/confidence"``, or without it (``None``)."""
    if spec is None:
        return TurnConfig(barge_in_fast_ms=0)
    ms, conf = spec.split("/")
    return TurnConfig(barge_in_fast_ms=int(ms), barge_in_fast_confidence=float(conf))


def main(specs: list[str]) -> int:
    missing = [tool for tool in ("sox", "espeak-ng") if shutil.which(tool) is None]
    if missing or not SOUNDS.is_dir():
        print(f"needs sox, espeak-ng and sound-theme-freedesktop ({SOUNDS}): "
              "make bench-sounds (apt-get as root)", file=sys.stderr)
        return 2
    rng = np.random.default_rng(7)
    noises = {**recorded_noises(), **synthesized(rng)}
    speech = speech_clips(PHRASES, recorded=True)
    vocal = speech_clips(NON_WORDS, recorded=False)
    vad = SileroVAD()
    settings: list[str | None] = [None, *specs]
    names = ["fast off" if s is None else f"fast {s}" for s in settings]
    turns = [setting(s) for s in settings]
    held_noise: list[tuple[str, float, npt.NDArray[np.int16]]] = []
    held_vocal: list[tuple[str, float, npt.NDArray[np.int16]]] = []
    held_speech: list[tuple[str, float, npt.NDArray[np.int16]]] = []
    false = paused_on(vad, rng, noises, {"peak_dbfs": NOISE_PEAKS_DBFS}, names, turns,
                      held_noise)
    sounds = paused_on(vad, rng, vocal, {"rms_dbfs": SPEECH_RMS_DBFS}, names, turns, held_vocal)
    delays = {n: [] for n in names}  # type: dict[str, list[float]]
    misses = {n: 0 for n in names}
    for name, clip in speech.items():
        for level in SPEECH_RMS_DBFS:
            loud = scaled(clip, rms_dbfs=level)
            onset = onset_s(loud)
            traj = hear(vad, loud, rng)
            for n, turn in zip(names, turns, strict=True):
                at = traj.decided(turn, after=onset - 0.2)
                if at is None:
                    misses[n] += 1
                else:
                    delays[n].append((at - onset) * 1000)
            utterance = traj.after_pause(TurnConfig())
            if utterance is not None:
                held_speech.append((f"{name} @{level:.0f}", *utterance))
    asyncio.run(vad.aclose())
    decided = asyncio.run(words_decide({"noises": held_noise, "short vocal sounds": held_vocal,
                                        "interruptions": held_speech}))
    n_noise, n_speech = len(noises) * len(NOISE_PEAKS_DBFS), len(speech) * len(SPEECH_RMS_DBFS)
    n_vocal = len(vocal) * len(SPEECH_RMS_DBFS)
    print(f"{n_noise} noise clips ({len(noises)} sounds x {len(NOISE_PEAKS_DBFS)} levels), "
          f"{n_vocal} short vocal sounds, {n_speech} speech clips ({len(speech)} x "
          f"{len(SPEECH_RMS_DBFS)} levels)")
    print(f"{'setting':16s} {'noise pauses':>12s} {'vocal pauses':>12s} {'decided p50':>12s} "
          f"{'p95':>6s} {'misses':>7s}")
    for n in names:
        d = delays[n]
        p50 = statistics.median(d) if d else float("nan")
        p95 = float(np.percentile(d, 95)) if d else float("nan")
        print(f"{n:16s} {len(false[n]):12d} {len(sounds[n]):12d} {p50:10.0f} ms {p95:4.0f} ms "
              f"{misses[n]:7d}")
    for n in names:
        if false[n]:
            print(f"  {n} paused on: {', '.join(false[n])}")
    print("after a pause (default setting), the words decide: clips that stop the agent, by the "
          "rule before paused_min_speech_ms and backchannels (a turn from 250 ms, any words) "
          "and by today's (from 64 ms, words other than backchannels):")
    for kind, d in decided.items():
        print(f"  {kind}: {len(d.stop_before)} before vs {len(d.stop_now)} now, of {d.paused} "
              "that paused it")
        for clip in sorted(set(d.stop_before) ^ set(d.stop_now)):
            print(f"    {'now stops' if clip in d.stop_now else 'now resumes'}: {clip}")
    base = names[0]
    # The fastest setting that pauses on no more noises and vocal sounds than the baseline.
    fair = [n for n in names[1:] if delays[n] and len(false[n]) <= len(false[base])
            and len(sounds[n]) <= len(sounds[base])]
    if not fair or not delays[base]:
        print("bench_barge_in_noise: no fast setting pauses on as few sounds as the baseline")
        return 1
    pick = min(fair, key=lambda n: statistics.median(delays[n]))
    b50, f50 = statistics.median(delays[base]), statistics.median(delays[pick])
    print(f"bench_barge_in_noise: {pick} decides {b50 / f50:.2f}x sooner than without "
          f"(p50 {f50:.0f} vs {b50:.0f} ms), pauses on noise {len(false[pick])} vs "
          f"{len(false[base])} of {n_noise}, on short vocal sounds {len(sounds[pick])} vs "
          f"{len(sounds[base])} of {n_vocal}")
    words = decided["interruptions"]
    vocal_held = decided["short vocal sounds"]
    print(f"bench_barge_in_noise: after the pause, interruptions that stop the agent "
          f"{len(words.stop_now)} vs {len(words.stop_before)} before of {words.paused}; short "
          f"vocal sounds {len(vocal_held.stop_now)} vs {len(vocal_held.stop_before)} of "
          f"{vocal_held.paused}; noises {len(decided['noises'].stop_now)} vs "
          f"{len(decided['noises'].stop_before)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or DEFAULT_FAST))
