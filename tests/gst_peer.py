"""Starting GStreamer's RTSP server (a real third-party camera) as a subprocess for tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "peers" / "gst_rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"


_GIVEN: set[tuple[socket.SocketKind, int]] = set()
"""Ports free_port() handed out in this process: the kernel may offer a closed one again at once."""


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A TCP (or UDP) port nobody uses now, never one given before in this process. Under
    pytest-xdist each worker takes only ports of its own residue, so two workers never pick the
    same one between choosing it and binding it."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    mine = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    while True:
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port % workers == mine and (kind, port) not in _GIVEN:
            _GIVEN.add((kind, port))
            return port


def gst_available() -> str | None:
    """None when the peer can run, else the reason it cannot."""
    if not shutil.which(SYSTEM_PYTHON):
        return "Debian's /usr/bin/python3 is missing"
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0:
        return (
            "GStreamer's RTSP server is not installed (run `make test` as root: it installs gir1.2-gst-rtsp-server-1.0)"
        )
    return None


class GstCamera:
    def __init__(self, port: int, user: str | None = None, password: str | None = None) -> None:
        self.port = port
        self.user, self.password = user, password
        self.proc: subprocess.Popen[str] | None = None

    def url(self, path: str = "main", with_credentials: bool = True) -> str:
        auth = f"{self.user}:{self.password}@" if with_credentials and self.user else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}/{path}"

    def start(self) -> None:
        args = [SYSTEM_PYTHON, str(SCRIPT), str(self.port)]
        if self.user and self.password:
            args += [self.user, self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            self.stop()
            raise RuntimeError(f"GStreamer RTSP server did not start: {line!r}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


@contextlib.contextmanager
def gst_camera(user: str | None = None, password: str | None = None) -> Iterator[GstCamera]:
    reason = gst_available()
    if reason:
        pytest.skip(reason)
    cam = GstCamera(free_port(), user, password)
    cam.start()
    try:
        yield cam
    finally:
        cam.stop()
