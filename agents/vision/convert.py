"""One video frame in, one small RGB image and its JPEG out.

The common WebRTC layouts (I420, NV12, the packed RGB family) are read straight from the
frame's buffer with numpy and converted with OpenCV; anything else is first converted to I420
by ``rtc.VideoFrame.convert``. Shrinking halves the image with area averaging while it is at
least twice the target, then finishes with one area resize: the same result as a single
``INTER_AREA`` resize for a fraction of its cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import cv2
import numpy as np
import numpy.typing as npt
from livekit import rtc

RGB = npt.NDArray[np.uint8]
"""An ``(height, width, 3)`` uint8 RGB image."""

_VBT = rtc.VideoBufferType
_PACKED4 = {
    _VBT.RGBA: (0, 1, 2),
    _VBT.BGRA: (2, 1, 0),
    _VBT.ARGB: (1, 2, 3),
    _VBT.ABGR: (3, 2, 1),
}


def _u8(image: Any) -> RGB:
    return cast(RGB, image)


class FrameError(ValueError):
    """A video frame that cannot be read (wrong size, unknown layout). Not retryable: the same
    frame fails again; the sampler drops it and takes the next one."""

    retryable = False


@dataclass(frozen=True, slots=True)
class Encoded:
    rgb: RGB
    jpeg: bytes


def target_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """``(width, height)`` with the longest side at most ``max_side``, aspect kept."""
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    scale = max_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def shrink(rgb: RGB, max_side: int) -> RGB:
    """Resize so the longest side is at most ``max_side`` (area averaging, never enlarges)."""
    h, w = rgb.shape[:2]
    tw, th = target_size(w, h, max_side)
    while w >= 2 * tw and h >= 2 * th:
        w, h = w // 2, h // 2
        rgb = _u8(cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA))
    if (w, h) != (tw, th):
        rgb = _u8(cv2.resize(rgb, (tw, th), interpolation=cv2.INTER_AREA))
    return np.ascontiguousarray(rgb)


def _buffer(frame: rtc.VideoFrame, expected: int) -> npt.NDArray[np.uint8]:
    buf = np.frombuffer(frame.data, dtype=np.uint8)
    if buf.size < expected:
        raise FrameError(
            f"{frame.width}x{frame.height} frame has {buf.size} bytes, expected {expected}"
        )
    return buf[:expected]


def to_rgb(frame: rtc.VideoFrame) -> RGB:
    """The frame as a full-size RGB image."""
    w, h = frame.width, frame.height
    if w <= 0 or h <= 0:
        raise FrameError(f"empty frame {w}x{h}")
    kind = frame.type
    even = w % 2 == 0 and h % 2 == 0
    if kind in _PACKED4:
        buf = _buffer(frame, w * h * 4).reshape(h, w, 4)
        return buf[:, :, list(_PACKED4[kind])]
    if kind == _VBT.RGB24:
        return _buffer(frame, w * h * 3).reshape(h, w, 3)
    if kind == _VBT.I420 and even:
        yuv = _buffer(frame, w * h * 3 // 2).reshape(h * 3 // 2, w)
        return _u8(cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420))
    if kind == _VBT.NV12 and even:
        yuv = _buffer(frame, w * h * 3 // 2).reshape(h * 3 // 2, w)
        return _u8(cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_NV12))
    if kind == _VBT.I420A:
        # Y, U, V planes come first, the alpha plane last: the prefix is an I420 frame.
        chroma = 2 * ((w + 1) // 2) * ((h + 1) // 2)
        plain = _buffer(frame, _plane_length(frame))[: w * h + chroma]
        return to_rgb(rtc.VideoFrame(w, h, _VBT.I420, plain.tobytes()))
    if kind == _VBT.I010:
        # 10-bit samples in 16-bit words; the SDK's converter aborts the process on I010.
        words = _buffer(frame, _plane_length(frame)).view("<u2")
        return to_rgb(rtc.VideoFrame(w, h, _VBT.I420, (words >> 2).astype(np.uint8).tobytes()))
    if kind in (_VBT.I420, _VBT.NV12, _VBT.I422, _VBT.I444):
        # Odd sizes and the rarer planar layouts: let the SDK (libyuv) produce packed pixels.
        _buffer(frame, _plane_length(frame))
        try:
            converted = frame.convert(_VBT.ARGB if kind == _VBT.I420 else _VBT.RGBA)
        except Exception as e:  # the SDK raises a bare Exception for unsupported conversions
            raise FrameError(f"cannot convert {rtc.VideoBufferType.Name(kind)}: {e}") from e
        return to_rgb(converted)
    raise FrameError(f"unsupported video buffer type {kind}")


def _plane_length(frame: rtc.VideoFrame) -> int:
    w, h = frame.width, frame.height
    cw, ch = (w + 1) // 2, (h + 1) // 2
    return {
        _VBT.I420: w * h + 2 * cw * ch,
        _VBT.NV12: w * h + 2 * cw * ch,
        _VBT.I420A: 2 * w * h + 2 * cw * ch,
        _VBT.I422: w * h + 2 * cw * h,
        _VBT.I444: 3 * w * h,
        _VBT.I010: 2 * w * h + 4 * cw * ch,
    }[frame.type]


def encode(frame: rtc.VideoFrame, *, max_side: int, jpeg_quality: int) -> Encoded:
    """Convert once: frame → RGB → shrunk → JPEG. Raises :class:`FrameError`."""
    try:
        rgb = shrink(to_rgb(frame), max_side)
    except cv2.error as e:
        raise FrameError(f"conversion failed: {e}") from e
    ok, jpeg = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
    )
    if not ok:
        raise FrameError("JPEG encoding failed")
    return Encoded(rgb=rgb, jpeg=jpeg.tobytes())


def decode_jpeg(jpeg: bytes) -> RGB:
    """JPEG (or PNG) bytes to an RGB image. Raises :class:`FrameError` for undecodable bytes."""
    bgr = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FrameError("image bytes cannot be decoded")
    return _u8(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
