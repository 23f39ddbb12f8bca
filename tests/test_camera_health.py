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
    try:
        time.sleep(OFFLINE_AFTER_S + 5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill()
        _, stderr = proc.communicate()
    with sqlite3.connect(tmp_path / "data" / "appliance.db") as conn:
        found = list(conn.execute("select camera_id, kind, end_utc from events"))
    assert found and found[0][:2] == ("yard", "offline"), stderr[-2000:]
    assert "connection refused" in stderr
