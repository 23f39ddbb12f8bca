"""`appliance simulate`: serve simulated RTSP cameras until Ctrl-C or SIGTERM.

Only the scene list is imported at module level (it is plain data), so that `appliance --help`
does not load numpy or PyAV.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
from pathlib import Path

from appliance.simulator.scenes import DEFAULT_SCENE, SCENES

PASSWORD_ENV = "APPLIANCE_SIM_PASSWORD"  # noqa: S105 - the variable's name, not a password
DEFAULT_PORT = 8554
MAX_CAMERAS = 256
PROGRESS_STEP = 10
"""Encoding progress is printed every this many percent."""

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"RTSP port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--cameras",
        type=int,
        default=2,
        metavar="N",
        help=f"number of cameras, cam1..camN (default 2, max {MAX_CAMERAS})",
    )
    parser.add_argument(
        "--scene",
        default=DEFAULT_SCENE,
        choices=sorted(SCENES),
        help=f"what the cameras show (default {DEFAULT_SCENE}); camera i starts (i-1)/N into the loop",
    )
    parser.add_argument("--username", help="require Digest authentication with this username")
    parser.add_argument("--password", help=f"the password for --username (or set {PASSWORD_ENV})")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where encoded scenes are kept (default ~/.cache/appliance-sim)",
    )
    parser.add_argument("--fps", type=int, default=15, help="frames per second, 1-60 (default 15)")
    parser.add_argument("--gop", type=float, default=1.0, help="seconds between keyframes (default 1)")
    parser.add_argument("--list-scenes", action="store_true", help="print each scene's scripted happenings and exit")


def _list_scenes() -> None:
    for name, scene in sorted(SCENES.items()):
        print(f"{name} ({scene.duration:g} s loop): {scene.description}")
        for h in scene.timeline():
            who = f" (figure {h.figure})" if h.figure is not None else ""
            print(f"  {h.t:6.2f} s  {h.kind.value}{who}")


class _Abandoned(Exception):
    """Raised inside the encoder threads to stop a first-run encoding on Ctrl-C or SIGTERM."""


class _ProgressPrinter:
    """Prints 'encoding <label>: N %' to stderr every PROGRESS_STEP percent (from encoder threads),
    and stops the encoding at the next frame once `abandon()` was called."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        self._lock = threading.Lock()
        self._abandoned = threading.Event()

    def abandon(self) -> None:
        self._abandoned.set()

    def __call__(self, label: str, done: float) -> None:
        if self._abandoned.is_set():
            raise _Abandoned
        step = int(done * 100) // PROGRESS_STEP * PROGRESS_STEP
        with self._lock:
            if self._last.get(label, -1) >= step:
                return
            self._last[label] = step
        print(f"encoding {label}: {step} %", file=sys.stderr, flush=True)


def _usage_error(args: argparse.Namespace, password: str | None) -> str | None:
    if not 1 <= args.cameras <= MAX_CAMERAS:
        return f"--cameras must be 1..{MAX_CAMERAS}, got {args.cameras}"
    if not 0 <= args.port <= 65535:
        return f"--port must be 0..65535, got {args.port}"
    if not 1 <= args.fps <= 60:
        return f"--fps must be 1..60, got {args.fps}"
    if not 0 < args.gop <= 10:
        return f"--gop must be more than 0 and at most 10 seconds, got {args.gop}"
    if args.username and not password:
        return f"--username needs a password: give --password or set {PASSWORD_ENV}"
    if password and not args.username:
        return "a password was given without --username"
    return None


def run_simulator(args: argparse.Namespace) -> int:
    password = args.password or os.environ.get(PASSWORD_ENV) or None
    problem = _usage_error(args, password)
    if problem:
        print(f"appliance simulate: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if args.list_scenes:
        _list_scenes()
        return EXIT_OK
    from appliance.logs import SECRETS, setup_logging

    setup_logging("info", fmt="text")
    if password:
        SECRETS.add(password)
    return asyncio.run(_serve(args, password))


async def _serve(args: argparse.Namespace, password: str | None) -> int:
    from appliance.redact import mask_url
    from appliance.simulator.server import SimCamera, SimulatorServer

    stop = asyncio.Event()
    progress = _ProgressPrinter()

    def on_signal() -> None:
        stop.set()
        progress.abandon()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    duration = SCENES[args.scene].duration
    cameras = [SimCamera(f"cam{i + 1}", args.scene, phase=i * duration / args.cameras) for i in range(args.cameras)]
    server = SimulatorServer(
        cameras,
        args.host,
        args.port,
        args.username or None,
        password,
        fps=args.fps,
        gop_seconds=args.gop,
        cache_dir=args.cache_dir,
        progress=progress,
    )
    try:
        await server.start()
    except _Abandoned:
        return EXIT_OK
    except OSError as exc:
        print(
            f"appliance simulate: cannot listen on {args.host}:{args.port} ({exc.strerror}); "
            "choose another --port or stop what uses it",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    for encoded in server.encoded.values():
        how = "from the cache" if encoded.from_cache else "encoded now"
        took = f"encoding took {encoded.encode_seconds:.1f} s"
        print(f"{encoded.label}: {len(encoded.units)} frames, {how} ({took})", file=sys.stderr)
    for camera in cameras:
        main = mask_url(server.url(camera.camera_id, "main", with_credentials=True))
        sub = mask_url(server.url(camera.camera_id, "sub", with_credentials=True))
        print(f"{camera.camera_id}  main {main}  sub {sub}", flush=True)

    try:
        await stop.wait()
    finally:
        await server.stop()
    return EXIT_OK
