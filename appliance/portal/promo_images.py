"""Promotion images: what staff upload (a JPEG, PNG or WebP, often a phone photo of a poster)
becomes a small, plain JPEG that guests' phones load quickly.

An upload is recognised by its first bytes (never by its name or declared type); its size in
pixels is read from the header before anything is decoded, so a small file that claims to be
huge cannot take the box's memory; then it is decoded with OpenCV and encoded afresh, which
leaves nothing of the original file (metadata, trailing data, a polyglot's second meaning).
Decoding is blocking: it runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
from pathlib import Path
from typing import Any, Final, Literal, cast

import cv2
import numpy as np
import numpy.typing as npt

ImageKind = Literal["jpeg", "png", "webp"]

MAX_UPLOAD_BYTES: Final = 8 * 1024 * 1024
"""Phone photos are 2–6 MB."""
MAX_PIXELS: Final = 50_000_000
"""A 48 MP phone photo decodes to ~150 MB; larger claims are refused before decoding."""
MAX_SIDE: Final = 1200
"""Output fits in 1200×1200: sharp on a phone, ~100–200 KB."""
JPEG_QUALITY: Final = 82
WHITE: Final = 255.0

_SOF_MARKERS: Final = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_STANDALONE_MARKERS: Final = frozenset({0x01, *range(0xD0, 0xD8)})
_REDUCED_READS: Final = (
    (8, cv2.IMREAD_REDUCED_COLOR_8),
    (4, cv2.IMREAD_REDUCED_COLOR_4),
    (2, cv2.IMREAD_REDUCED_COLOR_2),
)


class ImageRejected(ValueError):
    """The upload cannot be a promotion image; `key` names the message to show."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def sniff(data: bytes) -> ImageKind | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE_MARKERS:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF_MARKERS and i + 9 <= len(data):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def dimensions(data: bytes, kind: ImageKind) -> tuple[int, int] | None:
    """Width and height as the file's header states them, without decoding the picture."""
    if kind == "jpeg":
        return _jpeg_size(data)
    if kind == "png":
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    return _webp_size(data)


def _jpeg_read_flag(width: int, height: int) -> int:
    """Big JPEGs are decoded at 1/2, 1/4 or 1/8 scale (libjpeg does it cheaply) when that still
    leaves at least MAX_SIDE pixels: memory stays small for a 48 MP photo."""
    for factor, flag in _REDUCED_READS:
        if max(width, height) // factor >= MAX_SIDE:
            return flag
    return cv2.IMREAD_COLOR


Image = npt.NDArray[np.uint8]


def _to_bgr(decoded: npt.NDArray[Any]) -> Image:
    """8-bit, three channels, whatever the file had (grey, 16-bit, alpha)."""
    image: Image = (decoded >> 8).astype(np.uint8) if decoded.dtype == np.uint16 else decoded.astype(np.uint8)
    if image.ndim == 2:
        return cast(Image, cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
    if image.shape[2] == 4:
        # Transparent parts of a logo become white, as on the page, not black.
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        colour = image[:, :, :3].astype(np.float32)
        return cast(Image, (colour * alpha + WHITE * (1.0 - alpha)).round().astype(np.uint8))
    return image


def reencode(data: bytes) -> bytes:
    """The upload as a fresh JPEG at most MAX_SIDE on each side; ImageRejected if it is not an image
    we take. Blocking (decoding a photo takes tens of milliseconds)."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImageRejected("promos.error.image_too_big")
    kind = sniff(data)
    if kind is None:
        raise ImageRejected("promos.error.image_type")
    size = dimensions(data, kind)
    if size is None or min(size) < 1:
        raise ImageRejected("promos.error.image_damaged")
    if size[0] * size[1] > MAX_PIXELS:
        raise ImageRejected("promos.error.image_pixels")
    buffer = np.frombuffer(data, np.uint8)
    # JPEG: colour decoding applies the photo's EXIF orientation; others keep their alpha channel.
    flag = _jpeg_read_flag(*size) if kind == "jpeg" else cv2.IMREAD_UNCHANGED
    image = cv2.imdecode(buffer, flag)
    if image is None or image.size == 0:
        raise ImageRejected("promos.error.image_damaged")
    bgr = _to_bgr(image)
    height, width = bgr.shape[:2]
    scale = min(1.0, MAX_SIDE / max(width, height))
    if scale < 1.0:
        new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
        bgr = cast(Image, cv2.resize(bgr, new_size, interpolation=cv2.INTER_AREA))
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ImageRejected("promos.error.image_damaged")
    return bytes(encoded.tobytes())


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class PromoImages:
    """The JPEGs in one folder (<data_dir>/promos), one per promotion: <id>.jpg."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, promo_id: int) -> Path:
        return self.directory / f"{int(promo_id)}.jpg"

    async def prepare(self, upload: bytes) -> bytes:
        """The upload checked and re-encoded (ImageRejected if it is not a picture we take)."""
        return await asyncio.to_thread(reencode, upload)

    async def store(self, promo_id: int, jpeg: bytes) -> str:
        """Store a prepared JPEG as the promotion's image; returns its SHA-256 (hex)."""
        await asyncio.to_thread(_write_atomically, self.path(promo_id), jpeg)
        return hashlib.sha256(jpeg).hexdigest()

    async def delete(self, promo_id: int) -> None:
        await asyncio.to_thread(self.path(promo_id).unlink, missing_ok=True)
