"""`appliance footage verify` as a person runs it: a real subprocess on a real database and files."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from appliance.evidence.keys import key_path, load_or_create_key, public_key_fingerprint
from appliance.evidence.ledger import EvidenceLedger
from appliance.storage.db import create_engine, make_sessionmaker
from appliance.storage.footage import LocalFootageStore
from appliance.storage.migrate import upgrade
from appliance.storage.models import EvidenceRecord
from tests.test_evidence_ledger import T0, record

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "appliance.toml"
    path.write_text(f'[appliance]\ndata_dir = "{tmp_path / "data"}"\ntimezone = "Europe/Moscow"\n', encoding="utf-8")
    return path


def data_dir(config: Path) -> Path:
    return config.parent / "data"


def verify(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", "footage", "verify", "--config", str(config), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
        check=False,
    )


def populate(config: Path, count: int) -> list[EvidenceRecord]:
    """What the running appliance leaves behind: segments, their chain, and a signed head."""

    async def run() -> list[EvidenceRecord]:
        engine = create_engine(f"sqlite+aiosqlite:///{data_dir(config) / 'appliance.db'}")
        try:
            await upgrade(engine)
            ledger = EvidenceLedger(make_sessionmaker(engine), load_or_create_key(data_dir(config)))
            store = LocalFootageStore(data_dir(config) / "footage")
            rows = [await record(ledger, store, "entrance", n) for n in range(count)]
            await ledger.sign_heads(T0 + timedelta(minutes=1))
            return rows
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_fresh_installation_has_nothing_to_verify(config: Path) -> None:
    done = verify(config)
    assert done.returncode == 0, done.stderr
    assert "Nothing to verify" in done.stdout


def test_intact_then_tampered_footage(config: Path) -> None:
    rows = populate(config, 3)
    fingerprint = public_key_fingerprint(load_or_create_key(data_dir(config)))

    intact = verify(config)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert fingerprint in intact.stdout
    assert "entrance: OK (3 records: 3 intact, 3 files re-hashed, 0 recorded deletions" in intact.stdout
    assert "signed up to seq 3 at 2026-11-27 14:01:00 MSK" in intact.stdout
    assert "RESULT: intact (1 camera checked" in intact.stdout
    assert intact.stderr == ""  # no progress bar when stderr is not a terminal

    path = data_dir(config) / "footage" / rows[1].object_key
    data = bytearray(path.read_bytes())
    data[7] ^= 0x40
    path.write_bytes(bytes(data))

    tampered = verify(config)
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert "entrance: TAMPERING FOUND" in tampered.stdout
    assert (
        f"first bad link: seq 2, {rows[1].object_key} (recorded 2026-11-27 14:00:10 MSK): "
        "content changed (sha256 differs)"
    ) in tampered.stdout
    assert "keep the drive as it is" in tampered.stdout

    # A time range that leaves the changed segment out is intact; one that holds it is not.
    before = verify(config, "--from", "2026-11-27 14:00", "--to", "2026-11-27 14:00:05")
    assert before.returncode == 0, before.stdout + before.stderr
    assert "1 record: 1 intact" in before.stdout and "2026-11-27 14:00:05 MSK" in before.stdout
    utc = verify(config, "--camera", "entrance", "--from", "2026-11-27T11:00:10+00:00", "--to", "2026-11-27")
    assert utc.returncode == 1 and "first bad link: seq 2" in utc.stdout

    (data_dir(config) / "footage" / rows[2].object_key).unlink()
    deleted = verify(config)
    assert deleted.returncode == 1
    assert "also: seq 3" in deleted.stdout and "file missing and no retention deletion recorded" in deleted.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--from", "yesterday"), "cannot read the time 'yesterday'; write it like '2026-11-27 14:00'"),
        (("--from", "2026-11-27 15:00", "--to", "2026-11-27 14:00"), "is after --to"),
        (("--verify-harder",), "unrecognized arguments"),
    ],
)
def test_bad_usage_exits_2(config: Path, args: tuple[str, ...], message: str) -> None:
    done = verify(config, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr


def test_unknown_camera_exits_2_and_names_the_known_ones(config: Path) -> None:
    populate(config, 1)
    done = verify(config, "--camera", "backdoor")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no evidence is recorded for camera 'backdoor'; cameras with evidence: entrance" in done.stderr


def test_key_problems_exit_1_with_what_to_do(config: Path) -> None:
    populate(config, 1)
    key = key_path(data_dir(config))
    key.chmod(0o644)
    loose = verify(config)
    assert loose.returncode == 1
    assert f"chmod 600 {key}" in loose.stderr

    key.unlink()
    missing = verify(config)
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr and "Restore the key from a backup" in missing.stderr
    assert not key.exists()  # verifying never creates a key
