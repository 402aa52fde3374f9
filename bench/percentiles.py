"""The benchmarks' percentile: nearest rank, the smallest value with at least ``q`` of the values
at or below it. Of 20 values the 95th percentile is the 19th smallest, not the largest."""

from __future__ import annotations

import math
from collections.abc import Sequence


def nearest_rank(values: Sequence[float], q: float) -> float:
    """The ``q`` (0..1) percentile of ``values``; NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return float(ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1])
