"""The evidence chain's record format and hashing: pure functions, no I/O.

This module is the specification an auditor re-implements, so the format is spelled out here.

Record (format "appliance-chain-v1"). A record is a JSON object with exactly these members:

    format       "appliance-chain-v1"
    camera_id    the camera's id, e.g. "entrance"
    seq          1, 2, 3, ... per camera, without gaps
    kind         "segment" | "clip" | "deletion"
    object_key   the file's key in the footage store, e.g. "entrance/2026/11/27/14/00-00.mp4"
    sha256       lowercase hex SHA-256 of the file's bytes (for a deletion: of the deleted file)
    size         the file's size in bytes (for a deletion: of the deleted file)
    recorded_at  UTC time, "YYYY-MM-DDTHH:MM:SS.ffffffZ" (always six fraction digits): when the
                 footage was recorded; for a deletion, when the file was deleted
    reason       null, or why the object was deleted, e.g. "retention:age" (required for deletions)
    prev_hash    lowercase hex record_hash of record seq-1; for seq 1, 64 zeros

Canonical form: RFC 8785 (JSON Canonicalization Scheme) encoded as UTF-8, i.e. members sorted by
name, no whitespace, strings with JSON's minimal escaping and non-ASCII characters as UTF-8, and
integers as plain decimals (sizes and sequence numbers stay below 2**53, where JCS and every JSON
library agree). Python's `json.dumps(obj, sort_keys=True, separators=(",", ":"),
ensure_ascii=False).encode()` produces exactly this.

    record_hash = lowercase hex SHA-256( bytes.fromhex(prev_hash) || canonical )

Signature over a chain head (Ed25519, RFC 8032), on the UTF-8 bytes of

    "appliance-chain-v1|<camera_id>|<seq>|<head_hash>|<signed_at>"

where head_hash is the record_hash of record <seq> and signed_at uses the recorded_at format.
Camera ids cannot contain "|" (they are slugs), so the message splits back unambiguously.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

FORMAT: Final = "appliance-chain-v1"
KINDS: Final = ("segment", "clip", "deletion")
Kind = Literal["segment", "clip", "deletion"]

HASH_HEX_LENGTH: Final = 64
GENESIS_PREV_HASH: Final = "0" * HASH_HEX_LENGTH

# Integers above this are not exact in IEEE doubles, where JSON implementations disagree.
MAX_JSON_INTEGER: Final = 2**53 - 1

_HEX_DIGEST = re.compile(rf"[0-9a-f]{{{HASH_HEX_LENGTH}}}")


def utc_iso(moment: datetime) -> str:
    """The chain's fixed time format: UTC, microseconds, 'Z'."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()}; pass an aware one, e.g. datetime.now(UTC)")
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _check_digest(name: str, value: str) -> None:
    if not _HEX_DIGEST.fullmatch(value):
        raise ValueError(f"{name} must be {HASH_HEX_LENGTH} lowercase hex digits, got {value!r}")


def _check_integer(name: str, value: int, minimum: int) -> None:
    if not minimum <= value <= MAX_JSON_INTEGER:
        raise ValueError(f"{name} must be between {minimum} and {MAX_JSON_INTEGER}, got {value}")


@dataclass(frozen=True)
class ChainRecord:
    """One link of a camera's chain, as hashed. Construction validates every field."""

    camera_id: str
    seq: int
    kind: Kind
    object_key: str
    sha256: str
    size: int
    recorded_at: datetime
    reason: str | None
    prev_hash: str

    def __post_init__(self) -> None:
        if not self.camera_id or "|" in self.camera_id:
            raise ValueError(f"camera id {self.camera_id!r} must be non-empty and contain no '|'")
        _check_integer("seq", self.seq, 1)
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not self.object_key:
            raise ValueError("object_key must not be empty")
        _check_digest("sha256", self.sha256)
        _check_integer("size", self.size, 0)
        utc_iso(self.recorded_at)
        if self.kind == "deletion" and not self.reason:
            raise ValueError("a deletion record needs a reason, e.g. 'retention:age'")
        _check_digest("prev_hash", self.prev_hash)
        if self.seq == 1 and self.prev_hash != GENESIS_PREV_HASH:
            raise ValueError("the first record of a chain (seq 1) must have the genesis prev_hash (64 zeros)")

    def canonical(self) -> bytes:
        members = {
            "format": FORMAT,
            "camera_id": self.camera_id,
            "seq": self.seq,
            "kind": self.kind,
            "object_key": self.object_key,
            "sha256": self.sha256,
            "size": self.size,
            "recorded_at": utc_iso(self.recorded_at),
            "reason": self.reason,
            "prev_hash": self.prev_hash,
        }
        return json.dumps(members, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def record_hash(self) -> str:
        return hashlib.sha256(bytes.fromhex(self.prev_hash) + self.canonical()).hexdigest()


def signature_message(camera_id: str, seq: int, head_hash: str, signed_at: datetime) -> bytes:
    """The bytes an Ed25519 signature over a chain head covers."""
    _check_digest("head_hash", head_hash)
    return f"{FORMAT}|{camera_id}|{seq}|{head_hash}|{utc_iso(signed_at)}".encode()
