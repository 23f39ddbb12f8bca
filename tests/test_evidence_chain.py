"""The chain record format: fixed vectors, so that the format cannot drift without a test failing."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from appliance.evidence.chain import GENESIS_PREV_HASH, ChainRecord, signature_message

SEGMENT = ChainRecord(
    camera_id="entrance",
    seq=1,
    kind="segment",
    object_key="entrance/2026-11-27/11/20261127T110000Z.mp4",
    sha256="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    size=1048576,
    recorded_at=datetime(2026, 11, 27, 11, 0, 0, 250000, tzinfo=UTC),
    reason=None,
    prev_hash=GENESIS_PREV_HASH,
)
SEGMENT_CANONICAL = (
    '{"camera_id":"entrance","format":"appliance-chain-v1","kind":"segment",'
    '"object_key":"entrance/2026-11-27/11/20261127T110000Z.mp4",'
    '"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","reason":null,'
    '"recorded_at":"2026-11-27T11:00:00.250000Z","seq":1,'
    '"sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","size":1048576}'
)
# Computed once with `(head -c 32 /dev/zero; printf '%s' CANONICAL) | sha256sum`.
SEGMENT_HASH = "5869f3d2b6ad81c15eb69a1a75908aa82915c4f18cc50cf23c3f6dab412b40b5"

DELETION = ChainRecord(
    camera_id="kassa-2",
    seq=2,
    kind="deletion",
    object_key="kassa-2/архив «ночь».mp4",
    sha256="e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    size=0,
    recorded_at=datetime(2026, 12, 27, 23, 59, 59, tzinfo=UTC),
    reason="retention:age",
    prev_hash=SEGMENT_HASH,
)
DELETION_CANONICAL = (
    '{"camera_id":"kassa-2","format":"appliance-chain-v1","kind":"deletion",'
    '"object_key":"kassa-2/архив «ночь».mp4",'
    '"prev_hash":"5869f3d2b6ad81c15eb69a1a75908aa82915c4f18cc50cf23c3f6dab412b40b5","reason":"retention:age",'
    '"recorded_at":"2026-12-27T23:59:59.000000Z","seq":2,'
    '"sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0}'
)
DELETION_HASH = "fc7b69dc53c0619213762291ecb2eeeca8371196aea7e9454171a732b1b35b5c"


def test_segment_vector() -> None:
    assert SEGMENT.canonical() == SEGMENT_CANONICAL.encode()
    assert SEGMENT.record_hash() == SEGMENT_HASH
    assert hashlib.sha256(bytes(32) + SEGMENT_CANONICAL.encode()).hexdigest() == SEGMENT_HASH


def test_deletion_vector_keeps_non_ascii_as_utf8() -> None:
    assert DELETION.canonical() == DELETION_CANONICAL.encode("utf-8")
    assert DELETION.record_hash() == DELETION_HASH
    assert hashlib.sha256(bytes.fromhex(SEGMENT_HASH) + DELETION_CANONICAL.encode()).hexdigest() == DELETION_HASH


def test_signature_message_vector() -> None:
    moscow = timezone(timedelta(hours=3))
    message = signature_message("entrance", 7, SEGMENT_HASH, datetime(2026, 11, 27, 14, 1, tzinfo=moscow))
    assert message == (
        b"appliance-chain-v1|entrance|7|5869f3d2b6ad81c15eb69a1a75908aa82915c4f18cc50cf23c3f6dab412b40b5|"
        b"2026-11-27T11:01:00.000000Z"
    )


def test_the_same_moment_in_another_zone_hashes_the_same() -> None:
    moscow = SEGMENT.recorded_at.astimezone(timezone(timedelta(hours=3)))
    assert replace(SEGMENT, recorded_at=moscow).record_hash() == SEGMENT_HASH


@pytest.mark.parametrize(
    "change",
    [
        {"sha256": "0" * 63 + "1"},
        {"size": 1048577},
        {"object_key": "entrance/2026-11-27/11/20261127T110001Z.mp4"},
        {"recorded_at": SEGMENT.recorded_at + timedelta(microseconds=1)},
        {"kind": "clip"},
        {"reason": "motion"},
        {"camera_id": "entrance2"},
    ],
)
def test_every_field_is_covered_by_the_hash(change: dict[str, object]) -> None:
    assert replace(SEGMENT, **change).record_hash() != SEGMENT_HASH  # type: ignore[arg-type]


def test_every_field_is_covered_by_the_hash_including_links() -> None:
    assert replace(DELETION, seq=3).record_hash() != DELETION_HASH
    assert replace(DELETION, prev_hash="1" * 64).record_hash() != DELETION_HASH


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"recorded_at": datetime(2026, 11, 27, 11, 0)}, "naive datetime"),
        ({"kind": "deletion"}, "needs a reason"),
        ({"sha256": "ABC"}, "sha256 must be 64 lowercase hex"),
        ({"sha256": "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"}, "lowercase hex"),
        ({"prev_hash": "1" * 64}, "genesis prev_hash"),
        ({"seq": 0}, "seq must be between 1"),
        ({"size": -1}, "size must be between 0"),
        ({"size": 2**53}, "size must be between 0"),
        ({"camera_id": "a|b"}, "contain no '|'"),
        ({"kind": "backup"}, "kind must be one of"),
        ({"object_key": ""}, "object_key must not be empty"),
    ],
)
def test_invalid_records_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(SEGMENT, **change)  # type: ignore[arg-type]
