"""The evidence ledger on SQLite and PostgreSQL, against real footage files: every way of
tampering the issue names is reported at the right link, and retention is not."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from appliance.evidence.chain import GENESIS_PREV_HASH, ChainRecord, signature_message
from appliance.evidence.ledger import EvidenceLedger, UnknownObject
from appliance.evidence.verify import (
    CONTENT_CHANGED,
    FILE_MISSING,
    NOT_SIGNED_YET,
    RECORD_ALTERED,
    SIGNATURE_INVALID,
    ChainWalker,
    HashProgress,
    VerifyReport,
)
from appliance.storage.db import make_sessionmaker
from appliance.storage.footage import LocalFootageStore, segment_key
from appliance.storage.models import EvidenceRecord, EvidenceSignature

T0 = datetime(2026, 11, 27, 11, 0, tzinfo=UTC)
SEGMENT_S = 10


def write_segment(store: LocalFootageStore, camera: str, start: datetime, payload: bytes) -> tuple[str, str, int]:
    """A published footage file; returns its key, sha256 and size as the recorder would."""
    key = segment_key(camera, start)
    with store.open_write(key) as f:
        f.write(payload)
    size = store.finalize(key)
    return key, hashlib.sha256(payload).hexdigest(), size


async def record(ledger: EvidenceLedger, store: LocalFootageStore, camera: str, n: int) -> EvidenceRecord:
    start = T0 + timedelta(seconds=SEGMENT_S * n)
    key, sha256, size = await asyncio.to_thread(write_segment, store, camera, start, f"{camera} {n} ".encode() * 500)
    return await ledger.append(camera, "segment", key, sha256, size, start)


@pytest.fixture
def store(tmp_path: Path) -> LocalFootageStore:
    return LocalFootageStore(tmp_path / "footage")


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def ledger(db_engine: AsyncEngine, key: Ed25519PrivateKey) -> EvidenceLedger:
    return EvidenceLedger(make_sessionmaker(db_engine), key)


async def recorded(
    ledger: EvidenceLedger, store: LocalFootageStore, count: int = 5, camera: str = "entrance"
) -> list[EvidenceRecord]:
    rows = [await record(ledger, store, camera, n) for n in range(count)]
    await ledger.sign_heads(T0 + timedelta(minutes=5))
    return rows


def only_problem(report: VerifyReport, camera: str = "entrance") -> tuple[int, str]:
    (cam,) = [c for c in report.cameras if c.camera_id == camera]
    assert cam.problem_count == 1, cam.problems
    assert cam.first_problem is not None
    return cam.first_problem.seq, cam.first_problem.what


async def test_untouched_footage_verifies(ledger: EvidenceLedger, store: LocalFootageStore) -> None:
    rows = await recorded(ledger, store, 4)
    await record(ledger, store, "kassa", 0)
    await ledger.sign_heads(T0 + timedelta(minutes=6))
    progress: list[HashProgress] = []

    report = await ledger.verify(store, progress=progress.append)

    assert report.ok and report.key_fingerprint == ledger.fingerprint
    entrance, kassa = report.cameras
    assert (entrance.camera_id, entrance.records, entrance.ok_records, entrance.files_checked) == ("entrance", 4, 4, 4)
    assert (kassa.camera_id, kassa.records, kassa.signed_seq) == ("kassa", 1, 1)
    assert entrance.signed_seq == 4 and entrance.signed_at == T0 + timedelta(minutes=5)
    assert entrance.warnings == [] and report.bytes_hashed == sum(r.size for r in rows) + kassa.bytes_hashed
    assert progress[-1] == HashProgress(5, 5, report.bytes_hashed, report.bytes_hashed)
    # The stored chain is the documented format: an auditor's recomputation matches it.
    prev = GENESIS_PREV_HASH
    for seq, row in enumerate(rows, start=1):
        assert (row.seq, row.prev_hash) == (seq, prev)
        prev = ChainRecord(
            camera_id=row.camera_id,
            seq=row.seq,
            kind="segment",
            object_key=row.object_key,
            sha256=row.sha256,
            size=row.size,
            recorded_at=row.recorded_at,
            reason=None,
            prev_hash=prev,
        ).record_hash()
        assert row.record_hash == prev


async def test_signatures_are_ed25519_over_the_documented_message(
    ledger: EvidenceLedger, store: LocalFootageStore, db_engine: AsyncEngine, key: Ed25519PrivateKey
) -> None:
    rows = await recorded(ledger, store, 2)
    async with make_sessionmaker(db_engine)() as session:
        (sig,) = (await session.scalars(select(EvidenceSignature))).all()
    assert (sig.seq, sig.head_hash, sig.key_fingerprint) == (2, rows[-1].record_hash, ledger.fingerprint)
    key.public_key().verify(
        bytes.fromhex(sig.signature), signature_message("entrance", 2, rows[-1].record_hash, sig.signed_at)
    )


async def test_only_changed_heads_are_signed(ledger: EvidenceLedger, store: LocalFootageStore) -> None:
    await recorded(ledger, store, 2)
    await record(ledger, store, "kassa", 0)
    assert await ledger.sign_heads(T0 + timedelta(minutes=6)) == [("kassa", 1)]
    assert await ledger.sign_heads(T0 + timedelta(minutes=7)) == []
    await record(ledger, store, "entrance", 2)
    assert await ledger.sign_heads(T0 + timedelta(minutes=8)) == [("entrance", 3)]


async def test_unsigned_tail_is_a_warning_not_a_failure(ledger: EvidenceLedger, store: LocalFootageStore) -> None:
    await recorded(ledger, store, 2)
    await record(ledger, store, "entrance", 2)
    await record(ledger, store, "entrance", 3)
    report = await ledger.verify(store)
    assert report.ok
    assert report.cameras[0].warnings == [f"{NOT_SIGNED_YET} (seq 3–4)"]


async def test_concurrent_appends_keep_seq_contiguous(ledger: EvidenceLedger, store: LocalFootageStore) -> None:
    files = [
        await asyncio.to_thread(write_segment, store, cam, T0 + timedelta(seconds=n), b"x%d" % n)
        for n in range(20)
        for cam in ("entrance", "kassa")
    ]
    rows = await asyncio.gather(
        *(ledger.append(key.split("/")[0], "segment", key, sha, size, T0) for key, sha, size in files)
    )
    for cam in ("entrance", "kassa"):
        assert sorted(r.seq for r in rows if r.camera_id == cam) == list(range(1, 21))
    await ledger.sign_heads(T0)
    report = await ledger.verify(store)
    assert report.ok and [c.records for c in report.cameras] == [20, 20]


async def test_one_byte_changed_is_named_at_its_seq(ledger: EvidenceLedger, store: LocalFootageStore) -> None:
    rows = await recorded(ledger, store)
    path = store.root / rows[2].object_key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    report = await ledger.verify(store)

    assert not report.ok
    assert only_problem(report) == (3, CONTENT_CHANGED)
    cam = report.cameras[0]
    assert cam.first_problem is not None and cam.first_problem.object_key == rows[2].object_key
    assert (cam.records, cam.ok_records) == (5, 4)


async def test_replaced_file_of_another_size_is_named(ledger: EvidenceLedger, store: LocalFootageStore) -> None:
    rows = await recorded(ledger, store)
    (store.root / rows[0].object_key).write_bytes(b"staged footage")
    seq, what = only_problem(await ledger.verify(store))
    assert seq == 1 and what.startswith(CONTENT_CHANGED) and f"{rows[0].size} bytes recorded, 14 on disk" in what


async def test_file_deleted_by_hand_is_named(ledger: EvidenceLedger, store: LocalFootageStore) -> None:
    rows = await recorded(ledger, store)
    (store.root / rows[1].object_key).unlink()
    assert only_problem(await ledger.verify(store)) == (2, FILE_MISSING)


async def test_retention_deletion_is_not_tampering(ledger: EvidenceLedger, store: LocalFootageStore) -> None:
    rows = await recorded(ledger, store)
    for row in rows[:2]:
        deletion = await ledger.record_deletion("entrance", row.object_key, "retention:age", T0 + timedelta(days=30))
        assert (deletion.kind, deletion.sha256, deletion.size) == ("deletion", row.sha256, row.size)
        await asyncio.to_thread(store.delete, row.object_key)
    await ledger.sign_heads(T0 + timedelta(days=30))

    # Any function that opens a key will do in place of a footage store.
    report = await ledger.verify(lambda key: (store.root / key).open("rb"))

    assert report.ok, report.cameras[0].problems
    cam = report.cameras[0]
    assert (cam.records, cam.deletions, cam.files_checked, cam.ok_records) == (7, 2, 3, 7)


async def test_deletion_of_an_unknown_object_is_refused(ledger: EvidenceLedger, store: LocalFootageStore) -> None:
    await recorded(ledger, store, 1)
    with pytest.raises(UnknownObject, match="no evidence record"):
        await ledger.record_deletion("entrance", "entrance/2026-11-27/11/20261127T120000Z.mp4", "retention:age", T0)


async def test_record_edited_in_the_database(
    ledger: EvidenceLedger, store: LocalFootageStore, db_engine: AsyncEngine
) -> None:
    rows = await recorded(ledger, store)
    # Someone swaps a file and edits its recorded hash to match, without the key.
    replacement = b"staged footage"
    (store.root / rows[3].object_key).write_bytes(replacement)
    async with db_engine.begin() as conn:
        await conn.execute(
            update(EvidenceRecord)
            .where(EvidenceRecord.seq == 4)
            .values(sha256=hashlib.sha256(replacement).hexdigest(), size=len(replacement))
        )
    assert only_problem(await ledger.verify(store)) == (4, RECORD_ALTERED)


async def test_row_deleted_from_the_middle(
    ledger: EvidenceLedger, store: LocalFootageStore, db_engine: AsyncEngine
) -> None:
    rows = await recorded(ledger, store)
    async with db_engine.begin() as conn:
        await conn.execute(delete(EvidenceRecord).where(EvidenceRecord.seq == 3))
    await asyncio.to_thread(store.delete, rows[2].object_key)
    seq, what = only_problem(await ledger.verify(store))
    assert seq == 4 and what == "chain broken at seq 4 (prev_hash): record 3 is missing"


async def test_chain_rewritten_with_recomputed_hashes_breaks_the_signature(
    ledger: EvidenceLedger, store: LocalFootageStore, db_engine: AsyncEngine
) -> None:
    rows = await recorded(ledger, store)
    # A careful attacker with database access but without the key: every hash recomputed.
    replacement = b"staged footage"
    (store.root / rows[1].object_key).write_bytes(replacement)
    prev = rows[0].record_hash
    async with db_engine.begin() as conn:
        for row in rows[1:]:
            sha, size = (
                (hashlib.sha256(replacement).hexdigest(), len(replacement)) if row.seq == 2 else (row.sha256, row.size)
            )
            new_hash = ChainRecord(
                camera_id=row.camera_id,
                seq=row.seq,
                kind="segment",
                object_key=row.object_key,
                sha256=sha,
                size=size,
                recorded_at=row.recorded_at,
                reason=None,
                prev_hash=prev,
            ).record_hash()
            await conn.execute(
                update(EvidenceRecord)
                .where(EvidenceRecord.seq == row.seq)
                .values(sha256=sha, size=size, prev_hash=prev, record_hash=new_hash)
            )
            prev = new_hash
    seq, what = only_problem(await ledger.verify(store))
    assert seq == 5 and what.startswith("chain rewritten: record 5 no longer matches its signed head")


async def test_signature_forged_with_another_key(
    ledger: EvidenceLedger, store: LocalFootageStore, db_engine: AsyncEngine
) -> None:
    rows = await recorded(ledger, store)
    other = Ed25519PrivateKey.generate()
    async with db_engine.begin() as conn:
        signed_at = (await conn.execute(select(EvidenceSignature.signed_at))).scalar_one()
        forged = other.sign(signature_message("entrance", 5, rows[-1].record_hash, signed_at)).hex()
        await conn.execute(update(EvidenceSignature).values(signature=forged))
    seq, what = only_problem(await ledger.verify(store))
    assert (seq, what) == (5, SIGNATURE_INVALID)


async def test_signatures_by_another_appliance_key_are_invalid(
    ledger: EvidenceLedger, store: LocalFootageStore, db_engine: AsyncEngine
) -> None:
    await record(ledger, store, "entrance", 0)
    impostor = EvidenceLedger(make_sessionmaker(db_engine), Ed25519PrivateKey.generate())
    await impostor.sign_heads(T0)
    seq, what = only_problem(await ledger.verify(store))
    assert seq == 1 and what.startswith(f"{SIGNATURE_INVALID} (made with another key")


async def test_truncated_chain_is_named(
    ledger: EvidenceLedger, store: LocalFootageStore, db_engine: AsyncEngine
) -> None:
    rows = await recorded(ledger, store)
    async with db_engine.begin() as conn:
        await conn.execute(delete(EvidenceRecord).where(EvidenceRecord.seq >= 4))
    for row in rows[3:]:
        await asyncio.to_thread(store.delete, row.object_key)
    seq, what = only_problem(await ledger.verify(store))
    assert seq == 4 and what == "chain truncated after seq 3: records up to seq 5 had been signed and are gone"


async def test_records_signed_while_verifying_are_not_taken_for_truncation(
    ledger: EvidenceLedger, store: LocalFootageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await recorded(ledger, store, 2)
    loop = asyncio.get_running_loop()
    walk = ChainWalker.feed
    appended: list[EvidenceRecord] = []

    def feed_while_recording_goes_on(walker: ChainWalker, *batch: Any) -> None:
        # The running appliance appends and signs a segment in the middle of the walk.
        walk(walker, *batch)
        if not appended:
            appended.append(asyncio.run_coroutine_threadsafe(record(ledger, store, "entrance", 2), loop).result())
            asyncio.run_coroutine_threadsafe(ledger.sign_heads(T0 + timedelta(minutes=9)), loop).result()

    monkeypatch.setattr(ChainWalker, "feed", feed_while_recording_goes_on)
    report = await ledger.verify(store)
    assert appended and report.ok, report.cameras[0].problems
    assert report.cameras[0].records == 2


async def test_unreadable_file_is_reported(ledger: EvidenceLedger, store: LocalFootageStore) -> None:
    rows = await recorded(ledger, store, 2)
    path = store.root / rows[0].object_key
    path.unlink()
    path.mkdir()
    seq, what = only_problem(await ledger.verify(store))
    assert seq == 1 and what.startswith("file cannot be read")


async def test_time_range_checks_only_its_files_but_the_whole_link(
    ledger: EvidenceLedger, store: LocalFootageStore, db_engine: AsyncEngine
) -> None:
    rows = await recorded(ledger, store, 6)
    (store.root / rows[0].object_key).unlink()  # outside the range asked for
    start, end = rows[2].recorded_at, rows[3].recorded_at
    report = await ledger.verify(store, camera="entrance", start=start, end=end)
    assert report.ok
    assert (report.cameras[0].records, report.cameras[0].files_checked, report.cameras[0].signed_seq) == (2, 2, 6)

    (store.root / rows[3].object_key).write_bytes(b"staged")
    assert only_problem(await ledger.verify(store, camera="entrance", start=start, end=end))[0] == 4
    # The record just before the range vouches for its first link.
    async with db_engine.begin() as conn:
        await conn.execute(delete(EvidenceRecord).where(EvidenceRecord.seq == 2))
    report = await ledger.verify(store, camera="entrance", start=start, end=start)
    assert report.cameras[0].first_problem is not None
    assert report.cameras[0].first_problem.what == "chain broken at seq 3 (prev_hash): record 2 is missing"

    empty = await ledger.verify(store, start=T0 + timedelta(days=1))
    assert empty.ok and [c.records for c in empty.cameras] == [0]


async def test_deleted_after_the_range_is_accounted_for(ledger: EvidenceLedger, store: LocalFootageStore) -> None:
    rows = await recorded(ledger, store, 3)
    await ledger.record_deletion("entrance", rows[0].object_key, "retention:age", T0 + timedelta(days=30))
    await asyncio.to_thread(store.delete, rows[0].object_key)
    await ledger.sign_heads(T0 + timedelta(days=30))
    report = await ledger.verify(store, start=rows[0].recorded_at, end=rows[1].recorded_at)
    assert report.ok, report.cameras[0].problems
    assert (report.cameras[0].records, report.cameras[0].files_checked) == (2, 1)


async def test_signer_signs_at_start_every_interval_and_at_shutdown(
    ledger: EvidenceLedger, store: LocalFootageStore, db_engine: AsyncEngine
) -> None:
    async def signed_seqs() -> list[int]:
        async with db_engine.connect() as conn:
            return list((await conn.execute(text("SELECT seq FROM evidence_signatures ORDER BY seq"))).scalars())

    async def wait_for(expected: list[int]) -> None:
        for _ in range(200):
            if await signed_seqs() == expected:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"signatures {await signed_seqs()}, expected {expected}")

    async def stop(signer: asyncio.Task[None]) -> None:
        signer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await signer

    await record(ledger, store, "entrance", 0)
    every_few_ms = asyncio.create_task(ledger.run_signer(interval_s=0.05))
    await wait_for([1])
    await record(ledger, store, "entrance", 1)
    await wait_for([1, 2])
    await stop(every_few_ms)

    # With an hour between rounds, only the shutdown round can sign what comes after the start.
    await record(ledger, store, "entrance", 2)
    hourly = asyncio.create_task(ledger.run_signer(interval_s=3600))
    await wait_for([1, 2, 3])
    await record(ledger, store, "entrance", 3)
    await asyncio.sleep(0.05)
    assert await signed_seqs() == [1, 2, 3]
    await stop(hourly)
    assert await signed_seqs() == [1, 2, 3, 4]
    assert (await ledger.verify(store)).ok
