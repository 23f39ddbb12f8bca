"""Checking a camera's chain: record hashes, links, signatures, and the files themselves.

`ChainWalker` is fed one camera's records (and the signatures over them) in sequence order and
collects what is wrong; it does no I/O, so the ledger runs it in a worker thread batch by batch.
The files still expected on disk (recorded, and not followed by a deletion record) are then
re-hashed with `digest()`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, Final, Protocol, cast, runtime_checkable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.evidence.chain import GENESIS_PREV_HASH, ChainRecord, Kind, signature_message
from appliance.storage.models import EvidenceRecord, EvidenceSignature

# Large enough that the per-read overhead is negligible next to SHA-256, small enough to keep
# memory flat whatever the size of a clip.
HASH_CHUNK_BYTES: Final = 1 << 20

# A wiped disk gives one problem per file: keep the first ones for the report, count the rest.
MAX_PROBLEMS_KEPT: Final = 100

CONTENT_CHANGED: Final = "content changed (sha256 differs)"
FILE_MISSING: Final = "file missing and no retention deletion recorded"
FILE_UNREADABLE: Final = "file cannot be read"
RECORD_ALTERED: Final = "record altered (hash mismatch)"
SIGNATURE_INVALID: Final = "signature invalid"
NOT_SIGNED_YET: Final = "records after the last signature are not signed yet"

Opener = Callable[[str], BinaryIO]
# What re-hashing an object found: (size, sha256 hex), None when it is missing, or why it is unreadable.
FileOutcome = tuple[int, str] | Exception | None


@runtime_checkable
class FootageReader(Protocol):
    """What verification needs of a footage store: the bytes of an object by its key."""

    def open_read(self, key: str) -> BinaryIO: ...


@dataclass(frozen=True)
class Problem:
    camera_id: str
    seq: int
    object_key: str | None
    what: str
    recorded_at: datetime | None = None


@dataclass(frozen=True)
class HashProgress:
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int


ProgressCallback = Callable[[HashProgress], None]


@dataclass
class CameraReport:
    """One camera's result. Counts cover the records in the range asked for."""

    camera_id: str
    records: int = 0
    deletions: int = 0  # deletion records: files whose absence is accounted for
    files_checked: int = 0
    bytes_hashed: int = 0
    signed_seq: int | None = None  # the highest head with a valid signature that matches the chain
    signed_at: datetime | None = None
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    first_problem: Problem | None = None
    warnings: list[str] = field(default_factory=list)
    bad_seqs: set[int] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    @property
    def ok_records(self) -> int:
        return self.records - len(self.bad_seqs)

    def add(self, problem: Problem, in_range: bool = True) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(problem)
        if self.first_problem is None or problem.seq < self.first_problem.seq:
            self.first_problem = problem
        if in_range:
            self.bad_seqs.add(problem.seq)


@dataclass
class VerifyReport:
    key_fingerprint: str
    cameras: list[CameraReport]
    hashing_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.cameras)

    @property
    def bytes_hashed(self) -> int:
        return sum(c.bytes_hashed for c in self.cameras)


class ChainWalker:
    """Checks one camera's records, fed in sequence order, from `first_seq` on.

    `prev_hash` is the stored hash of record first_seq-1 (the genesis value for seq 1), or None
    when that record is missing. Records with seq in [range_lo, range_hi] are the ones asked for:
    they are counted, and their files are kept in `live` to be re-hashed. Records beyond
    range_hi are read only to reach the next signature, which vouches for the range.
    """

    def __init__(
        self,
        camera_id: str,
        public_key: Ed25519PublicKey,
        fingerprint: str,
        *,
        first_seq: int = 1,
        prev_hash: str | None = GENESIS_PREV_HASH,
        range_lo: int = 1,
        range_hi: int | None = None,
    ) -> None:
        self.report = CameraReport(camera_id)
        self.live: dict[str, EvidenceRecord] = {}
        self.last_seq = first_seq - 1
        self._public_key = public_key
        self._fingerprint = fingerprint
        self._prev_hash = prev_hash
        self._range = (range_lo, range_hi)
        self._last_signed_seq = first_seq - 1  # the last head vouched for, to say where a rewrite began

    def _in_range(self, seq: int) -> bool:
        lo, hi = self._range
        return lo <= seq and (hi is None or seq <= hi)

    def _problem(self, seq: int, what: str, row: EvidenceRecord | None = None) -> None:
        self.report.add(
            Problem(
                self.report.camera_id, seq, row.object_key if row else None, what, row.recorded_at if row else None
            ),
            in_range=row is not None and self._in_range(row.seq),
        )

    def feed(self, rows: Sequence[EvidenceRecord], signatures: Iterable[EvidenceSignature]) -> None:
        """Check a batch of consecutive records, then the signatures over heads among them."""
        by_seq = {row.seq: row for row in rows}
        for row in rows:
            self._check_record(row)
        for signature in sorted(signatures, key=lambda s: s.seq):
            head = by_seq.get(signature.seq)
            # A signature over a missing record: the gap is already reported where it starts.
            if head is not None:
                self._check_signature(signature, head)

    def _check_record(self, row: EvidenceRecord) -> None:
        expected = self.last_seq + 1
        if row.seq != expected or self._prev_hash is None:
            first_missing = expected if self._prev_hash is not None else expected - 1
            gap = (
                f"record {first_missing} is"
                if first_missing == row.seq - 1
                else (f"records {first_missing}–{row.seq - 1} are")
            )
            self._problem(row.seq, f"chain broken at seq {row.seq} (prev_hash): {gap} missing", row)
        elif row.prev_hash != self._prev_hash:
            self._problem(
                row.seq,
                f"chain broken at seq {row.seq} (prev_hash does not match record {row.seq - 1}; "
                "one of the two was altered)",
                row,
            )
        try:
            computed = ChainRecord(
                camera_id=row.camera_id,
                seq=row.seq,
                kind=cast(Kind, row.kind),
                object_key=row.object_key,
                sha256=row.sha256,
                size=row.size,
                recorded_at=row.recorded_at,
                reason=row.reason,
                prev_hash=row.prev_hash,
            ).record_hash()
        except ValueError as exc:
            self._problem(row.seq, f"{RECORD_ALTERED}: {exc}", row)
        else:
            if computed != row.record_hash:
                self._problem(row.seq, RECORD_ALTERED, row)
        self._prev_hash = row.record_hash
        self.last_seq = row.seq
        if not self._in_range(row.seq):
            if row.kind == "deletion":
                self.live.pop(row.object_key, None)
            return
        self.report.records += 1
        if row.kind == "deletion":
            self.report.deletions += 1
            self.live.pop(row.object_key, None)
        else:
            self.live[row.object_key] = row

    def _check_signature(self, signature: EvidenceSignature, head: EvidenceRecord) -> None:
        if signature.key_fingerprint != self._fingerprint:
            self._problem(
                signature.seq,
                f"{SIGNATURE_INVALID} (made with another key, fingerprint {signature.key_fingerprint[:16]}…, "
                f"not this appliance's {self._fingerprint[:16]}…)",
                head,
            )
            return
        try:
            self._public_key.verify(
                bytes.fromhex(signature.signature),
                signature_message(signature.camera_id, signature.seq, signature.head_hash, signature.signed_at),
            )
        except (InvalidSignature, ValueError):
            self._problem(signature.seq, SIGNATURE_INVALID, head)
            return
        if signature.head_hash != head.record_hash:
            self._problem(
                signature.seq,
                f"chain rewritten: record {signature.seq} no longer matches its signed head (records "
                f"{self._last_signed_seq + 1}–{signature.seq} were replaced with recomputed hashes)",
                head,
            )
        else:
            self._last_signed_seq = signature.seq
            if self.report.signed_seq is None or signature.seq >= self.report.signed_seq:
                self.report.signed_seq = signature.seq
                self.report.signed_at = signature.signed_at

    def finish(self, beyond_head: Iterable[EvidenceSignature], chain_head: int) -> None:
        """After the last batch: signatures over records that no longer exist, and the unsigned tail."""
        last_signed = max((s.seq for s in beyond_head), default=None)
        if last_signed is not None:
            self._problem(
                chain_head + 1,
                f"chain truncated after seq {chain_head}: records up to seq {last_signed} had been signed and are gone",
            )
        signed = self.report.signed_seq or 0
        if self.last_seq == chain_head and chain_head > signed:
            self.report.warnings.append(f"{NOT_SIGNED_YET} (seq {signed + 1}–{chain_head})")

    def file_result(self, row: EvidenceRecord, found: FileOutcome) -> None:
        """Record what re-hashing a live object found."""
        if found is None:
            self._problem(row.seq, FILE_MISSING, row)
            return
        if isinstance(found, Exception):
            self._problem(row.seq, f"{FILE_UNREADABLE} ({found}); check the disk and the file's permissions", row)
            return
        size, sha256 = found
        self.report.files_checked += 1
        self.report.bytes_hashed += size
        if sha256 != row.sha256 or size != row.size:
            detail = f"; {row.size} bytes recorded, {size} on disk" if size != row.size else ""
            self._problem(row.seq, f"{CONTENT_CHANGED}{detail}", row)


def digest(open_read: Opener, key: str) -> tuple[int, str] | None:
    """(size, sha256 hex) of an object, streamed; None if it does not exist. Blocking: run in a thread.

    Other failures (permissions, I/O errors, a key the store refuses) raise OSError or ValueError.
    """
    sha = hashlib.sha256()
    size = 0
    try:
        stream = open_read(key)
    except FileNotFoundError:
        return None
    with stream:
        while chunk := stream.read(HASH_CHUNK_BYTES):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()
