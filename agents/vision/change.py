"""A cheap image difference: grayscale thumbnails compared by mean absolute difference.

A thumbnail is 64 pixels on its longest side, so comparing two costs microseconds and keeps
sensor noise and compression artefacts mostly averaged away.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from agents.vision.convert import RGB, target_size

Thumb = npt.NDArray[np.uint8]
THUMB_SIDE = 64


def thumbnail(rgb: RGB) -> Thumb:
    """A small grayscale version of ``rgb`` for :func:`difference`."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    tw, th = target_size(w, h, THUMB_SIDE)
    if (tw, th) != (w, h):
        gray = cv2.resize(gray, (tw, th), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(gray)


def difference(a: Thumb, b: Thumb | None) -> float:
    """How different two thumbnails are, 0 (identical) to 1 (black against white). Different
    shapes (a new aspect ratio) and a missing reference count as completely different."""
    if b is None or a.shape != b.shape:
        return 1.0
    return float(np.mean(cv2.absdiff(a, b))) / 255.0


def changed(a: Thumb, b: Thumb | None, threshold: float) -> bool:
    return difference(a, b) >= threshold
