"""The session description a DESCRIBE answers with (RFC 4566, H.264 parameters of RFC 6184)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from appliance.simulator.h264 import profile_level_id
from appliance.simulator.rtp import CLOCK_RATE, PAYLOAD_TYPE

TRACK_CONTROL = "trackID=0"
"""The video track's control URL, relative to the stream URL (Content-Base)."""


@dataclass(frozen=True)
class VideoDescription:
    sps: bytes
    pps: bytes
    width: int
    height: int
    fps: int
    title: str


def build_sdp(desc: VideoDescription, *, session_id: int, server_address: str) -> str:
    """SDP for one H.264 video track, with SPS/PPS in sprop-parameter-sets so a client can set
    up its decoder before the first keyframe arrives."""
    family = "IP6" if ":" in server_address else "IP4"
    any_address = "::" if family == "IP6" else "0.0.0.0"  # noqa: S104 - SDP's "no fixed address", not a bind
    sprop = ",".join(base64.b64encode(ps).decode("ascii") for ps in (desc.sps, desc.pps))
    fmtp = f"packetization-mode=1;profile-level-id={profile_level_id(desc.sps)};sprop-parameter-sets={sprop}"
    lines = [
        "v=0",
        f"o=- {session_id} 1 IN {family} {server_address}",
        f"s={desc.title}",
        f"c=IN {family} {any_address}",
        "t=0 0",
        "a=control:*",
        "a=range:npt=0-",
        f"m=video 0 RTP/AVP {PAYLOAD_TYPE}",
        f"a=rtpmap:{PAYLOAD_TYPE} H264/{CLOCK_RATE}",
        f"a=fmtp:{PAYLOAD_TYPE} {fmtp}",
        f"a=framerate:{desc.fps}",
        f"a=x-dimensions:{desc.width},{desc.height}",
        f"a=control:{TRACK_CONTROL}",
    ]
    return "\r\n".join(lines) + "\r\n"
