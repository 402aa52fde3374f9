"""What the embedded vision provider can honestly say about an image: brightness, contrast,
dominant colours with names, sharpness, and how much it changed from the previous image.
Pure numpy/OpenCV, a few milliseconds on a 512-pixel image."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from agents.vision.change import Thumb, difference, thumbnail
from agents.vision.convert import RGB

# Hue names on OpenCV's 0..180 hue scale (degrees / 2), upper bound exclusive.
_HUES: tuple[tuple[int, str], ...] = (
    (8, "red"), (20, "orange"), (34, "yellow"), (80, "green"), (100, "cyan"),
    (130, "blue"), (150, "purple"), (170, "pink"), (181, "red"),
)


@dataclass(frozen=True, kw_only=True, slots=True)
class ImageStats:
    width: int
    height: int
    brightness: float
    """Mean luma, 0 (black) to 1 (white)."""
    contrast: float
    """Standard deviation of luma, 0 to 0.5."""
    sharpness: float
    """Variance of the Laplacian of the luma (higher is sharper)."""
    colours: tuple[tuple[str, float], ...]
    """Named colours covering at least 8% of the image, largest share first."""
    motion: float | None
    """Difference from the previous image of the same source (0..1); ``None`` for the first."""
    thumb: Thumb


def colour_names(rgb: RGB) -> tuple[tuple[str, float], ...]:
    """Share of the image per colour name (black, white, grey, brown and the hues)."""
    small = cv2.resize(rgb, (48, 48), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV).reshape(-1, 3).astype(np.int32)
    h, s, v = hsv[:, 0], hsv[:, 1], hsv[:, 2]
    names = np.empty(h.shape, dtype=object)
    lower = 0
    for upper, name in _HUES:
        names[(h >= lower) & (h < upper)] = name
        lower = upper
    brownish = (names == "orange") | (names == "red") | (names == "yellow")
    names[brownish & (v < 150) & (s > 80)] = "brown"
    grey = s < 45
    names[grey & (v >= 200)] = "white"
    names[grey & (v < 200) & (v >= 60)] = "grey"
    names[v < 45] = "black"
    labels, counts = np.unique(names.astype(str), return_counts=True)
    shares = sorted(
        ((str(n), float(c) / names.size) for n, c in zip(labels, counts, strict=True)),
        key=lambda x: -x[1],
    )
    return tuple((n, round(share, 3)) for n, share in shares if share >= 0.08)


def analyse(rgb: RGB, previous: Thumb | None = None) -> ImageStats:
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    luma = gray.astype(np.float32) / 255.0
    thumb = thumbnail(rgb)
    return ImageStats(
        width=rgb.shape[1], height=rgb.shape[0],
        brightness=float(luma.mean()), contrast=float(luma.std()),
        sharpness=float(cv2.Laplacian(gray, cv2.CV_64F).var()),
        colours=colour_names(rgb),
        motion=None if previous is None else difference(thumb, previous),
        thumb=thumb,
    )


def brightness_words(b: float) -> str:
    if b < 0.15:
        return "very dark"
    if b < 0.35:
        return "dim"
    if b < 0.65:
        return "moderately bright"
    if b < 0.85:
        return "bright"
    return "very bright"


def colour_words(colours: tuple[tuple[str, float], ...]) -> str:
    names = [n for n, _ in colours[:3]]
    if not names:
        return "a mix of many colours"
    if len(names) == 1:
        return f"mostly {names[0]}"
    return "mostly " + ", ".join(names[:-1]) + f" and {names[-1]}"


def detail_words(stats: ImageStats) -> str:
    if stats.contrast < 0.03:
        return "almost uniform, with no visible detail"
    if stats.sharpness < 30:
        return "blurry or out of focus"
    if stats.sharpness < 200:
        return "soft but readable"
    return "sharp"


def motion_words(motion: float | None) -> str | None:
    if motion is None:
        return None
    if motion < 0.02:
        return "It looks the same as the previous image."
    if motion < 0.08:
        return "It changed a little since the previous image."
    if motion < 0.2:
        return "It changed noticeably since the previous image."
    return "It changed a lot since the previous image."
