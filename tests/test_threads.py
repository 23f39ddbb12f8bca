"""Threads named for the operating system, as `top -H` and the camera benchmark read them."""

from __future__ import annotations

import threading
from pathlib import Path

from appliance.threads import OS_NAME_BYTES, start_thread


def _os_name(native_id: int) -> str:
    return Path(f"/proc/self/task/{native_id}/comm").read_text().strip()


def test_a_started_thread_carries_its_name_into_the_os_cut_to_fifteen_bytes() -> None:
    seen: dict[str, str] = {}
    done = threading.Event()

    def body() -> None:
        seen["os"] = _os_name(threading.get_native_id())
        seen["python"] = threading.current_thread().name
        done.set()

    thread = start_thread(body, "pump-entrance-hall-sub")
    assert done.wait(5)
    thread.join(5)
    assert seen["python"] == "pump-entrance-hall-sub"
    assert seen["os"] == "pump-entrance-hall-sub"[:OS_NAME_BYTES] == "pump-entrance-h"
    assert thread.daemon
