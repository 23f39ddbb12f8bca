"""The evidence ledger: appends finalised segments, clips and deletions to per-camera hash
chains, signs the chain heads, and verifies chains against the footage.

Appends for one camera are serialised by an asyncio.Lock, so concurrent finalisations in this
process get consecutive sequence numbers. Across processes, the unique (camera_id, seq)
constraint turns a second writer into `LedgerConflict` instead of a fork of the chain; there is
no such writer by design: each camera is recorded by one appliance process, and on a PostgreSQL
server shared by several appliances camera ids are per appliance, so appliances never contend
for a chain.

The signer signs every camera's head that changed since this key's last signature. Between two
signatures the newest records are protected only by the hash links, which anyone with write
access to the database could recompute; a signature needs the key. So the signer runs every
minute and once more at shutdown, and the components that append should be stopped before it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import and_, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appliance.evidence.chain import GENESIS_PREV_HASH, ChainRecord, Kind, signature_message
from appliance.evidence.keys import public_key_fingerprint
from appliance.evidence.verify import (
    ChainWalker,
    FileOutcome,
    FootageReader,
    HashProgress,
    Opener,
    ProgressCallback,
    VerifyReport,
    digest,
)
from appliance.storage.models import (
    CAMERA_ID_MAX_LENGTH,
    EVIDENCE_REASON_MAX_LENGTH,
    FOOTAGE_KEY_MAX_LENGTH,
    EvidenceRecord,
    EvidenceSignature,
    utcnow,
)

logger = logging.getLogger(__name__)

# How often the signer signs changed chain heads: the longest time a new record stays unsigned.
SIGN_INTERVAL_S: Final = 60.0

# Records read per query while verifying: bounds memory, and each batch is checked in a thread.
VERIFY_BATCH_ROWS: Final = 2000

# Object keys per IN (...) query when looking for later deletions (well below SQLite's limit).
KEYS_PER_QUERY: Final = 500


class LedgerConflict(Exception):
    """Another process appended to the same camera's chain at the same moment."""


class UnknownObject(Exception):
    """A deletion was recorded for an object that has no record in the camera's chain."""


class EvidenceLedger:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], key: Ed25519PrivateKey) -> None:
        self._sessions = sessions
        self._key = key
        self._public_key = key.public_key()
        self.fingerprint = public_key_fingerprint(key)
        self._append_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._sign_lock = asyncio.Lock()

    # ------------------------------------------------------------------------------ append ---

    async def append(
        self,
        camera_id: str,
        kind: Kind,
        object_key: str,
        sha256: str,
        size: int,
        recorded_at: datetime,
        reason: str | None = None,
    ) -> EvidenceRecord:
        """Add a finalised object (or a deletion) to the camera's chain; returns the stored record.

        For a deletion, sha256 and size are those of the deleted object; record it before the file
        is removed, so that a crash in between leaves a file too many rather than an unexplained gap.
        """
        _check_lengths(camera_id, object_key, reason)
        async with self._append_locks[camera_id]:
            try:
                async with self._sessions.begin() as session:
                    head = (
                        await session.execute(
                            select(EvidenceRecord.seq, EvidenceRecord.record_hash)
                            .where(EvidenceRecord.camera_id == camera_id)
                            .order_by(EvidenceRecord.seq.desc())
                            .limit(1)
                        )
                    ).first()
                    record = ChainRecord(
                        camera_id=camera_id,
                        seq=head.seq + 1 if head else 1,
                        kind=kind,
                        object_key=object_key,
                        sha256=sha256,
                        size=size,
                        recorded_at=recorded_at,
                        reason=reason,
                        prev_hash=head.record_hash if head else GENESIS_PREV_HASH,
                    )
                    row = EvidenceRecord(
                        camera_id=camera_id,
                        seq=record.seq,
                        kind=kind,
                        object_key=object_key,
                        sha256=sha256,
                        size=size,
                        recorded_at=recorded_at,
                        reason=reason,
                        prev_hash=record.prev_hash,
                        record_hash=record.record_hash(),
                    )
                    session.add(row)
            except IntegrityError:
                raise LedgerConflict(
                    f"another process appended to camera {camera_id!r}'s evidence chain at the same time; "
                    "a camera must be recorded by one appliance process only. Stop the other one"
                ) from None
        return row

    async def record_deletion(
        self, camera_id: str, object_key: str, reason: str, deleted_at: datetime
    ) -> EvidenceRecord:
        """Record that an object is being deleted (e.g. reason "retention:age"), with its recorded hash."""
        async with self._sessions() as session:
            recorded = await session.scalar(
                select(EvidenceRecord)
                .where(
                    EvidenceRecord.camera_id == camera_id,
                    EvidenceRecord.object_key == object_key,
                    EvidenceRecord.kind != "deletion",
                )
                .order_by(EvidenceRecord.seq.desc())
                .limit(1)
            )
        if recorded is None:
            raise UnknownObject(f"camera {camera_id!r} has no evidence record for {object_key!r}")
        return await self.append(
            camera_id, "deletion", object_key, recorded.sha256, recorded.size, deleted_at, reason=reason
        )

    # -------------------------------------------------------------------------------- sign ---

    async def sign_heads(self, now: datetime) -> list[tuple[str, int]]:
        """Sign every camera's head that changed since this key last signed it; returns (camera, seq)."""
        async with self._sign_lock:
            latest = (
                select(EvidenceRecord.camera_id, func.max(EvidenceRecord.seq).label("seq"))
                .group_by(EvidenceRecord.camera_id)
                .subquery()
            )
            signed = (
                select(EvidenceSignature.camera_id, func.max(EvidenceSignature.seq).label("seq"))
                .where(EvidenceSignature.key_fingerprint == self.fingerprint)
                .group_by(EvidenceSignature.camera_id)
                .subquery()
            )
            async with self._sessions.begin() as session:
                heads = (
                    await session.execute(
                        select(EvidenceRecord.camera_id, EvidenceRecord.seq, EvidenceRecord.record_hash)
                        .join(
                            latest,
                            and_(EvidenceRecord.camera_id == latest.c.camera_id, EvidenceRecord.seq == latest.c.seq),
                        )
                        .outerjoin(signed, EvidenceRecord.camera_id == signed.c.camera_id)
                        .where((signed.c.seq.is_(None)) | (signed.c.seq < EvidenceRecord.seq))
                        .order_by(EvidenceRecord.camera_id)
                    )
                ).all()
                for camera_id, seq, head_hash in heads:
                    message = signature_message(camera_id, seq, head_hash, now)
                    session.add(
                        EvidenceSignature(
                            camera_id=camera_id,
                            seq=seq,
                            head_hash=head_hash,
                            signature=self._key.sign(message).hex(),
                            key_fingerprint=self.fingerprint,
                            signed_at=now,
                        )
                    )
        return [(camera_id, seq) for camera_id, seq, _ in heads]

    async def run_signer(self, interval_s: float = SIGN_INTERVAL_S) -> None:
        """Supervised component: sign at start, every `interval_s`, and once more when cancelled."""
        try:
            while True:
                signed = await self.sign_heads(utcnow())
                if signed:
                    logger.debug("signed evidence chain heads", extra={"heads": signed})
                await asyncio.sleep(interval_s)
        except asyncio.CancelledError:
            # Shutdown: what was recorded since the last round must not wait for the next start.
            signed = await self.sign_heads(utcnow())
            logger.info("signed evidence chain heads at shutdown", extra={"heads": signed})
            raise

    # ------------------------------------------------------------------------------ verify ---

    async def verify(
        self,
        footage: Opener | FootageReader,
        camera: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        progress: ProgressCallback | None = None,
    ) -> VerifyReport:
        """Walk the chains (all cameras, or one; all records, or those recorded in [start, end]),
        check hashes, links and signatures, and re-hash every file that should still exist."""
        open_read = footage.open_read if isinstance(footage, FootageReader) else footage
        cameras = [camera] if camera is not None else await self.camera_ids()
        walkers = [await self._walk(camera_id, start, end) for camera_id in cameras]
        report = VerifyReport(self.fingerprint, [w.report for w in walkers])
        report.hashing_seconds = await _check_files(walkers, open_read, progress)
        return report

    async def recorded_keys(self, camera_id: str) -> set[str]:
        """Keys of the camera's objects (segments and clips) that the chain records."""
        async with self._sessions() as session:
            return set(
                await session.scalars(
                    select(EvidenceRecord.object_key)
                    .where(EvidenceRecord.camera_id == camera_id, EvidenceRecord.kind != "deletion")
                    .distinct()
                )
            )

    async def camera_ids(self) -> list[str]:
        """Cameras with any evidence: records, or signatures left over from deleted records."""
        async with self._sessions() as session:
            ids = set(await session.scalars(select(EvidenceRecord.camera_id).distinct()))
            ids |= set(await session.scalars(select(EvidenceSignature.camera_id).distinct()))
        return sorted(ids)

    async def _walk(self, camera_id: str, start: datetime | None, end: datetime | None) -> ChainWalker:
        async with self._sessions() as session:
            head = (
                await session.scalar(select(func.max(EvidenceRecord.seq)).where(EvidenceRecord.camera_id == camera_id))
                or 0
            )
            lo, hi = 1, head
            if start is not None or end is not None:
                in_time = [EvidenceRecord.camera_id == camera_id]
                if start is not None:
                    in_time.append(EvidenceRecord.recorded_at >= start)
                if end is not None:
                    in_time.append(EvidenceRecord.recorded_at <= end)
                bounds = (
                    await session.execute(
                        select(func.min(EvidenceRecord.seq), func.max(EvidenceRecord.seq)).where(*in_time)
                    )
                ).one()
                if bounds[0] is None:
                    return self._walker(camera_id)
                lo, hi = bounds
            # Read on to the first signature at or after the range: it vouches for the records in it.
            anchor = await session.scalar(
                select(func.min(EvidenceSignature.seq)).where(
                    EvidenceSignature.camera_id == camera_id, EvidenceSignature.seq >= hi, EvidenceSignature.seq <= head
                )
            )
            walk_end = anchor if anchor is not None else head
            prev_hash: str | None = GENESIS_PREV_HASH
            if lo > 1:
                prev_hash = await session.scalar(
                    select(EvidenceRecord.record_hash).where(
                        EvidenceRecord.camera_id == camera_id, EvidenceRecord.seq == lo - 1
                    )
                )
        walker = self._walker(camera_id, first_seq=lo, prev_hash=prev_hash, range_lo=lo, range_hi=hi)
        cursor = lo
        while cursor <= walk_end:
            rows, signatures = await self._batch(camera_id, cursor, walk_end)
            await asyncio.to_thread(walker.feed, rows, signatures)
            cursor = rows[-1].seq + 1 if rows else walk_end + 1
        async with self._sessions() as session:
            beyond_head = list(
                await session.scalars(
                    select(EvidenceSignature).where(
                        EvidenceSignature.camera_id == camera_id, EvidenceSignature.seq > head
                    )
                )
            )
            # While the appliance runs, records are appended and signed during the walk. A record
            # exists before its signature does, so the head read now covers every signature read above.
            head_now = (
                await session.scalar(select(func.max(EvidenceRecord.seq)).where(EvidenceRecord.camera_id == camera_id))
                or 0
            )
            await self._forget_deleted_later(session, camera_id, walk_end, walker)
        walker.finish([s for s in beyond_head if s.seq > head_now], head)
        return walker

    def _walker(self, camera_id: str, **position: Any) -> ChainWalker:
        return ChainWalker(camera_id, self._public_key, self.fingerprint, **position)

    async def _batch(
        self, camera_id: str, cursor: int, walk_end: int
    ) -> tuple[Sequence[EvidenceRecord], Sequence[EvidenceSignature]]:
        async with self._sessions() as session:
            rows = (
                await session.scalars(
                    select(EvidenceRecord)
                    .where(
                        EvidenceRecord.camera_id == camera_id,
                        EvidenceRecord.seq >= cursor,
                        EvidenceRecord.seq <= walk_end,
                    )
                    .order_by(EvidenceRecord.seq)
                    .limit(VERIFY_BATCH_ROWS)
                )
            ).all()
            last = rows[-1].seq if rows else walk_end
            signatures = (
                await session.scalars(
                    select(EvidenceSignature).where(
                        EvidenceSignature.camera_id == camera_id,
                        EvidenceSignature.seq >= cursor,
                        EvidenceSignature.seq <= last,
                    )
                )
            ).all()
        return rows, signatures

    @staticmethod
    async def _forget_deleted_later(session: AsyncSession, camera_id: str, walk_end: int, walker: ChainWalker) -> None:
        """Objects of the range deleted after the part of the chain read: not expected on disk."""
        keys = list(walker.live)
        for i in range(0, len(keys), KEYS_PER_QUERY):
            deleted = await session.scalars(
                select(EvidenceRecord.object_key).where(
                    EvidenceRecord.camera_id == camera_id,
                    EvidenceRecord.kind == "deletion",
                    EvidenceRecord.seq > walk_end,
                    EvidenceRecord.object_key.in_(keys[i : i + KEYS_PER_QUERY]),
                )
            )
            for key in deleted:
                walker.live.pop(key, None)


def _check_lengths(camera_id: str, object_key: str, reason: str | None) -> None:
    limits = (
        ("camera id", camera_id, CAMERA_ID_MAX_LENGTH),
        ("object key", object_key, FOOTAGE_KEY_MAX_LENGTH),
        ("reason", reason or "", EVIDENCE_REASON_MAX_LENGTH),
    )
    for what, value, limit in limits:
        if len(value) > limit:
            raise ValueError(f"{what} {value[:40]!r}… is longer than {limit} characters")


async def _check_files(walkers: Sequence[ChainWalker], open_read: Opener, progress: ProgressCallback | None) -> float:
    """Re-hash every live object, oldest first, in a worker thread; returns the seconds spent."""
    pending = sorted(
        ((walker, row) for walker in walkers for row in walker.live.values()), key=lambda item: item[1].seq
    )
    total = HashProgress(0, len(pending), 0, sum(row.size for _, row in pending))
    started = time.monotonic()
    done_bytes = 0
    for done, (walker, row) in enumerate(pending, start=1):
        found: FileOutcome
        try:
            found = await asyncio.to_thread(digest, open_read, row.object_key)
        except (OSError, ValueError) as exc:
            found = exc
        walker.file_result(row, found)
        done_bytes += found[0] if isinstance(found, tuple) else row.size
        if progress is not None:
            progress(HashProgress(done, total.files_total, done_bytes, total.bytes_total))
    return time.monotonic() - started
