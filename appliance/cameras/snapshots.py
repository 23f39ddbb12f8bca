"""JPEG snapshot and thumbnail of an event's peak frame, for the events table and the alerts.

Blocking (OpenCV): callers run these in a worker thread. Frames come as numpy arrays in one of
PyAV's layouts (`frame.to_ndarray()`): "bgr24" (H×W×3), "yuv420p" (planar I420, (H·3/2)×W, what a
decoder gives without a colour conversion) or "gray" (H×W, a luma plane).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Literal, cast

import cv2
import numpy as np
import numpy.typing as npt

from appliance.cameras.motion import Box

PixelFormat = Literal["bgr24", "yuv420p", "gray"]
Frame = npt.NDArray[np.uint8]
AnyFrame = npt.NDArray[Any]
"""What callers hand in (PyAV's `to_ndarray` is typed loosely); 8-bit samples are checked at run time."""

SNAPSHOT_QUALITY: Final = 80
SNAPSHOT_MAX_WIDTH: Final = 1280
"""Larger frames (a 4K main stream) are scaled down: the snapshot is stored in the event's row and
sent in alerts, where 1280 px shows a face well and keeps it to tens of KB (a 4K JPEG is MBs)."""
THUMBNAIL_WIDTH: Final = 320
THUMBNAIL_QUALITY: Final = 70
BOX_COLOUR_BGR: Final = (0, 0, 255)
BOX_THICKNESS_FRACTION: Final = 1 / 240
"""Line width relative to the image height (3 px at 720p, 2 px at 360p), so boxes look alike at
any size and survive JPEG's halved colour resolution."""


def to_bgr(frame: AnyFrame, pixel_format: PixelFormat = "bgr24") -> Frame:
    """The frame as an H×W×3 BGR image (a new array when a conversion is needed)."""
    if frame.dtype != np.uint8:
        raise ValueError(f"frames must have 8-bit samples (uint8), got {frame.dtype}")
    if pixel_format == "bgr24":
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"a bgr24 frame is H×W×3, got shape {frame.shape}")
        return cast(Frame, frame)
    if frame.ndim != 2:
        raise ValueError(f"a {pixel_format} frame is a 2-D array, got shape {frame.shape}")
    if pixel_format == "gray":
        return cast(Frame, cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    if frame.shape[0] % 3 or frame.shape[1] % 2:
        raise ValueError(f"a yuv420p frame has 3/2 × the picture's (even) height in rows, got shape {frame.shape}")
    return cast(Frame, cv2.cvtColor(frame, cv2.COLOR_YUV2BGR_I420))


def _fit_width(image: Frame, width: int) -> Frame:
    h, w = image.shape[:2]
    if w <= width:
        return image
    # Even height: some decoders and players reject odd sizes; INTER_AREA averages, no aliasing.
    height = max(2, round(h * width / w / 2) * 2)
    return cast(Frame, cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))


def _draw_boxes(image: Frame, boxes: Sequence[Box]) -> Frame:
    out = image.copy()
    h, w = out.shape[:2]
    thickness = max(1, round(h * BOX_THICKNESS_FRACTION))
    for box in boxes:
        top_left = (round(np.clip(box.x0, 0, 1) * (w - 1)), round(np.clip(box.y0, 0, 1) * (h - 1)))
        bottom_right = (round(np.clip(box.x1, 0, 1) * (w - 1)), round(np.clip(box.y1, 0, 1) * (h - 1)))
        cv2.rectangle(out, top_left, bottom_right, BOX_COLOUR_BGR, thickness)
    return out


def _encode(image: Frame, quality: int) -> bytes:
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be 1..100, got {quality}")
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} image as JPEG")
    return bytes(data)


def jpeg_snapshot(
    frame: AnyFrame,
    quality: int = SNAPSHOT_QUALITY,
    *,
    pixel_format: PixelFormat = "bgr24",
    boxes: Sequence[Box] = (),
    max_width: int = SNAPSHOT_MAX_WIDTH,
) -> bytes:
    """The frame as a JPEG, at most `max_width` wide, with `boxes` (frame fractions) drawn on it."""
    image = _fit_width(to_bgr(frame, pixel_format), max_width)
    if boxes:
        image = _draw_boxes(image, boxes)
    return _encode(image, quality)


def thumbnail(
    frame: AnyFrame,
    width: int = THUMBNAIL_WIDTH,
    quality: int = THUMBNAIL_QUALITY,
    *,
    pixel_format: PixelFormat = "bgr24",
) -> bytes:
    """A small JPEG for lists and timelines, `width` px wide (never enlarged); no boxes: at this
    size they would hide what they point at."""
    return _encode(_fit_width(to_bgr(frame, pixel_format), width), quality)
