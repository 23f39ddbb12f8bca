"""RTSP message parsing, SDP and Digest authentication of the camera simulator (pure parts)."""

from __future__ import annotations

import base64

import pytest

from appliance.simulator import rtsp
from appliance.simulator.digest import AuthResult, DigestAuth, digest_response, parse_params
from appliance.simulator.rtsp import RtspError, interleaved_channels, parse_head
from appliance.simulator.sdp import TRACK_CONTROL, VideoDescription, build_sdp

SPS = bytes.fromhex("674d401fda014016e8400000030040000007a3c60ca8")
PPS = bytes.fromhex("68ef0fc8")


# ------------------------------------------------------------------------------------ RTSP ---


def test_parse_request_head() -> None:
    req = parse_head(
        b"DESCRIBE rtsp://127.0.0.1:8554/cam1/main RTSP/1.0\r\nCSeq: 2\r\naccept: application/sdp\r\n"
        b"User-Agent: Lavf60\r\n  continued\r\n\r\n"
    )
    assert (req.method, req.uri, req.cseq, req.path) == (
        "DESCRIBE",
        "rtsp://127.0.0.1:8554/cam1/main",
        "2",
        "cam1/main",
    )
    assert req.header("Accept") == "application/sdp"
    assert req.header("user-agent") == "Lavf60 continued"
    assert req.content_length == 0


def test_options_star_has_empty_path() -> None:
    assert parse_head(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n").path == ""


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\r\n\r\n", 400),  # a TLS hello
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"DESCRIBE rtsp://h/cam1/main\r\nCSeq: 1\r\n\r\n", 400),  # no version
        (b"DESCRIBE  rtsp://h/cam1/main RTSP/1.0\r\nCSeq: 1\r\n\r\n", 400),  # double space
        (b"DESCRIBE rtsp://h/cam1/main RTSP/1.0\r\n\r\n", 400),  # no CSeq
        (b"DESCRIBE rtsp://h/cam1/main RTSP/1.0\r\nCSeq 1\r\n\r\n", 400),  # header without colon
        (b"DESCRIBE http://h/cam1/main RTSP/1.0\r\nCSeq: 1\r\n\r\n", 400),
        (b"describe rtsp://h/cam1/main RTSP/1.0\r\nCSeq: 1\r\n\r\n", 400),
        (b"DESCRIBE rtsp://h/\xff RTSP/1.0\r\nCSeq: 1\r\n\r\n", 400),  # not UTF-8
        (b"DESCRIBE rtsp://h/cam1/main RTSP/2.0\r\nCSeq: 1\r\n\r\n", 505),
        (b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX: " + b"a" * rtsp.MAX_HEAD_BYTES + b"\r\n\r\n", 400),
    ],
)
def test_malformed_requests_get_a_status_not_a_crash(head: bytes, status: int) -> None:
    with pytest.raises(RtspError) as info:
        parse_head(head)
    assert info.value.status == status
    response = rtsp.build_response(info.value.status, rtsp.cseq_of(head))
    assert response.startswith(f"RTSP/1.0 {status} ".encode())


@pytest.mark.parametrize("value", ["abc", "-1", str(rtsp.MAX_BODY_BYTES + 1)])
def test_bad_content_length_is_a_400(value: str) -> None:
    req = parse_head(f"SET_PARAMETER rtsp://h/a/main RTSP/1.0\r\nCSeq: 3\r\nContent-Length: {value}\r\n\r\n".encode())
    with pytest.raises(RtspError) as info:
        _ = req.content_length
    assert info.value.status == 400


def test_cseq_of_unparseable_request() -> None:
    assert rtsp.cseq_of(b"BROKEN\r\nCSeq: 17\r\n\r\n") == "17"
    assert rtsp.cseq_of(b"BROKEN\r\nCSeq: 1\r\nX\r\n") == "1"
    assert rtsp.cseq_of(b"BROKEN\r\nCSeq: 1\r\nInjected: x\r\n") == "1"
    assert rtsp.cseq_of(b"BROKEN\r\nCSeq: 1 evil\r\n\r\n") is None
    assert rtsp.cseq_of(b"BROKEN\r\n\r\n") is None


def test_build_response() -> None:
    data = rtsp.build_response(200, "5", [("Public", "OPTIONS")], b"body")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "RTSP/1.0 200 OK"
    assert "CSeq: 5" in lines and "Public: OPTIONS" in lines and "Content-Length: 4" in lines
    assert body == b"body"
    assert rtsp.build_response(454, None).startswith(b"RTSP/1.0 454 Session Not Found\r\n")


@pytest.mark.parametrize(
    ("transport", "channels"),
    [
        ("RTP/AVP/TCP;unicast;interleaved=0-1", (0, 1)),
        ("RTP/AVP/TCP;unicast;interleaved=4-5", (4, 5)),
        ("RTP/AVP/TCP;interleaved=6", (6, 7)),
        ("RTP/AVP/TCP;unicast", (0, 1)),
        ("RTP/AVP;unicast;client_port=5000-5001,RTP/AVP/TCP;unicast;interleaved=2-3", (2, 3)),
    ],
)
def test_interleaved_channels(transport: str, channels: tuple[int, int]) -> None:
    assert interleaved_channels(transport) == channels


@pytest.mark.parametrize(
    ("transport", "status"),
    [
        (None, 461),
        ("RTP/AVP;unicast;client_port=5000-5001", 461),
        ("RTP/AVP/UDP;multicast", 461),
        ("RTP/AVP/TCP;interleaved=x-y", 400),
        ("RTP/AVP/TCP;interleaved=300-301", 400),
    ],
)
def test_unusable_transports(transport: str | None, status: int) -> None:
    with pytest.raises(RtspError) as info:
        interleaved_channels(transport)
    assert info.value.status == status


# ------------------------------------------------------------------------------------- SDP ---


def test_sdp_announces_h264_with_parameter_sets() -> None:
    sdp = build_sdp(VideoDescription(SPS, PPS, 1280, 720, 15, "cam1 main"), session_id=42, server_address="127.0.0.1")
    assert sdp.endswith("\r\n") and "\n" not in sdp.replace("\r\n", "")
    lines = sdp.split("\r\n")
    assert lines[0] == "v=0"
    assert "o=- 42 1 IN IP4 127.0.0.1" in lines
    assert "m=video 0 RTP/AVP 96" in lines
    assert "a=rtpmap:96 H264/90000" in lines
    assert f"a=control:{TRACK_CONTROL}" in lines
    fmtp = next(line for line in lines if line.startswith("a=fmtp:96 "))
    params = dict(p.split("=", 1) for p in fmtp.removeprefix("a=fmtp:96 ").split(";"))
    assert params["packetization-mode"] == "1"
    assert params["profile-level-id"] == "4D401F"
    sps_b64, pps_b64 = params["sprop-parameter-sets"].split(",")
    assert (base64.b64decode(sps_b64), base64.b64decode(pps_b64)) == (SPS, PPS)


def test_sdp_for_ipv6() -> None:
    sdp = build_sdp(VideoDescription(SPS, PPS, 640, 360, 15, "x"), session_id=1, server_address="::1")
    assert "o=- 1 1 IN IP6 ::1" in sdp and "c=IN IP6 ::" in sdp


# ---------------------------------------------------------------------------------- Digest ---


def test_digest_response_matches_rfc_2617_example() -> None:
    # RFC 2617 §3.5.
    assert (
        digest_response(
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "auth",
            "00000001",
            "0a4f113b",
        )
        == "6629fae49393a05397450978507c4ef1"
    )


def test_parse_params_handles_quotes_commas_and_escapes() -> None:
    p = parse_params('username="a,b", realm="r \\"q\\"", nc=00000001, qop=auth, uri="rtsp://h:1/c/main"')
    assert p == {"username": "a,b", "realm": 'r "q"', "nc": "00000001", "qop": "auth", "uri": "rtsp://h:1/c/main"}
    with pytest.raises(ValueError, match="malformed"):
        parse_params('username="unterminated')


class _Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


URI = "rtsp://127.0.0.1:8554/cam1/main"


def _answer(
    auth: DigestAuth,
    *,
    password: str = "secret",
    user: str = "admin",
    qop: bool = True,
    uri: str = URI,
    method: str = "DESCRIBE",
    nonce: str | None = None,
) -> str:
    params = parse_params(auth.challenge().partition(" ")[2])
    nonce = nonce or params["nonce"]
    if qop:
        resp = digest_response(user, params["realm"], password, method, uri, nonce, "auth", "00000001", "c0ffee")
        return (
            f'Digest username="{user}", realm="{params["realm"]}", nonce="{nonce}", uri="{uri}", '
            f'response="{resp}", qop=auth, nc=00000001, cnonce="c0ffee"'
        )
    resp = digest_response(user, params["realm"], password, method, uri, nonce)
    return f'Digest username="{user}", realm="{params["realm"]}", nonce="{nonce}", uri="{uri}", response="{resp}"'


def test_digest_accepts_the_right_password_with_and_without_qop() -> None:
    auth = DigestAuth("admin", "secret")
    challenge = auth.challenge()
    assert challenge.startswith("Digest ") and 'qop="auth"' in challenge and "algorithm=MD5" in challenge
    assert auth.check("DESCRIBE", URI, _answer(auth)) is AuthResult.OK
    assert auth.check("DESCRIBE", URI, _answer(auth, qop=False)) is AuthResult.OK
    # Some clients put only the path in `uri`.
    assert auth.check("DESCRIBE", URI, _answer(auth, uri="/cam1/main")) is AuthResult.OK


@pytest.mark.parametrize(
    "header",
    [
        "Basic YWRtaW46c2VjcmV0",
        "Digest garbage",
        'Digest username="admin"',
    ],
)
def test_digest_rejects_malformed_or_foreign_schemes(header: str) -> None:
    assert DigestAuth("admin", "secret").check("DESCRIBE", URI, header) is AuthResult.WRONG


def test_digest_rejects_wrong_credentials_and_tampering() -> None:
    auth = DigestAuth("admin", "secret")
    assert auth.check("DESCRIBE", URI, None) is AuthResult.MISSING
    assert auth.check("DESCRIBE", URI, _answer(auth, password="guess")) is AuthResult.WRONG
    assert auth.check("DESCRIBE", URI, _answer(auth, user="root")) is AuthResult.WRONG
    # An answer computed for another method or another stream does not carry over.
    assert auth.check("SETUP", URI, _answer(auth)) is AuthResult.WRONG
    assert auth.check("DESCRIBE", URI, _answer(auth, uri="rtsp://127.0.0.1:8554/cam2/main")) is AuthResult.WRONG
    # A nonce the server never issued (or issued by another server instance).
    other = DigestAuth("admin", "secret")
    assert auth.check("DESCRIBE", URI, _answer(auth, nonce=other.new_nonce())) is AuthResult.WRONG
    assert auth.check("DESCRIBE", URI, _answer(auth, nonce="zz" + "0" * 16)) is AuthResult.WRONG


def test_digest_old_nonce_is_stale_not_wrong() -> None:
    clock = _Clock()
    auth = DigestAuth("admin", "secret", nonce_lifetime=60, clock=clock)
    header = _answer(auth)
    clock.now += 61
    assert auth.check("DESCRIBE", URI, header) is AuthResult.STALE
    assert "stale=TRUE" in auth.challenge(stale=True)
    # A stale nonce with a wrong password is still simply wrong.
    old_nonce = parse_params(header.partition(" ")[2])["nonce"]
    assert auth.check("DESCRIBE", URI, _answer(auth, password="x", nonce=old_nonce)) is AuthResult.WRONG
