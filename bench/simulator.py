"""What the camera simulator costs: CPU of `appliance simulate` serving N cameras to clients.

For each N it starts `appliance simulate --cameras N` as its own process, plays every main and
sub stream with a cheap client (the RTSP handshake, then reading bytes without parsing them, so
the clients cost little), and reads the simulator's CPU time from /proc over a fixed window.
The baseline, measured in the same run, is what a naive simulator would pay: rendering and
encoding the same scene live, per camera (main + sub), in CPU-seconds per second of video.

Run: .venv/bin/python bench/simulator.py [--cameras 1,8,32,48] [--seconds 8]
The first run encodes the scene into the cache (~25 s); later runs reuse it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from appliance.simulator.encode import MAIN, SUB, EncodeSettings, default_cache_dir, encode_frames  # noqa: E402
from appliance.simulator.probe import RtspProbe  # noqa: E402
from appliance.simulator.scenes import get_scene  # noqa: E402

FPS = 15
BASELINE_FRAMES = 45
"""Frames of each stream encoded live for the baseline (3 s of video at 15 fps)."""
WARMUP = 2.0
"""Seconds between the last client starting to play and the measurement."""
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Row:
    cameras: int
    clients: int
    cpu_percent: float
    mbit_per_s: float
    rss_mb: float
    starved: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def live_encode_cost(scene_name: str) -> float:
    """CPU-seconds per second of video to render and encode one camera's main and sub live."""
    scene = get_scene(scene_name)
    spent = 0.0
    for profile in (MAIN, SUB):
        before = time.process_time()  # all threads of this process, x264's included
        encode_frames(scene, EncodeSettings(profile, FPS), BASELINE_FRAMES)
        spent += time.process_time() - before
    return spent / (BASELINE_FRAMES / FPS)


async def start_simulator(cameras: int, port: int, scene: str, cache: Path) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance", "simulate", "--cameras", str(cameras), "--port", str(port),
        "--scene", scene, "--fps", str(FPS), "--cache-dir", str(cache),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        for _ in range(cameras):  # one line per camera once it serves
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=180)
            if not line:
                raise RuntimeError(f"the simulator exited with {await proc.wait()} before serving")
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    return proc


async def measure(cameras: int, seconds: float, scene: str, cache: Path) -> Row:
    port = free_port()
    proc = await start_simulator(cameras, port, scene, cache)
    probes = [
        RtspProbe(f"rtsp://127.0.0.1:{port}/cam{i + 1}/{name}") for i in range(cameras) for name in ("main", "sub")
    ]
    try:
        for p in probes:
            await p.connect()
            await p.play()
        await asyncio.gather(*(p.drain(WARMUP) for p in probes))
        cpu_before, wall_before = cpu_seconds(proc.pid), time.monotonic()
        received = await asyncio.gather(*(p.drain(seconds) for p in probes))
        cpu = cpu_seconds(proc.pid) - cpu_before
        wall = time.monotonic() - wall_before
        return Row(
            cameras=cameras,
            clients=len(probes),
            cpu_percent=100 * cpu / wall,
            mbit_per_s=sum(received) * 8 / wall / 1e6,
            rss_mb=rss_mb(proc.pid),
            starved=sum(1 for r in received if r == 0),
        )
    finally:
        for p in probes:
            await p.close()
        await stop(proc)


async def stop(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGTERM)
    if await asyncio.wait_for(proc.wait(), timeout=10) != 0:
        raise RuntimeError(f"the simulator exited with {proc.returncode} on SIGTERM")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cameras", default="1,8,32,48", help="comma-separated camera counts")
    parser.add_argument("--seconds", type=float, default=8.0, help="measurement window per count")
    parser.add_argument("--scene", default="demo")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    args = parser.parse_args()
    counts = [int(c) for c in args.cameras.split(",")]

    print(f"simulator benchmark: scene {args.scene}, {FPS} fps, main 1280x720 + sub 640x360 per camera, "
          f"{os.cpu_count()} CPUs", flush=True)  # fmt: skip
    started = time.monotonic()
    await stop(await start_simulator(1, free_port(), args.scene, args.cache_dir))  # encodes on a first run
    print(f"cache ready in {time.monotonic() - started:.1f} s", flush=True)
    baseline = await asyncio.to_thread(live_encode_cost, args.scene)
    print(f"baseline: rendering + encoding one camera live costs {100 * baseline:.0f} % of a core", flush=True)

    rows = []
    for n in counts:
        rows.append(await measure(n, args.seconds, args.scene, args.cache_dir))
    header = (
        f"{'cameras':>7} {'clients':>7} {'sim CPU %':>9} {'per cam %':>9} {'Mbit/s':>7} {'RSS MB':>7} "
        f"{'live-encode %':>13} {'saving':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        naive = 100 * baseline * r.cameras
        print(
            f"{r.cameras:>7} {r.clients:>7} {r.cpu_percent:>9.1f} {r.cpu_percent / r.cameras:>9.2f} "
            f"{r.mbit_per_s:>7.1f} {r.rss_mb:>7.0f} {naive:>13.0f} {naive / max(r.cpu_percent, 0.01):>6.0f}x"
        )
        if r.starved:
            print(f"  warning: {r.starved} clients received nothing")
    print("sim CPU %: the simulator process, % of one core; live-encode %: what rendering and encoding the "
          "same cameras live would need; saving: live-encode / sim CPU.")  # fmt: skip
    print(f"total time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
