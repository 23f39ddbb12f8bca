"""Records one RTSP stream into a footage directory and database until killed (a test peer).

Usage: python -m tests.record_camera URL FOOTAGE_DIR DATABASE_URL CAMERA_ID SEGMENT_SECONDS

Prints "recording <key>" for each segment it opens, so a test knows when to kill it.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

from appliance.cameras.fanout import StreamFanout, pump
from appliance.cameras.recorder import Recorder
from appliance.storage.db import create_engine, make_sessionmaker
from appliance.storage.footage import LocalFootageStore
from appliance.storage.migrate import upgrade
from appliance.storage.models import SEGMENT_RECORDING
from appliance.storage.segments import SegmentIndex

ANNOUNCE_POLL_S = 0.05


async def main(url: str, footage: Path, db_url: str, camera_id: str, segment_seconds: float) -> None:
    engine = create_engine(db_url)
    await upgrade(engine)
    index = SegmentIndex(make_sessionmaker(engine))
    fanout = StreamFanout(camera_id)
    recorder = Recorder(
        camera_id,
        fanout.subscribe("recorder"),
        LocalFootageStore(footage),
        index,
        segment_seconds=segment_seconds,
        min_free_bytes=0,
    )
    stop = threading.Event()
    threading.Thread(target=pump, args=(url, fanout, stop), daemon=True).start()
    task = asyncio.create_task(recorder.run())
    announced: set[str] = set()
    while not task.done():
        # Announce a segment once its row is in the database, as the test checks rows against files.
        newest = await index.newest(camera_id)
        if newest is not None and newest.status == SEGMENT_RECORDING and newest.key not in announced:
            announced.add(newest.key)
            print("recording", newest.key, flush=True)
        await asyncio.sleep(ANNOUNCE_POLL_S)
    await task


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])))
