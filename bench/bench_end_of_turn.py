"""Smart Turn's looks at a pause: how soon complete utterances end, how often unfinished ones do.

Offline, through the model the service runs (``agents.providers.smart_turn.SmartTurn``, the
bundled Smart Turn v3.2) on clips that end in room tone, as the turn detector hands them over at
each look. A *look* is a silence after the end of speech at which the model is asked
(``turn.pause_ms``, then each of ``turn.recheck_ms``; :attr:`TurnConfig.looks_ms`); the first
look that scores ``end_threshold`` or more ends the turn, and a turn no look ends waits
``max_silence_ms``.

The corpus, all offline, in the embedded Piper voice (without its random variation, so every run
hears the same clips) and three espeak-ng voices:

- **complete** utterances: whole sentences, and unfinished ones finished after a 0.7 s pause
  ("Um, ... I think my account is locked."), as ``bench_voice_to_voice.py``'s caller says them;
- **unfinished** fragments ("My phone number is", "I would like to, um,"): a look that ends one
  of these cuts the speaker off, if they go on after a pause that long.

Each clip is heard after three random draws of faint room tone (the model's score moves even
with that, so a single draw makes the figures partly luck), and counted once per draw.

Per setting: complete utterances ended by a look and the silence they waited (mean, p90), and
unfinished fragments ended: before ``silence_ms`` (where the silence detector would still wait)
and at all. Baseline in the same run: one look at ``pause_ms`` (``recheck_ms: []``).

The service asks the model ``look_ahead_ms`` before each look, on the silence heard so far
repeated to the look's length (``agents.pipeline.turns.extend_silence``), so that its answer is
ready when the look comes. The default looks are also scored that way (``asked N ms ahead``),
and their decisions compared with the model's on the real silence: how many agree.

    python bench/bench_end_of_turn.py [LOOKS ...]   # e.g. 200,400,800; default: the default

Last lines: ``bench_end_of_turn: looks at A ms end x of n complete utterances vs y with one look
(mean silence waited a vs b ms, <ratio>x), unfinished fragments ended x vs y of m`` and
``bench_end_of_turn: asked N ms ahead, ...: d of D decisions as on the real silence``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_barge_in_noise import scaled, speech_clips  # noqa: E402
from bench_voice_to_voice import GAP_S  # noqa: E402
from bench_voice_to_voice import PAUSED as CALLER_PAUSED  # noqa: E402
from percentiles import nearest_rank  # noqa: E402

from agents.pipeline.config import TurnConfig  # noqa: E402
from agents.pipeline.turns import extend_silence  # noqa: E402

SENTENCES = [
    "I would like to book a table for two people tonight.", "My name is Ada Lovelace.",
    "Can you tell me what time you open tomorrow morning?",
    "The order number is four five six seven.", "Yes, that is correct.", "Thank you, goodbye.",
    "Please send it to my office address.", "I forgot my password and cannot log in.",
    "Could you repeat that more slowly, please?",
    "My internet connection drops every few minutes.",
]
PAUSED = [  # (unfinished, its end after the pause): bench_voice_to_voice's, and three more
    *CALLER_PAUSED,
    ("I was wondering if", "you could call me back."),
    ("Can you tell me about the", "opening hours?"),
    ("The order number is four five", "six seven."),
]
UNFINISHED = [first for first, _ in PAUSED] + ["and then I went to the", "My name is"]
RATE = 16000
TONE_MS = 2000
"""Room tone drawn after each clip, of which each look hears its silence's worth."""
DRAWS = 3
"""Random draws of that tone: the model's score moves even with a tone this faint (3 of 32768),
so one draw alone would make the figures a matter of luck."""


@dataclass
class Clip:
    name: str
    complete: bool
    pcm: np.ndarray  # int16, speech only


@dataclass
class Outcome:
    looks: tuple[int, ...]
    waits: list[int]  # complete: silence (ms) until a look ended it, or max_silence_ms
    unfinished: list[int]  # unfinished: the same
    ahead: int = 0  # asked this much before each look, on the silence so far extended
    verdicts: list[bool] = field(default_factory=list)  # each look's judgement, in order


Heard = tuple[int, int]
"""``(silence heard, silence the model is given)`` in ms: equal, or the first extended."""


def corpus() -> list[Clip]:
    ends = [end for _, end in PAUSED]
    clips = speech_clips(SENTENCES + UNFINISHED + ends, recorded=False)
    voices = sorted({name.split(": ", 1)[0] for name in clips})

    def pcm(voice: str, text: str) -> np.ndarray:
        x = scaled(clips[f"{voice}: {text}"], rms_dbfs=-26.0)
        return np.clip(x * 32767, -32768, 32767).astype(np.int16)

    out: list[Clip] = []
    gap = np.zeros(int(GAP_S * RATE), np.int16)
    for voice in voices:
        out += [Clip(f"{voice}: {t}", True, pcm(voice, t)) for t in SENTENCES]
        out += [Clip(f"{voice}: {a} ... {b}", True,
                     np.concatenate([pcm(voice, a), gap, pcm(voice, b)])) for a, b in PAUSED]
        out += [Clip(f"{voice}: {t}", False, pcm(voice, t)) for t in UNFINISHED]
    return out


async def scores(clips: list[Clip], heard: list[Heard], draw: int) -> list[dict[Heard, float]]:
    """Each clip's completion probability with each silence (ms of room tone) after it, the
    tone of random draw ``draw``; ``(h, ms)``: ``h`` ms heard, extended to ``ms``."""
    from agents.providers.smart_turn import SmartTurn

    model = SmartTurn()
    rng = np.random.default_rng(draw)
    try:
        out = []
        for clip in clips:
            # the same tone per clip whatever the looks asked
            tone = rng.normal(0.0, 3.0, TONE_MS * RATE // 1000).astype(np.int16)
            out.append({(h, ms): await model.completion(extend_silence(
                np.concatenate([clip.pcm, tone[: h * RATE // 1000]]), h, ms)) for h, ms in heard})
        return out
    finally:
        await model.aclose()


def decide(cfg: TurnConfig, looks: tuple[int, ...], clips: list[Clip],
           draws: list[list[dict[Heard, float]]], asks: tuple[int, ...] | None = None) -> Outcome:
    """The outcome of asking the model about ``looks``, at the silences ``asks`` (default: at
    the looks themselves)."""
    ahead = looks[0] - asks[0] if asks else 0
    out = Outcome(looks=looks, waits=[], unfinished=[], ahead=ahead)
    keys: list[Heard] = list(zip(asks or looks, looks, strict=True))
    for scored in draws:
        for clip, by_silence in zip(clips, scored, strict=True):
            verdicts = [by_silence[k] >= cfg.end_threshold for k in keys]
            out.verdicts += verdicts
            ended = next((ms for ms, done in zip(looks, verdicts, strict=True) if done),
                         cfg.max_silence_ms)
            (out.waits if clip.complete else out.unfinished).append(ended)
    return out


def report(o: Outcome, cfg: TurnConfig) -> None:
    waits, top = sorted(o.waits), cfg.max_silence_ms
    ahead = f" asked {o.ahead} ms ahead" if o.ahead else ""
    print(f"looks at {', '.join(map(str, o.looks))} ms{ahead}: complete utterances ended by a look "
          f"{sum(w < top for w in waits)} of {len(waits)}, silence waited mean "
          f"{statistics.mean(waits):.0f} ms, p90 {nearest_rank(waits, 0.9):.0f} ms; unfinished "
          f"fragments ended before silence_ms ({cfg.silence_ms}) "
          f"{sum(w < cfg.silence_ms for w in o.unfinished)}, at all "
          f"{sum(w < top for w in o.unfinished)} of {len(o.unfinished)}")


def main(specs: list[str]) -> int:
    cfg = TurnConfig(detector="smart-turn")
    settings = [(cfg.pause_ms,), cfg.looks_ms]
    settings += [tuple(int(ms) for ms in spec.split(",")) for spec in specs]
    for looks in settings[2:]:  # checked as the service would check them
        TurnConfig(detector="smart-turn", pause_ms=looks[0], recheck_ms=list(looks[1:]))
        if looks[-1] > TONE_MS:
            raise SystemExit(f"looks up to {TONE_MS} ms: {looks}")
    clips = corpus()
    heard = sorted({(ms, ms) for looks in settings for ms in looks}
                   | set(zip(cfg.asks_ms, cfg.looks_ms, strict=True)))  # as the service asks
    draws = [asyncio.run(scores(clips, heard, draw)) for draw in range(DRAWS)]
    outcomes = [decide(cfg, looks, clips, draws) for looks in settings]
    early = decide(cfg, cfg.looks_ms, clips, draws, asks=cfg.asks_ms)
    print(f"{sum(c.complete for c in clips)} complete utterances, "
          f"{sum(not c.complete for c in clips)} unfinished fragments, 4 voices, each after "
          f"{DRAWS} draws of room tone (counted once per draw); end_threshold "
          f"{cfg.end_threshold}, max_silence_ms {cfg.max_silence_ms}")
    for o in [*outcomes, early]:
        report(o, cfg)
    base, best = outcomes[0], outcomes[1]
    top = cfg.max_silence_ms
    print(f"bench_end_of_turn: looks at {', '.join(map(str, best.looks))} ms end "
          f"{sum(w < top for w in best.waits)} of {len(best.waits)} complete utterances vs "
          f"{sum(w < top for w in base.waits)} with one look (mean silence waited "
          f"{statistics.mean(best.waits):.0f} vs {statistics.mean(base.waits):.0f} ms, "
          f"{statistics.mean(best.waits) / statistics.mean(base.waits):.2f}x), unfinished "
          f"fragments ended {sum(w < top for w in best.unfinished)} vs "
          f"{sum(w < top for w in base.unfinished)} of {len(base.unfinished)}")
    same = sum(a == b for a, b in zip(best.verdicts, early.verdicts, strict=True))
    print(f"bench_end_of_turn: asked {early.ahead} ms ahead (the silence heard so far "
          f"repeated to the look's), looks at {', '.join(map(str, early.looks))} ms end "
          f"{sum(w < top for w in early.waits)} vs {sum(w < top for w in best.waits)} of "
          f"{len(best.waits)} complete utterances, unfinished fragments "
          f"{sum(w < top for w in early.unfinished)} vs {sum(w < top for w in best.unfinished)}"
          f" of {len(best.unfinished)}: {same} of {len(best.verdicts)} decisions as on the "
          f"real silence")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
