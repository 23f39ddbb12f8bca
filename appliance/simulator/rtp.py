"""RTP packets for H.264 (RFC 3550, RFC 6184), prepared once and patched per send.

A NAL unit that fits in one packet goes as a single NAL unit packet; a larger one is cut into
FU-A fragments. The last packet of each picture carries the marker bit. A looped stream is
packetised once into ready-to-send interleaved frames (`$`, channel, length, RTP packet, RFC
2326 §10.12); sending a picture then only writes the channel, sequence numbers, timestamp and
SSRC into a copy of its template.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

from appliance.simulator.h264 import AccessUnit

RTP_VERSION_BYTE = 0x80
"""Version 2, no padding, no extension, no CSRC."""
PAYLOAD_TYPE = 96
"""The first dynamic payload type, announced in the SDP as H264/90000."""
CLOCK_RATE = 90_000
MAX_PAYLOAD = 1400
"""RTP payload bytes per packet: fits a 1500-byte Ethernet MTU with IP/UDP/RTP headers, which
clients that re-send our packets over UDP rely on (interleaved TCP itself would allow 64 KiB)."""
FU_A = 28
FU_START = 0x80
FU_END = 0x40
MARKER = 0x80
RTP_HEADER_SIZE = 12
INTERLEAVED_HEADER_SIZE = 4
SEQ_MOD = 1 << 16
TS_MOD = 1 << 32

_SEQ_TS_SSRC = struct.Struct(">HII")


def packetize_nal(nal: bytes, max_payload: int = MAX_PAYLOAD) -> list[bytes]:
    """RTP payloads carrying one NAL unit: itself, or FU-A fragments of it."""
    if len(nal) <= max_payload:
        return [nal]
    indicator = (nal[0] & 0xE0) | FU_A  # F and NRI of the NAL, type FU-A
    kind = nal[0] & 0x1F
    body = memoryview(nal)[1:]
    step = max_payload - 2
    chunks = [body[i : i + step] for i in range(0, len(body), step)]
    payloads = []
    for i, chunk in enumerate(chunks):
        fu_header = kind | (FU_START if i == 0 else 0) | (FU_END if i == len(chunks) - 1 else 0)
        payloads.append(bytes((indicator, fu_header)) + chunk)
    return payloads


def packetize_access_unit(nals: Sequence[bytes], max_payload: int = MAX_PAYLOAD) -> list[bytes]:
    """RTP payloads of one picture, in order; the last one gets the marker bit."""
    return [payload for nal in nals for payload in packetize_nal(nal, max_payload)]


def rtp_header(seq: int, timestamp: int, ssrc: int, marker: bool, payload_type: int = PAYLOAD_TYPE) -> bytes:
    return struct.pack(
        ">BBHII",
        RTP_VERSION_BYTE,
        (MARKER if marker else 0) | payload_type,
        seq % SEQ_MOD,
        timestamp % TS_MOD,
        ssrc,
    )


def interleaved(channel: int, packet: bytes) -> bytes:
    """One RTP or RTCP packet framed for an RTSP connection (RFC 2326 §10.12)."""
    return b"$" + bytes((channel,)) + len(packet).to_bytes(2, "big") + packet


@dataclass(frozen=True)
class PacketizedUnit:
    """A picture as interleaved RTP frames with zeroed channel, sequence, timestamp and SSRC."""

    template: bytes
    offsets: tuple[int, ...]
    """Where each interleaved frame starts in `template`."""
    keyframe: bool

    @classmethod
    def build(cls, unit: AccessUnit, max_payload: int = MAX_PAYLOAD) -> PacketizedUnit:
        payloads = packetize_access_unit(unit.nals, max_payload)
        frames = [
            interleaved(0, rtp_header(0, 0, 0, marker=i == len(payloads) - 1) + payload)
            for i, payload in enumerate(payloads)
        ]
        offsets = tuple(accumulate((len(f) for f in frames[:-1]), initial=0))
        return cls(b"".join(frames), offsets, unit.keyframe)

    def render(self, channel: int, first_seq: int, timestamp: int, ssrc: int) -> bytes:
        """The frames ready to write: packet i gets sequence number first_seq + i (mod 2^16)."""
        buf = bytearray(self.template)
        timestamp %= TS_MOD
        for i, offset in enumerate(self.offsets):
            buf[offset + 1] = channel
            _SEQ_TS_SSRC.pack_into(
                buf, offset + INTERLEAVED_HEADER_SIZE + 2, (first_seq + i) % SEQ_MOD, timestamp, ssrc
            )
        return bytes(buf)


class PacketizedLoop:
    """An encoded loop ready to replay, and the arithmetic of its endless replay.

    Frames are numbered from 0 without wrapping (frame n shows unit n mod len); because the
    packet count of every unit is fixed, the sequence number of any frame's first packet is
    known in advance, which the PLAY response's RTP-Info needs.
    """

    def __init__(self, units: Sequence[AccessUnit], max_payload: int = MAX_PAYLOAD) -> None:
        if not units or not units[0].keyframe:
            raise ValueError("a loop must start with a keyframe")
        self.units = tuple(PacketizedUnit.build(u, max_payload) for u in units)
        self._packets_before = tuple(accumulate((len(u.offsets) for u in self.units), initial=0))
        self.packets_per_loop = self._packets_before[-1]
        self._keyframes = tuple(i for i, u in enumerate(self.units) if u.keyframe)

    def __len__(self) -> int:
        return len(self.units)

    def unit(self, frame: int) -> PacketizedUnit:
        return self.units[frame % len(self.units)]

    def packets_before(self, frame: int) -> int:
        """Packets sent in frames 0 .. frame-1 of the endless replay."""
        loops, index = divmod(frame, len(self.units))
        return loops * self.packets_per_loop + self._packets_before[index]

    def next_keyframe(self, frame: int) -> int:
        """The first frame >= `frame` that is a keyframe."""
        loops, index = divmod(frame, len(self.units))
        for key in self._keyframes:
            if key >= index:
                return loops * len(self.units) + key
        return (loops + 1) * len(self.units) + self._keyframes[0]
