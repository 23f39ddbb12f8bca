"""A camera that cannot be reached becomes an 'offline' event once it has been down long enough."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.gst_peer import free_port

ROOT = Path(__file__).resolve().parent.parent
OFFLINE_AFTER_S = 10


def events(db: Path) -> list[tuple[str, str, str | None]]:
    """The events table's rows; none while the daemon has not made and migrated the database yet."""
    if not db.exists():  # connecting would create it
        return []
    try:
        with sqlite3.connect(db) as conn:
            return list(conn.execute("select camera_id, kind, end_utc from events"))
    except sqlite3.OperationalError:  # no table yet, or locked by the migration
        return []


@pytest.mark.slow
def test_unreachable_camera_raises_an_offline_event(tmp_path: Path) -> None:
    dead = free_port()
    config = tmp_path / "appliance.toml"
    config.write_text(
        f'[appliance]\ndata_dir = "{tmp_path / "data"}"\n[console]\nport = {free_port()}\n'
        "[portal]\nenabled = false\n"
        f'[[cameras]]\nid = "yard"\nname = "Двор"\nmain_url = "rtsp://127.0.0.1:{dead}/main"\n'
        f"offline_after_s = {OFFLINE_AFTER_S}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance", "run", "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    db = tmp_path / "data" / "appliance.db"
    try:
        # The event is stored when it opens, OFFLINE_AFTER_S after the first failure.
        deadline = time.monotonic() + OFFLINE_AFTER_S + 30
        while not events(db) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill()
        _, stderr = proc.communicate()
    found = events(db)
    assert found and found[0][:2] == ("yard", "offline"), stderr[-2000:]
    assert "connection refused" in stderr
