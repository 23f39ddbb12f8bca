"""What the whole camera pipeline costs: the daemon with N simulated cameras, against two baselines.

For each N the benchmark starts the camera simulator (720p main + 360p sub at 15 fps per camera,
scene `store_day_person`: a shopper enters at 4 s of every 20 s loop, cameras staggered by
i * 20 / N s as `appliance simulate` does) in a process of its own, then in turn, each over the
same measurement window, with the same simulator:

1. the daemon (`python -m appliance run`) recording every main stream and analysing every sub
   stream: its CPU (user + sys of the whole process, /proc/<pid>/stat), its peak RSS, the
   simulator's CPU separately, frames the simulator could not deliver, gaps in the recorded
   footage (from the segments table), and the event latency: events.created_at minus the moment
   the shopper starts entering the picture (the simulator's loop start + the scene's enters_at);
2. the floor: one process pulling the same N sub streams with PyAV, one thread per stream,
   decoding every frame and doing nothing else (the issue's CPU target is against this one);
3. the pipeline floor: one process doing the least any recorder + analyser in Python/PyAV must
   do: per camera, a thread decoding every frame of the sub stream (as the floor) and a thread
   copying the main stream's packets into ~10 s fragmented MP4 files cut at keyframes (no
   re-encoding, no fanout, index, hashing, fsync or timestamp repair): how much of the daemon's
   CPU is unavoidable, given that it must record the main stream as well;
4. Debian's Motion 4.5 (for `--motion-counts`, when /usr/bin/motion is or can be installed):
   sub stream analysed, main stream recorded with movie_passthrough on.

Dropped packets: the daemon's fanout drop counters are not exposed (its /metrics has none), so
the benchmark measures what a drop leaves behind instead: frames the simulator's RTSP server did
not get out to the daemon (a reader too slow for its socket) and holes in the recorded footage
(the recorder starts a new file after a drop, so a drop shows as missing seconds). An analyser
falling behind shows as event latency.

Run: .venv/bin/python bench/cameras.py [--counts 1,8,16,32,48] [--seconds 40] [--quick]
The default run takes about 15 minutes on the 2-core appliance. `--latency` runs the daemon phase
alone (no floor, no Motion) for counts 1,8,16 and 60 s windows, and reports the event latency in
detail: enough shopper entries for a p95 in about 4 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, NoReturn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from appliance.simulator.scene import HappeningKind  # noqa: E402
from appliance.simulator.scenes import SCENES  # noqa: E402

FPS = 15
"""Frame rate of both simulated streams (the simulator's default)."""
SCENE = "store_day_person"
CORES = os.cpu_count() or 1
CLK_TCK = os.sysconf("SC_CLK_TCK")

DAEMON_WARMUP_S = 10.0
"""Seconds between every camera being online and the measurement (the detectors settle)."""
FLOOR_WARMUP_S = 3.0
"""Seconds between starting a floor process and its measurement (RTSP connects take ~1 s)."""
FLOOR_RTSP_OPTIONS = {"rtsp_transport": "tcp", "timeout": "5000000"}
"""RTSP options of both floors: TCP as the daemon, and FFmpeg's socket read timeout (µs)."""
PIPELINE_SEGMENT_S = 10.0
"""The pipeline floor's files end at the first keyframe after this long (the recorder's default)."""
MOTION_WARMUP_S = 8.0
"""Seconds between starting Motion and its measurement."""
ONLINE_TIMEOUT_S = 40.0
"""How long the daemon may take until /metrics shows every camera up."""
EVENT_GRACE_S = 4.0
"""The daemon keeps running this long after the window, so that an event for a shopper who
entered just before the window closed is still written (and counted)."""
MATCH_S = 8.0
"""An event created this long after a shopper entered still belongs to that entry (the shopper
stays 10 s); later events count as unmatched."""
EARLY_S = 0.5
"""An event created up to this long before the scripted entry is matched to it (clock rounding;
the figure's first pixels appear a frame after enters_at)."""
RECORDING_HOLE_S = 0.5
"""A pause between consecutive recorded segments longer than this is counted as a hole."""
STOP_TIMEOUT_S = 15.0
SAMPLE_PERIOD_S = 1.0
"""How often RSS is sampled during a window (its peak is reported)."""

# Targets of the issue.
TARGET_CAMERAS = 32
TARGET_MACHINE_PERCENT = 80.0
TARGET_FLOOR_RATIO = 1.3
TARGET_LATENCY_P95_S = 0.6
TARGET_RSS_PER_CAMERA_MB = 40.0

EVENTS_MERGE_GAP_S = 1.0
EVENTS_POST_ROLL_S = 1.0
"""Short, so that every pass of the shopper is an event of its own (the scene is still for 10 s
between passes)."""

MOTION_BIN = Path("/usr/bin/motion")
MOTION_DIST_CONF = Path("/etc/motion/motion.conf")
MOTION_BAD_LEVELS = ("EMG", "ALR", "CRT", "ERR", "WRN")
MOTION_OVERRIDDEN = {
    "daemon", "setup_mode", "log_file", "log_level", "target_dir", "video_device", "videodevice",
    "webcontrol_port", "stream_port", "movie_output", "movie_passthrough", "picture_output", "camera",
    "camera_dir", "width", "height",
}  # fmt: skip
"""Keys of Debian's motion.conf that the benchmark sets itself; everything else (threshold,
despeckle, framerate, ...) stays at Debian's defaults."""


# ------------------------------------------------------------------- measurement ---


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU time of the process (all its threads), or of its thread `tid`."""
    path = Path(f"/proc/{pid}/stat") if tid is None else Path(f"/proc/{pid}/task/{tid}/stat")
    fields = path.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


STAGES = (
    ("sub demux+analysis", re.compile(r"pump-.*-s(u|ub)?$")),
    ("main demux", re.compile(r"pump-.*-m(a|ai|ain)?$")),
    ("recorders", re.compile(r"recorder-")),
    ("analyser threads", re.compile(r"analyser-")),
    ("renditions", re.compile(r"renditions-")),
)
"""The daemon's threads by stage, from their OS names (appliance/threads.py; cut to 15 bytes).
Analyser threads only keep time for a sub stream analysed inline, and analyse a main stream.
The rest ("other") are unnamed: the event loop's executor (clips, files) and the database's."""


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far of each stage of the daemon (STAGES), its event loop and the rest."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            seconds = cpu_seconds(pid, int(task.name))
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
        stage = "event loop" if int(task.name) == pid else next((s for s, rx in STAGES if rx.match(name)), "other")
        out[stage] = out.get(stage, 0.0) + seconds
    return out


@dataclass
class Usage:
    cpu_percent: float
    """Of one core."""
    peak_rss_mb: float


Target = tuple[int, int | None]
"""A process id, and a thread id of it to measure that thread alone (None: the whole process)."""


def measure(pids: dict[str, Target], seconds: float) -> dict[str, Usage]:
    """CPU % (of one core) of each process or thread over `seconds`, and its process's peak RSS."""
    before = {name: cpu_seconds(*target) for name, target in pids.items()}
    peak = dict.fromkeys(pids, 0.0)
    start = time.monotonic()
    end = start + seconds
    while True:
        for name, (pid, _) in pids.items():
            peak[name] = max(peak[name], rss_mb(pid))
        now = time.monotonic()
        if now >= end:
            break
        time.sleep(min(SAMPLE_PERIOD_S, end - now))
    wall = time.monotonic() - start
    return {name: Usage(100 * (cpu_seconds(*t) - before[name]) / wall, peak[name]) for name, t in pids.items()}


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: with few samples it is an observed value)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[Any], what: str) -> str | None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT_S; returns a note when it did not exit cleanly."""
    if proc.poll() is not None:
        return f"{what} had exited already with {proc.returncode}"
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return f"{what} did not stop within {STOP_TIMEOUT_S:.0f} s of SIGTERM and was killed"
    return None if code == 0 else f"{what} exited with {code} on SIGTERM"


# --------------------------------------------------------------------- simulator ---


async def _serve_simulator(cameras: int, scene: str) -> int:
    """The simulator process: like `appliance simulate`, but it also tells the benchmark each
    camera's loop start and, on a `stats` line on stdin, what every client was sent and dropped."""
    import logging

    from appliance.simulator.server import SimCamera, SimulatorServer

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    duration = SCENES[scene].duration
    # The same staggering as the CLI (appliance/simulator/cli.py), so the load is spread alike.
    specs = [SimCamera(f"cam{i + 1}", scene, phase=i * duration / cameras) for i in range(cameras)]
    server = SimulatorServer(specs, "127.0.0.1", 0, fps=FPS)
    await server.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    for cam in specs:
        info = {
            "camera": cam.camera_id,
            "main": server.url(cam.camera_id, "main"),
            "sub": server.url(cam.camera_id, "sub"),
            "loop_start": server.loop_start(cam.camera_id).timestamp(),
            "duration": server.loop_duration(cam.camera_id),
        }
        print(json.dumps(info), flush=True)
    print("ready", flush=True)

    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def commands() -> None:
        while line := await reader.readline():
            if line.strip() == b"stats":
                clients = [
                    {"stream": c.stream, "peer": c.peer, "sent": c.frames_sent, "dropped": c.frames_dropped}
                    for c in server.clients()
                ]
                print(json.dumps({"t": time.time(), "clients": clients}), flush=True)
        stop.set()  # the benchmark went away

    task = asyncio.create_task(commands())
    try:
        await stop.wait()
    finally:
        task.cancel()
        await server.stop()
    return 0


@dataclass(frozen=True)
class SimCameraInfo:
    camera: str
    main: str
    sub: str
    loop_start: float
    """UTC timestamp of a pass through the loop's start; passes repeat every `duration`."""
    duration: float


@dataclass(frozen=True)
class ClientStats:
    t: float
    sent: dict[str, int]
    """Frames sent per `<camera>/<stream>@<peer>`."""
    dropped: dict[str, int]


class Simulator:
    """The simulator process and its line protocol."""

    def __init__(self, cameras: int, scene: str, log: IO[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve-simulator", "--counts", str(cameras),
             "--scene", scene],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
        )  # fmt: skip
        self.cameras: list[SimCameraInfo] = []
        assert self.proc.stdout is not None
        while (line := self.proc.stdout.readline().strip()) != "ready":
            if not line:
                raise RuntimeError(f"the simulator exited with {self.proc.wait()} before serving; see its log")
            self.cameras.append(SimCameraInfo(**json.loads(line)))

    def stats(self) -> ClientStats:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        data = json.loads(self.proc.stdout.readline())
        sent, dropped = {}, {}
        for c in data["clients"]:
            key = f"{c['stream']}@{c['peer']}"
            sent[key], dropped[key] = c["sent"], c["dropped"]
        return ClientStats(data["t"], sent, dropped)

    def stop(self) -> str | None:
        return stop_process(self.proc, "the simulator")


@dataclass
class Delivery:
    frames_short: int = 0
    """Frames not sent to clients playing through the whole window (15 fps × window − sent;
    includes the frames skipped up to the next keyframe after a drop)."""
    frames_dropped: int = 0
    """The simulator's own count of frames dropped for slow readers."""
    clients: int = 0


def delivery(before: ClientStats, after: ClientStats) -> Delivery:
    out = Delivery()
    expected = FPS * (after.t - before.t)
    for key, sent in after.sent.items():
        if key not in before.sent:
            continue  # a client that (re)connected during the window
        out.clients += 1
        # One frame of slack: the two samples fall between frame ticks.
        out.frames_short += max(0, math.floor(expected - (sent - before.sent[key])) - 1)
        out.frames_dropped += after.dropped[key] - before.dropped[key]
    return out


# ------------------------------------------------------------------------ daemon ---


def daemon_config(data_dir: Path, cameras: Sequence[SimCameraInfo], console_port: int) -> str:
    lines = [
        "[appliance]",
        'name = "bench"',
        'timezone = "Europe/Moscow"',
        f'data_dir = "{data_dir}"',
        "",
        "[console]",
        "enabled = true",
        'host = "127.0.0.1"',
        f"port = {console_port}",
        "",
        "[portal]",
        "enabled = false",
        "",
        "[logging]",
        'level = "warning"',
        'format = "json"',
    ]
    for cam in cameras:
        lines += [
            "",
            "[[cameras]]",
            f'id = "{cam.camera}"',
            f'name = "{cam.camera}"',
            f'main_url = "{cam.main}"',
            f'sub_url = "{cam.sub}"',
            "",
            "[cameras.events]",
            f"merge_gap_s = {EVENTS_MERGE_GAP_S}",
            f"post_roll_s = {EVENTS_POST_ROLL_S}",
        ]
    return "\n".join(lines) + "\n"


def read_metrics(port: int) -> dict[str, dict[str, float]]:
    """`{family: {camera: value}}` of the per-camera families of /metrics; {} when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if line.startswith("#") or 'camera="' not in line:
            continue
        name, rest = line.split("{", 1)
        camera = rest.split('camera="', 1)[1].split('"', 1)[0]
        out.setdefault(name, {})[camera] = float(line.rsplit(" ", 1)[1])
    return out


def wait_online(proc: subprocess.Popen[Any], port: int, cameras: int) -> float:
    """Seconds until /metrics shows every camera up; raises if the daemon dies or it takes too long."""
    start = time.monotonic()
    while time.monotonic() - start < ONLINE_TIMEOUT_S:
        if proc.poll() is not None:
            raise RuntimeError(f"the daemon exited with {proc.returncode} while starting; see its log")
        up = read_metrics(port).get("appliance_camera_up", {})
        if len(up) == cameras and all(v == 1 for v in up.values()):
            return time.monotonic() - start
        time.sleep(0.5)
    raise RuntimeError(f"not every camera was online {ONLINE_TIMEOUT_S:.0f} s after the daemon started")


def _utc_ts(text: str) -> float:
    """A UTC time as SQLite holds it (without an offset) as a timestamp."""
    value = datetime.fromisoformat(text)
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


@dataclass
class Latency:
    samples: list[float] = field(default_factory=list)
    """events.created_at - entry, per matched entry."""
    detect: list[float] = field(default_factory=list)
    """events.start_utc (the first moving frame the tracker counted) - entry, per matched entry:
    how much of the latency is the figure becoming visible and persistent, not the pipeline."""
    entries: int = 0
    """Shopper entries in the window (over all cameras)."""
    missed: int = 0
    """Entries without an event within MATCH_S."""
    unmatched: int = 0
    """Motion events created in the window that belong to no entry."""
    other: dict[str, int] = field(default_factory=dict)
    """Events of other kinds (tamper, offline) in the window."""


def entry_times(cam: SimCameraInfo, scene: str, t0: float, t1: float) -> list[float]:
    """When (UTC timestamps) a figure started entering the camera's picture within [t0, t1)."""
    enters = [h.t for h in SCENES[scene].timeline() if h.kind is HappeningKind.FIGURE_ENTERS]
    first = math.floor((t0 - cam.loop_start) / cam.duration) - 1
    out = []
    for k in range(first, first + math.ceil((t1 - t0) / cam.duration) + 3):
        for t in enters:
            at = cam.loop_start + k * cam.duration + t
            if t0 <= at < t1:
                out.append(at)
    return sorted(out)


def event_latency(db: Path, cameras: Sequence[SimCameraInfo], scene: str, t0: float, t1: float) -> Latency:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT camera_id, kind, start_utc, created_at FROM events").fetchall()
    motion: dict[str, list[tuple[float, float]]] = {}
    out = Latency()
    for camera, kind, start_text, created_text in rows:
        created = _utc_ts(created_text)
        if kind == "motion":
            motion.setdefault(camera, []).append((created, _utc_ts(start_text)))
        elif t0 - EARLY_S <= created < t1 + EVENT_GRACE_S:
            out.other[kind] = out.other.get(kind, 0) + 1
    for cam in cameras:
        events = sorted(motion.get(cam.camera, []))
        used: set[int] = set()
        for entry in entry_times(cam, scene, t0, t1):
            out.entries += 1
            match = next(
                (i for i, (at, _) in enumerate(events) if i not in used and entry - EARLY_S <= at <= entry + MATCH_S),
                None,
            )
            if match is None:
                out.missed += 1
                continue
            used.add(match)
            created, start = events[match]
            out.samples.append(created - entry)
            out.detect.append(start - entry)
        out.unmatched += sum(1 for i, (at, _) in enumerate(events) if i not in used and t0 <= at < t1 + EVENT_GRACE_S)
    return out


@dataclass
class Recording:
    missing_s: float = 0.0
    """Seconds of the window not covered by any recorded segment, over all cameras."""
    holes: int = 0
    segments: int = 0
    unfinished: int = 0
    """Segments still marked as recording after the daemon stopped (it was killed, or exited
    without finalising them): counted as covering the window, since they were being written."""


def recording_coverage(db: Path, cameras: Sequence[SimCameraInfo], t0: float, t1: float) -> Recording:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT camera_id, start_utc, end_utc FROM segments WHERE stream = 'main'").fetchall()
    spans: dict[str, list[tuple[float, float]]] = {}
    out = Recording()
    for camera, start, end in rows:
        begin = _utc_ts(start)
        if end is None and begin < t1:
            out.unfinished += 1
        spans.setdefault(camera, []).append((begin, t1 if end is None else _utc_ts(end)))
    for cam in cameras:
        covered_until = t0
        for start, end in sorted(spans.get(cam.camera, [])):
            if end <= t0 or start >= t1:
                continue
            out.segments += 1
            if start - covered_until > RECORDING_HOLE_S:
                out.holes += 1
            out.missing_s += max(0.0, start - covered_until)
            covered_until = max(covered_until, min(end, t1))
        if t1 - covered_until > RECORDING_HOLE_S:
            out.holes += 1
        out.missing_s += max(0.0, t1 - covered_until)
    return out


def log_summary(path: Path) -> list[str]:
    """Warnings and errors of the daemon's JSON log, counted by message."""
    counts: dict[str, int] = {}
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
            key = f"{record.get('level', '?')}: {record.get('message', record.get('msg', line))}"
        except (json.JSONDecodeError, AttributeError):
            key = f"(not JSON) {line[:100]}"
        counts[key] = counts.get(key, 0) + 1
    return [f"{n} x {key}" for key, n in sorted(counts.items(), key=lambda kv: -kv[1])]


@dataclass
class DaemonResult:
    daemon: Usage
    loop: Usage
    """The daemon's main thread alone: the event loop (web, database, event handling)."""
    simulator: Usage
    delivery: Delivery
    recording: Recording
    latency: Latency
    online_s: float
    min_fps: float
    notes: list[str]
    stages: dict[str, float] = field(default_factory=dict)
    """CPU % of one core per stage of the daemon (thread_cpu) over the window."""


def run_daemon(sim: Simulator, scene: str, seconds: float, work: Path) -> DaemonResult:
    data_dir = work / "data"
    port = free_port()
    config = work / "appliance.toml"
    config.write_text(daemon_config(data_dir, sim.cameras, port))
    log_path = work / "daemon.log"
    notes: list[str] = []
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "appliance", "run", "--config", str(config)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            try:
                online_s = wait_online(proc, port, len(sim.cameras))
            except RuntimeError as exc:
                log.flush()
                raise RuntimeError(f"{exc}; daemon log: {'; '.join(log_summary(log_path)[:5]) or 'empty'}") from None
            time.sleep(DAEMON_WARMUP_S)
            before = sim.stats()
            t0 = time.time()
            targets = {"daemon": (proc.pid, None), "loop": (proc.pid, proc.pid), "simulator": (sim.proc.pid, None)}
            stages_before, started = thread_cpu(proc.pid), time.monotonic()
            usage = measure(targets, seconds)
            stages_after, elapsed = thread_cpu(proc.pid), time.monotonic() - started
            t1 = time.time()
            after = sim.stats()
            fps = read_metrics(port).get("appliance_camera_fps", {})
            time.sleep(EVENT_GRACE_S)
        finally:
            note = stop_process(proc, "the daemon")
            if note:
                notes.append(note)
    db = data_dir / "appliance.db"
    notes += [f"daemon log: {line}" for line in log_summary(log_path)]
    return DaemonResult(
        daemon=usage["daemon"],
        loop=usage["loop"],
        simulator=usage["simulator"],
        delivery=delivery(before, after),
        recording=recording_coverage(db, sim.cameras, t0, t1),
        latency=event_latency(db, sim.cameras, scene, t0, t1),
        online_s=online_s,
        min_fps=min(fps.values(), default=0.0),
        notes=notes,
        stages={k: 100 * (v - stages_before.get(k, 0.0)) / elapsed for k, v in stages_after.items()},
    )


# ------------------------------------------------------------------------- floor ---


FloorJob = tuple[str, Callable[[threading.Event], None]]
"""A stream's URL, and what a floor process does with it until the event is set."""


def _floor_process(jobs: Sequence[FloorJob], report: Callable[[], dict[str, Any]]) -> NoReturn:
    """Both floor processes: each job in a thread of its own until SIGTERM, then `report()` and the
    jobs' errors printed as one line of JSON."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    errors: list[str] = []

    def run(url: str, job: Callable[[threading.Event], None]) -> None:
        try:
            job(stop)
        except Exception as exc:
            errors.append(f"{url}: {exc}")

    for url, job in jobs:
        threading.Thread(target=run, args=(url, job), daemon=True).start()
    while not stop.wait(0.2):
        pass
    print(json.dumps({**report(), "errors": errors}), flush=True)
    os._exit(0)  # closing RTSP sessions from blocked demux threads can take a read timeout


def _decode_stream(url: str, frames: list[int], i: int, stop: threading.Event) -> None:
    """Decode every frame of `url`, counted in frames[i]."""
    import av

    with av.open(url, options=FLOOR_RTSP_OPTIONS) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1  # one thread per stream, as the analyser
        for packet in container.demux(stream):
            for _ in packet.decode():
                frames[i] += 1
            if stop.is_set():
                return


def _remux_stream(url: str, out_dir: Path, packets: list[int], i: int, stop: threading.Event) -> None:
    """Copy the packets of `url` into fragmented MP4 files in `out_dir`, counted in packets[i]."""
    import av
    from av.container import OutputContainer

    with av.open(url, options=FLOOR_RTSP_OPTIONS) as container:
        stream = container.streams.video[0]
        out: OutputContainer | None = None
        files = base = 0
        for packet in container.demux(stream):
            if stop.is_set():
                return
            if packet.pts is None:
                continue  # the demuxer's empty packet at the end of the stream
            dts = packet.dts if packet.dts is not None else packet.pts
            if packet.is_keyframe and (out is None or (packet.pts - base) * packet.time_base >= PIPELINE_SEGMENT_S):
                if out is not None:
                    out.close()
                files += 1
                # The recorder's movflags; the simulator's 1 s GOPs make its 1 s fragments too.
                out = av.open(
                    str(out_dir / f"{i}-{files}.mp4"), "w", format="mp4",
                    options={"movflags": "frag_keyframe+empty_moov+default_base_moof"},
                )  # fmt: skip
                copy = out.add_stream_from_template(stream)
                base = dts
            if out is None:
                continue  # a file starts at a keyframe
            packet.dts, packet.pts = dts - base, packet.pts - base
            packet.stream = copy
            out.mux(packet)
            packets[i] += 1


def _decode_floor(urls: Sequence[str]) -> NoReturn:
    """The floor process: decode every frame of each URL with PyAV, one thread per stream, until
    SIGTERM; then print the frames decoded per stream as JSON."""
    frames = [0] * len(urls)
    jobs = [(url, functools.partial(_decode_stream, url, frames, i)) for i, url in enumerate(urls)]
    _floor_process(jobs, lambda: {"frames": frames})


def _pipeline_floor(pairs: Sequence[tuple[str, str]], out_dir: Path) -> NoReturn:
    """The pipeline floor process: per (main, sub) URL pair, one thread decoding every frame of the
    sub stream as the floor does and one remuxing the main stream into files of about
    PIPELINE_SEGMENT_S in `out_dir`, until SIGTERM; then print the frames decoded per sub stream
    and the packets written per main stream as JSON."""
    frames = [0] * len(pairs)
    packets = [0] * len(pairs)
    jobs: list[FloorJob] = []
    for i, (main, sub) in enumerate(pairs):
        jobs.append((sub, functools.partial(_decode_stream, sub, frames, i)))
        jobs.append((main, functools.partial(_remux_stream, main, out_dir, packets, i)))
    _floor_process(jobs, lambda: {"frames": frames, "packets": packets})


@dataclass
class FloorResult:
    usage: Usage
    fps_per_stream: float
    """Frames decoded per sub stream per second (connect included)."""
    pps_per_stream: float | None
    """Packets written per main stream per second (connect included); None for the decode floor."""
    notes: list[str]


def _measure_floor(mode: Sequence[str], seconds: float, what: str) -> FloorResult:
    """Start this script in a floor `mode` and measure it like the daemon, after FLOOR_WARMUP_S."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), *mode],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    time.sleep(FLOOR_WARMUP_S)
    assert proc.stdout is not None
    started = time.monotonic()
    usage = measure({what: (proc.pid, None)}, seconds)[what]
    proc.send_signal(signal.SIGTERM)
    report = json.loads(proc.stdout.readline() or '{"errors": ["no report"]}')
    lifetime = time.monotonic() - started + FLOOR_WARMUP_S
    proc.wait(timeout=STOP_TIMEOUT_S)

    def per_stream(counts: list[int]) -> float:
        return sum(counts) / max(1, len(counts)) / lifetime

    packets = report.get("packets")
    return FloorResult(
        usage,
        per_stream(report.get("frames", [])),
        None if packets is None else per_stream(packets),
        [f"{what}: {e}" for e in report["errors"]],
    )


def run_floor(sim: Simulator, seconds: float) -> FloorResult:
    return _measure_floor(["--decode-floor", *(c.sub for c in sim.cameras)], seconds, "floor")


def run_pipeline_floor(sim: Simulator, seconds: float) -> FloorResult:
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-floor-") as out_dir:
        urls = [url for c in sim.cameras for url in (c.main, c.sub)]
        return _measure_floor(["--pipeline-floor", *urls, "--pipeline-dir", out_dir], seconds, "pipeline floor")


# ------------------------------------------------------------------------ Motion ---


def ensure_motion() -> str | None:
    """None when Motion can run, else why not."""
    if MOTION_BIN.exists():
        return None
    if shutil.which("apt-get") is None:
        return "no /usr/bin/motion and no apt-get to install it"
    print("installing Debian's motion package ...", flush=True)
    result = subprocess.run(
        ["apt-get", "install", "-y", "motion"],
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0 or not MOTION_BIN.exists():
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["?"]
        return f"apt-get install motion failed ({last[0]})"
    return None


def motion_config(work: Path, cameras: Sequence[SimCameraInfo]) -> Path:
    """Debian's motion.conf with paths and ports of our own and one camera file per camera."""
    lines = []
    if MOTION_DIST_CONF.exists():
        for line in MOTION_DIST_CONF.read_text().splitlines():
            words = line.split()
            if words and not words[0].startswith(("#", ";")) and words[0] not in MOTION_OVERRIDDEN:
                lines.append(line)
    lines += [
        "daemon off",
        "setup_mode off",
        f"log_file {work / 'motion.log'}",
        "log_level 5",
        f"target_dir {work / 'footage'}",
        "webcontrol_port 0",
        "stream_port 0",
        "movie_output on",
        "movie_passthrough on",
        "picture_output off",
    ]
    for i, cam in enumerate(cameras, start=1):
        path = work / f"{cam.camera}.conf"
        path.write_text(
            f"camera_id {i}\ncamera_name {cam.camera}\nnetcam_url {cam.sub}\nnetcam_high_url {cam.main}\n"
            f"target_dir {work / 'footage' / cam.camera}\n"
        )
        lines.append(f"camera {path}")
    conf = work / "motion.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


@dataclass
class MotionResult:
    usage: Usage
    delivery: Delivery
    movies: int
    notes: list[str]


def motion_log_summary(path: Path) -> list[str]:
    """Motion's warnings and errors, counted by text."""
    counts: dict[str, int] = {}
    for line in path.read_text(errors="replace").splitlines():
        # "[1:nc1:cam1] [ERR] [NET] [date] netcam_rtsp_...: text"; start-up notices pass the level too
        if not any(f"[{level}]" in line for level in MOTION_BAD_LEVELS):
            continue
        key = re.sub(r"\[[A-Z][a-z]{2} +\d+ [\d:]+\] ", "", line)
        counts[key] = counts.get(key, 0) + 1
    return [f"{n} x {key}" for key, n in sorted(counts.items(), key=lambda kv: -kv[1])[:8]]


def run_motion(sim: Simulator, seconds: float, work: Path) -> MotionResult:
    conf = motion_config(work, sim.cameras)
    notes: list[str] = []
    proc = subprocess.Popen(
        [str(MOTION_BIN), "-n", "-c", str(conf)], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        time.sleep(MOTION_WARMUP_S)
        if proc.poll() is not None:
            log = work / "motion.log"
            said = "; ".join(motion_log_summary(log)[:3]) if log.exists() else "no log"
            raise RuntimeError(f"Motion exited with {proc.returncode} ({said})")
        before = sim.stats()
        usage = measure({"motion": (proc.pid, None)}, seconds)["motion"]
        after = sim.stats()
    finally:
        note = stop_process(proc, "Motion")
        if note:
            notes.append(note)
    movies = sum(1 for p in (work / "footage").rglob("*") if p.is_file()) if (work / "footage").exists() else 0
    log = work / "motion.log"
    if log.exists():
        notes += [f"Motion log: {line}" for line in motion_log_summary(log)]
    got = delivery(before, after)
    if got.clients < 2 * len(sim.cameras):
        notes.append(f"Motion played {got.clients} of {2 * len(sim.cameras)} streams through the window")
    return MotionResult(usage, got, movies, notes)


# ------------------------------------------------------------------------ report ---


@dataclass
class Row:
    cameras: int
    daemon: DaemonResult
    floor: FloorResult
    pipeline: FloorResult
    motion: MotionResult | None
    motion_skipped: str | None

    @property
    def dropped(self) -> int:
        return self.daemon.delivery.frames_short + self.daemon.recording.holes

    @property
    def floor_ratio(self) -> float:
        return self.daemon.daemon.cpu_percent / max(self.floor.usage.cpu_percent, 0.01)

    @property
    def pipeline_ratio(self) -> float:
        return self.daemon.daemon.cpu_percent / max(self.pipeline.usage.cpu_percent, 0.01)


def _fmt(value: float | None, spec: str, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}{spec}}"


def print_report(rows: list[Row], seconds: float, scene: str) -> None:
    print()
    print(f"camera pipeline: scene {scene}, main 1280x720 + sub 640x360 at {FPS} fps per camera, "
          f"{seconds:g} s windows, {CORES} CPUs")  # fmt: skip
    header = (
        f"{'cams':>4} {'daemon%':>7} {'of2core':>7} {'sim%':>5} {'RSS MB':>6} {'/cam':>5} {'dropped':>7} "
        f"{'events':>6} {'missed':>6} {'p50 s':>5} {'p95 s':>5} {'floor%':>6} {'/floor':>6} {'pipe%':>6} {'/pipe':>5} "
        f"{'Motion%':>7} {'/Motion':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        d = r.daemon
        lat = d.latency.samples
        motion = r.motion.usage.cpu_percent if r.motion else None
        print(
            f"{r.cameras:>4} {d.daemon.cpu_percent:>7.1f} {d.daemon.cpu_percent / CORES:>7.1f} "
            f"{d.simulator.cpu_percent:>5.1f} {d.daemon.peak_rss_mb:>6.0f} {d.daemon.peak_rss_mb / r.cameras:>5.1f} "
            f"{r.dropped:>7} {len(lat):>6} {d.latency.missed:>6} "
            f"{_fmt(percentile(lat, 50) if lat else None, '.2f', 5)} "
            f"{_fmt(percentile(lat, 95) if lat else None, '.2f', 5)} "
            f"{r.floor.usage.cpu_percent:>6.1f} {r.floor_ratio:>6.2f} "
            f"{r.pipeline.usage.cpu_percent:>6.1f} {r.pipeline_ratio:>5.2f} {_fmt(motion, '.1f', 7)} "
            f"{_fmt(d.daemon.cpu_percent / motion if motion else None, '.2f', 7)}"
        )
    print("daemon%, sim%, floor%, pipe%, Motion%: CPU of that process in % of one core; of2core: daemon% / "
          f"{CORES}; RSS: peak VmRSS of the daemon; dropped: frames the simulator could not send to the daemon "
          "+ holes in the recorded footage; events: shopper entries with a motion event (latency = "
          "events.created_at - entry); floor: decoding the sub streams alone; pipe (pipeline floor): the floor "
          "plus copying each main stream into ~10 s fragmented MP4 files, the least any recorder + analyser "
          "in Python/PyAV does; /floor, /pipe, /Motion: daemon CPU / theirs.")  # fmt: skip

    print()
    print("per camera and details:")
    print(f"{'cams':>4} {'daemon':>7} {'floor':>7} {'pipe':>7} {'Motion':>7} {'sim':>6} {'+RSS/cam':>8} "
          f"{'short':>6} {'simdrop':>7} {'holes':>5} {'miss s':>6} {'detect':>6} {'unmatch':>7} {'online s':>8} "
          f"{'min fps':>7} {'floor fps':>9} {'pipe fps':>8} {'pipe pps':>8} {'movies':>6} "
          f"{'loop%':>5}")  # fmt: skip
    base = rows[0] if rows else None
    for r in rows:
        d = r.daemon
        motion = r.motion.usage.cpu_percent / r.cameras if r.motion else None
        marginal = None
        if base is not None and r.cameras > base.cameras:
            marginal = (d.daemon.peak_rss_mb - base.daemon.daemon.peak_rss_mb) / (r.cameras - base.cameras)
        print(
            f"{r.cameras:>4} {d.daemon.cpu_percent / r.cameras:>7.2f} {r.floor.usage.cpu_percent / r.cameras:>7.2f} "
            f"{r.pipeline.usage.cpu_percent / r.cameras:>7.2f} {_fmt(motion, '.2f', 7)} "
            f"{d.simulator.cpu_percent / r.cameras:>6.2f} {_fmt(marginal, '.1f', 8)} "
            f"{d.delivery.frames_short:>6} {d.delivery.frames_dropped:>7} {d.recording.holes:>5} "
            f"{d.recording.missing_s:>6.1f} "
            f"{_fmt(percentile(d.latency.detect, 50) if d.latency.detect else None, '.2f', 6)} "
            f"{d.latency.unmatched:>7} {d.online_s:>8.1f} {d.min_fps:>7.1f} {r.floor.fps_per_stream:>9.1f} "
            f"{r.pipeline.fps_per_stream:>8.1f} {_fmt(r.pipeline.pps_per_stream, '.1f', 8)} "
            f"{_fmt(r.motion.movies if r.motion else None, 'd', 6)} {d.loop.cpu_percent:>5.1f}"
        )
    print("daemon, floor, pipe, Motion, sim: CPU per camera in % of one core; +RSS/cam: daemon RSS added per "
          "camera beyond the smallest N; short: frames the simulator did not send to the daemon in the window "
          "(15 fps x window - sent, per stream); simdrop: the simulator's own drop count; holes / miss s: gaps "
          "in the recorded main stream (segments table) and their total seconds; detect: p50 of "
          "events.start_utc - entry (the figure becoming visible and persistent); unmatch: motion events of no "
          "entry; online s: daemon start until /metrics shows every camera up; min fps: lowest per-camera fps "
          "in /metrics at the window's end; floor fps: frames decoded per stream per second by the floor "
          "(connect included); pipe fps, pipe pps: frames decoded per sub stream and packets written per main "
          "stream per second by the pipeline floor (connect included); movies: files Motion wrote; loop%: the "
          "daemon's event-loop thread alone, % of one core (all cameras).")  # fmt: skip

    print()
    print("daemon CPU by stage (% of one core, all cameras; from the threads' OS names):")
    for r in rows:
        stages = sorted(r.daemon.stages.items(), key=lambda kv: -kv[1])
        print(f"  N={r.cameras:<3} " + ", ".join(f"{name} {pct:.1f}" for name, pct in stages if pct >= 0.05))
    print("  (other: the event loop's executor, which makes clips and files, and the database's threads)")

    print()
    print("targets:")
    ok = [r.cameras for r in rows if r.daemon.daemon.cpu_percent / CORES <= TARGET_MACHINE_PERCENT and r.dropped == 0]
    best = max(ok, default=0)
    verdict = "PASS" if best >= TARGET_CAMERAS else "MISS"
    tried = max(r.cameras for r in rows)
    extra = "" if tried >= TARGET_CAMERAS else f" (only up to {tried} cameras measured)"
    print(f"  {verdict}  >= {TARGET_CAMERAS} cameras with the daemon <= {TARGET_MACHINE_PERCENT:.0f} % of the "
          f"{CORES}-core machine and nothing dropped: largest such N = {best}{extra}")  # fmt: skip
    for r in rows:
        lat = r.daemon.latency.samples
        p95 = percentile(lat, 95) if lat else None
        rss = r.daemon.daemon.peak_rss_mb / r.cameras
        checks = [
            (r.floor_ratio <= TARGET_FLOOR_RATIO, f"CPU/floor {r.floor_ratio:.2f} <= {TARGET_FLOOR_RATIO}"),
            (
                p95 is not None and p95 <= TARGET_LATENCY_P95_S and r.daemon.latency.missed == 0,
                f"latency p95 {'-' if p95 is None else f'{p95:.2f}'} s <= {TARGET_LATENCY_P95_S} "
                f"(missed {r.daemon.latency.missed})",
            ),
            (rss <= TARGET_RSS_PER_CAMERA_MB, f"RSS/camera {rss:.1f} MB <= {TARGET_RSS_PER_CAMERA_MB:.0f}"),
            (r.dropped == 0, f"dropped {r.dropped}"),
        ]
        text = "; ".join(f"{'PASS' if good else 'MISS'} {what}" for good, what in checks)
        print(f"  N={r.cameras:<3} {text}")
        print(f"  N={r.cameras:<3} CPU/pipeline floor {r.pipeline_ratio:.2f} "
              "(no target: the least a recorder+analyser does)")  # fmt: skip

    notes = [(r.cameras, n) for r in rows for n in (*r.daemon.notes, *r.floor.notes, *r.pipeline.notes)]
    notes += [(r.cameras, n) for r in rows if r.motion for n in r.motion.notes]
    notes += [(r.cameras, f"Motion skipped: {r.motion_skipped}") for r in rows if r.motion_skipped]
    notes += [(r.cameras, f"events of other kinds: {r.daemon.latency.other}") for r in rows if r.daemon.latency.other]
    notes += [
        (r.cameras, f"{r.daemon.recording.unfinished} segments never finalised (left as 'recording' at the stop)")
        for r in rows
        if r.daemon.recording.unfinished
    ]
    if notes:
        print()
        print("notes:")
        for n, note in notes:
            print(f"  N={n}: {note}")


# -------------------------------------------------------------------------- main ---


def print_latency_report(results: list[tuple[int, DaemonResult]], seconds: float, scene: str) -> None:
    """The event latency alone: where it comes from (detect: the tracker's start) and what the pipeline adds."""
    print()
    print(f"event latency: scene {scene}, {seconds:g} s windows, {CORES} CPUs (latency = events.created_at - entry; "
          "detect = events.start_utc - entry)")  # fmt: skip
    header = (
        f"{'cams':>4} {'daemon%':>7} {'entries':>7} {'events':>6} {'missed':>6} {'unmatch':>7} "
        f"{'p50 s':>5} {'p95 s':>5} {'max s':>5} {'det p50':>7} {'det p95':>7} {'p95 lag':>7}"
    )
    print(header)
    print("-" * len(header))
    for n, d in results:
        lat, det = d.latency.samples, d.latency.detect
        lag = [a - b for a, b in zip(lat, det, strict=True)]
        print(
            f"{n:>4} {d.daemon.cpu_percent:>7.1f} {d.latency.entries:>7} {len(lat):>6} {d.latency.missed:>6} "
            f"{d.latency.unmatched:>7} {_fmt(percentile(lat, 50) if lat else None, '.2f', 5)} "
            f"{_fmt(percentile(lat, 95) if lat else None, '.2f', 5)} {_fmt(max(lat, default=None), '.2f', 5)} "
            f"{_fmt(percentile(det, 50) if det else None, '.2f', 7)} "
            f"{_fmt(percentile(det, 95) if det else None, '.2f', 7)} "
            f"{_fmt(percentile(lag, 95) if lag else None, '.2f', 7)}"
        )
    print("p95 lag: p95 of (created_at - start_utc), what decoding, analysis and the database add after the "
          "tracker's start frame.")  # fmt: skip
    for n, d in results:
        lat = d.latency.samples
        p95 = percentile(lat, 95) if lat else None
        good = p95 is not None and p95 <= TARGET_LATENCY_P95_S and d.latency.missed == 0
        shown = "-" if p95 is None else f"{p95:.2f}"
        print(f"  N={n:<3} {'PASS' if good else 'MISS'} latency p95 {shown} s <= {TARGET_LATENCY_P95_S} "
              f"(missed {d.latency.missed})")  # fmt: skip
        for note in d.notes:
            print(f"  N={n}: {note}")


@contextlib.contextmanager
def simulated(n: int, scene: str, notes: list[str]) -> Iterator[tuple[Simulator, Path]]:
    """The simulator with `n` cameras and a scratch directory; what it said goes into `notes`."""
    with tempfile.TemporaryDirectory(prefix=f"bench-cameras-{n}-") as tmp:
        work = Path(tmp)
        with (work / "simulator.log").open("w") as sim_log:
            sim = Simulator(n, scene, sim_log)
            try:
                yield sim, work
            finally:
                note = sim.stop()
        if note:
            notes.append(note)
        warnings = [line for line in (work / "simulator.log").read_text().splitlines() if "WARNING" in line]
        notes += [f"simulator: {w}" for w in warnings[:5]]


def run_latency(n: int, args: argparse.Namespace, say: Callable[[str], None]) -> DaemonResult:
    notes: list[str] = []
    with simulated(n, args.scene, notes) as (sim, work):
        say(f"N={n}: daemon ...")
        daemon = run_daemon(sim, args.scene, args.seconds, work)
    daemon.notes += notes
    return daemon


def run_count(n: int, args: argparse.Namespace, motion_ok: str | None, say: Callable[[str], None]) -> Row:
    notes: list[str] = []
    with simulated(n, args.scene, notes) as (sim, work):
        say(f"N={n}: daemon ...")
        daemon = run_daemon(sim, args.scene, args.seconds, work)
        say(f"N={n}: floor ...")
        floor = run_floor(sim, args.seconds)
        say(f"N={n}: pipeline floor ...")
        pipeline = run_pipeline_floor(sim, args.seconds)
        motion = None
        skipped = motion_ok
        if n in args.motion_counts and motion_ok is None:
            say(f"N={n}: Motion ...")
            (work / "motion").mkdir()
            try:
                motion = run_motion(sim, args.seconds, work / "motion")
            except RuntimeError as exc:
                skipped = str(exc)
        elif n not in args.motion_counts:
            skipped = None
    daemon.notes += notes
    return Row(n, daemon, floor, pipeline, motion, skipped)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--counts", default="1,8,16,32,48", help="comma-separated camera counts")
    parser.add_argument("--seconds", type=float, default=40.0, help="measurement window of each phase")
    parser.add_argument("--quick", action="store_true", help="counts 1,8 and 20 s windows")
    parser.add_argument(
        "--latency", action="store_true", help="the daemon alone, event latency in detail (counts 1,8,16, 60 s)"
    )
    parser.add_argument("--scene", default=SCENE, choices=sorted(SCENES))
    parser.add_argument("--motion-counts", default="1,8", help="counts for which Motion runs too ('' for none)")
    parser.add_argument("--serve-simulator", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--decode-floor", nargs="+", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--pipeline-floor", nargs="+", metavar="URL_MAIN URL_SUB", help=argparse.SUPPRESS)
    parser.add_argument("--pipeline-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_simulator:
        return asyncio.run(_serve_simulator(int(args.counts), args.scene))
    if args.decode_floor:
        return _decode_floor(args.decode_floor)
    if args.pipeline_floor:
        if len(args.pipeline_floor) % 2 or args.pipeline_dir is None:
            parser.error("--pipeline-floor takes URL_MAIN URL_SUB pairs and needs --pipeline-dir")
        urls = args.pipeline_floor
        return _pipeline_floor(list(zip(urls[::2], urls[1::2], strict=True)), args.pipeline_dir)
    if args.quick:
        args.counts, args.seconds = "1,8", 20.0
    elif args.latency and args.counts == parser.get_default("counts"):
        args.counts = "1,8,16"
    if args.latency and args.seconds == parser.get_default("seconds"):
        args.seconds = 60.0
    counts = [int(c) for c in args.counts.split(",")]
    args.motion_counts = {int(c) for c in args.motion_counts.split(",") if c}
    if not any(h.kind is HappeningKind.FIGURE_ENTERS for h in SCENES[args.scene].timeline()):
        parser.error(f"scene {args.scene} has nobody entering; event latency needs one (use {SCENE} or demo)")

    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:5.0f} s] {text}", flush=True)

    if args.latency:
        results = [(n, run_latency(n, args, say)) for n in counts]
        print_latency_report(results, args.seconds, args.scene)
        print(f"\ntotal time {time.monotonic() - started:.0f} s")
        return 0
    motion_ok = ensure_motion() if args.motion_counts else "not asked for (--motion-counts '')"
    if motion_ok:
        say(f"Motion will be skipped: {motion_ok}")
    rows = []
    failed = []
    for n in counts:
        try:
            rows.append(run_count(n, args, motion_ok, say))
        except RuntimeError as exc:  # one count that cannot be measured must not lose the others
            say(f"N={n} failed: {exc}")
            failed.append(f"N={n}: {exc}")
    if rows:
        print_report(rows, args.seconds, args.scene)
    for line in failed:
        print(f"NOT MEASURED {line}")
    print(f"\ntotal time {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
