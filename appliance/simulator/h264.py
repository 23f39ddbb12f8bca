"""The few facts about H.264 byte streams the simulator needs: NAL units out of Annex B."""

from __future__ import annotations

from dataclasses import dataclass

NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8


@dataclass(frozen=True)
class AccessUnit:
    """One encoded picture: its NAL units (no start codes) and whether it starts a GOP."""

    nals: tuple[bytes, ...]
    keyframe: bool


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream, without their 3- or 4-byte start codes.

    Emulation prevention guarantees that 00 00 01 never occurs inside a NAL unit, so the
    start codes alone delimit them. Zero bytes before a start code are padding of the byte
    stream (or the first byte of a 4-byte start code), not part of the NAL unit: a NAL unit
    ends with its stop bit, so its last byte is never zero.
    """
    starts = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        starts.append(i + 3)
        i = data.find(b"\x00\x00\x01", i + 3)
    nals = []
    for n, begin in enumerate(starts):
        end = starts[n + 1] - 3 if n + 1 < len(starts) else len(data)
        nal = data[begin:end].rstrip(b"\x00")
        if nal:
            nals.append(nal)
    return nals


def join_annexb(nals: list[bytes]) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + nal for nal in nals)


def profile_level_id(sps: bytes) -> str:
    """The SDP `profile-level-id`: profile_idc, constraint flags and level_idc of an SPS, in hex."""
    if len(sps) < 4 or nal_type(sps) != NAL_SPS:
        raise ValueError("not a sequence parameter set")
    return sps[1:4].hex().upper()
