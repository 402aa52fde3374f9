"""Runaway decodes: a speech model that loops ("The low my my my my my my") instead of ending.

Greedy decoders such as Moonshine's sometimes fall into a loop on audio they cannot read (a cut
word at the end of a growing interim utterance, noise), repeat one token or a short phrase until
their token budget runs out, and report ``stop == "max_tokens"``. :func:`trim_runaway` finds such
a loop at the end of the tokens and cuts it off; the engine marks the transcript ``degenerate``,
so interim transcripts are not published at all and finals keep only what came before the loop.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_PERIOD = 6
"""Longest repeated phrase looked for, in tokens."""
MIN_REPEATS = {1: 4, 2: 3}
"""How many back-to-back copies make a loop, by phrase length (3 for longer phrases)."""


def trailing_loop(tokens: Sequence[object]) -> tuple[int, int] | None:
    """``(start, period)`` of the longest run of one phrase repeated at the end of ``tokens``,
    when it repeats at least :data:`MIN_REPEATS` times; else None."""
    best: tuple[int, int] | None = None
    n = len(tokens)
    for period in range(1, MAX_PERIOD + 1):
        need = MIN_REPEATS.get(period, 3)
        if n < period * need:
            continue
        start = n - period
        while start - period >= 0 and list(tokens[start - period : start]) == list(
            tokens[start : start + period]
        ):
            start -= period
        # the budget may run out mid-phrase: the loop then really starts up to period - 1
        # tokens earlier (the same phrase, rotated)
        while start > 0 and tokens[start - 1] == tokens[start - 1 + period]:
            start -= 1
        copies = (n - start) // period
        if copies >= need and (best is None or start < best[0]):
            best = (start, period)
    return best


def trim_runaway(tokens: Sequence[int], *, hit_budget: bool) -> tuple[list[int], bool]:
    """The tokens without a trailing loop (one copy of the phrase is kept), and whether the
    decode ran away: a loop was found, or the budget ran out (``hit_budget``)."""
    loop = trailing_loop(tokens)
    if loop is None:
        return list(tokens), hit_budget
    start, period = loop
    return list(tokens[: start + period]), True
