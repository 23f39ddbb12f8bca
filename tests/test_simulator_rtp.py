"""H.264 Annex B splitting and RTP packetisation (RFC 6184) of the camera simulator."""

from __future__ import annotations

import random
import struct

import pytest

from appliance.simulator import h264
from appliance.simulator.h264 import AccessUnit
from appliance.simulator.rtp import (
    FU_A,
    MAX_PAYLOAD,
    PAYLOAD_TYPE,
    PacketizedLoop,
    PacketizedUnit,
    packetize_access_unit,
    packetize_nal,
)
from appliance.simulator.stream import LiveStream

SPS = bytes.fromhex("674d401fda014016e8400000030040000007a3c60ca8")
PPS = bytes.fromhex("68ef0fc8")


def _nal(kind: int, size: int, nri: int = 3, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    return bytes([(nri << 5) | kind]) + bytes(rng.randrange(1, 256) for _ in range(size - 1))


def depacketize(payloads: list[bytes]) -> list[bytes]:
    """An independent reading of RFC 6184 §5.6/§5.8 to check the packetiser against."""
    nals: list[bytes] = []
    partial: bytearray | None = None
    for p in payloads:
        kind = p[0] & 0x1F
        if 1 <= kind <= 23:
            assert partial is None, "single NAL packet inside an unfinished FU-A"
            nals.append(p)
        elif kind == FU_A:
            start, end, inner = p[1] & 0x80, p[1] & 0x40, p[1] & 0x1F
            if start:
                assert partial is None
                partial = bytearray([(p[0] & 0xE0) | inner])
            assert partial is not None, "FU-A continuation without a start"
            partial += p[2:]
            if end:
                nals.append(bytes(partial))
                partial = None
        else:
            raise AssertionError(f"unexpected packet type {kind}")
    assert partial is None, "FU-A never ended"
    return nals


def parse_frames(data: bytes) -> list[tuple[int, int, int, int, int, bool, bytes]]:
    """(channel, pt, seq, ts, ssrc, marker, payload) of each interleaved RTP frame."""
    out = []
    pos = 0
    while pos < len(data):
        assert data[pos] == ord("$")
        channel, length = data[pos + 1], int.from_bytes(data[pos + 2 : pos + 4], "big")
        packet = data[pos + 4 : pos + 4 + length]
        assert len(packet) == length
        assert packet[0] == 0x80  # version 2, no padding/extension/CSRC
        seq, ts, ssrc = struct.unpack(">HII", packet[2:12])
        out.append((channel, packet[1] & 0x7F, seq, ts, ssrc, bool(packet[1] & 0x80), packet[12:]))
        pos += 4 + length
    return out


def test_split_annexb_handles_both_start_code_lengths_and_trailing_zeros() -> None:
    idr = _nal(5, 50)
    stream = b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x01" + PPS + b"\x00\x00" + b"\x00\x00\x01" + idr
    assert h264.split_annexb(stream) == [SPS, PPS, idr]
    assert h264.split_annexb(h264.join_annexb([SPS, PPS, idr])) == [SPS, PPS, idr]
    assert h264.split_annexb(b"") == []


def test_profile_level_id_comes_from_the_sps() -> None:
    assert h264.profile_level_id(SPS) == "4D401F"
    with pytest.raises(ValueError, match="sequence parameter set"):
        h264.profile_level_id(PPS)


def test_small_nal_goes_in_one_packet_unchanged() -> None:
    nal = _nal(1, MAX_PAYLOAD)
    assert packetize_nal(nal) == [nal]


def test_fu_a_fragments_reassemble_to_the_original_nal() -> None:
    nal = _nal(5, 5000, nri=3, seed=1)
    payloads = packetize_nal(nal)
    assert len(payloads) == 4
    assert all(len(p) <= MAX_PAYLOAD for p in payloads)
    assert all(p[0] == (0x60 | FU_A) for p in payloads)  # NRI kept, type 28
    assert [p[1] & 0xC0 for p in payloads] == [0x80, 0, 0, 0x40]  # start ... end
    assert all(p[1] & 0x1F == 5 for p in payloads)
    assert depacketize(payloads) == [nal]


def test_fu_a_boundary_sizes() -> None:
    for size in (MAX_PAYLOAD + 1, 2 * (MAX_PAYLOAD - 2) + 1, 2 * (MAX_PAYLOAD - 2) + 2):
        nal = _nal(1, size, seed=size)
        payloads = packetize_nal(nal)
        assert len(payloads) >= 2
        assert depacketize(payloads) == [nal], size


def test_access_unit_packets_keep_nal_order() -> None:
    nals = [SPS, PPS, _nal(5, 3000, seed=2), _nal(5, 100, seed=3)]
    assert depacketize(packetize_access_unit(nals)) == nals


def test_rendered_unit_has_marker_on_last_packet_and_patched_headers() -> None:
    nals = (SPS, PPS, _nal(5, 4000, seed=4))
    unit = PacketizedUnit.build(AccessUnit(nals, keyframe=True))
    frames = parse_frames(unit.render(channel=6, first_seq=100, timestamp=123456, ssrc=0xDEADBEEF))
    assert [f[5] for f in frames] == [False] * (len(frames) - 1) + [True]
    assert [f[2] for f in frames] == list(range(100, 100 + len(frames)))
    assert {(f[0], f[1], f[3], f[4]) for f in frames} == {(6, PAYLOAD_TYPE, 123456, 0xDEADBEEF)}
    assert depacketize([f[6] for f in frames]) == list(nals)
    # The template stays untouched, so the next send starts from clean headers.
    again = parse_frames(unit.render(channel=0, first_seq=7, timestamp=1, ssrc=2))
    assert [f[2] for f in again] == list(range(7, 7 + len(frames)))


def test_sequence_numbers_and_timestamps_wrap() -> None:
    unit = PacketizedUnit.build(AccessUnit((SPS, PPS, _nal(5, 3000)), keyframe=True))
    frames = parse_frames(unit.render(0, first_seq=65534, timestamp=(1 << 32) + 5, ssrc=1))
    assert [f[2] for f in frames] == [65534, 65535, 0, 1, 2]  # SPS, PPS and three FU-A fragments
    assert frames[0][3] == 5


def _loop() -> PacketizedLoop:
    units = [
        AccessUnit((SPS, PPS, _nal(5, 3000)), keyframe=True),  # 5 packets
        AccessUnit((_nal(1, 200),), keyframe=False),  # 1
        AccessUnit((_nal(1, 2000),), keyframe=False),  # 2
        AccessUnit((SPS, PPS, _nal(5, 1000)), keyframe=True),  # 3
        AccessUnit((_nal(1, 50),), keyframe=False),  # 1
    ]
    return PacketizedLoop(units)


def test_packetized_loop_counts_packets_across_loops() -> None:
    loop = _loop()
    assert loop.packets_per_loop == 12
    assert [loop.packets_before(f) for f in range(7)] == [0, 5, 6, 8, 11, 12, 17]


def test_next_keyframe_wraps_into_the_next_loop() -> None:
    loop = _loop()
    assert [loop.next_keyframe(f) for f in range(6)] == [0, 3, 3, 3, 5, 5]
    assert loop.next_keyframe(14) == 15


def test_loop_must_start_with_a_keyframe() -> None:
    with pytest.raises(ValueError, match="keyframe"):
        PacketizedLoop([AccessUnit((_nal(1, 10),), keyframe=False)])


def test_live_stream_timestamps_and_sequence_run_on_across_the_wrap() -> None:
    loop = _loop()
    stream = LiveStream("cam/main", loop, fps=15, phase_frames=0)
    for frame in range(1, 3 * len(loop)):
        step = (stream.rtp_timestamp(frame) - stream.rtp_timestamp(frame - 1)) % (1 << 32)
        assert step == 6000
        packets = len(loop.unit(frame - 1).offsets)
        assert (stream.first_seq(frame) - stream.first_seq(frame - 1)) % (1 << 16) == packets
    # A client joining now starts at the next keyframe, and RTP-Info says where that is.
    assert stream.start_of(1) == (stream.first_seq(3), stream.rtp_timestamp(3))
