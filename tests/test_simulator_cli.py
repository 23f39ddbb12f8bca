"""`appliance simulate` as a user runs it: a subprocess that serves until SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import pytest

from appliance.cli import EXIT_OK, EXIT_USAGE, main
from tests.gst_peer import free_port

ROOT = Path(__file__).resolve().parents[1]
FFMPEG_OPTIONS = {"rtsp_transport": "tcp", "timeout": "5000000"}


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--cameras", "0"], "--cameras must be"),
        (["--port", "70000"], "--port must be"),
        (["--fps", "0"], "--fps must be"),
        (["--gop", "0"], "--gop must be"),
        (["--username", "admin"], "needs a password"),
        (["--password", "x"], "without --username"),
    ],
)
def test_usage_errors_exit_2_with_a_reason(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("APPLIANCE_SIM_PASSWORD", raising=False)
    assert main(["simulate", *argv]) == EXIT_USAGE
    assert words in capsys.readouterr().err


def test_list_scenes_prints_the_ground_truth(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--list-scenes"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "store_day_person (20 s loop)" in out
    assert "4.00 s  figure_enters (figure 0)" in out and "6.00 s  light_off" in out


def test_importing_the_cli_loads_no_video_libraries() -> None:
    code = "import sys, appliance.cli as c; c.build_parser(); print(sorted({'av', 'numpy', 'cv2'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _first_frame(url: str) -> tuple[int, int]:
    with av.open(url, options=FFMPEG_OPTIONS) as container:
        frame = next(container.decode(video=0))
        return frame.width, frame.height


@pytest.mark.slow
def test_simulate_serves_streams_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    password = "sim-Pa55word"
    env = {**os.environ, "APPLIANCE_SIM_PASSWORD": password, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable, "-m", "appliance", "simulate", "--port", str(port), "--cameras", "1",
        "--scene", "light_switch", "--fps", "5", "--username", "admin", "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    with subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            _serves_until_sigterm(proc, port, password)
        finally:
            if proc.poll() is None:
                proc.kill()


def _serves_until_sigterm(proc: subprocess.Popen[str], port: int, password: str) -> None:
    """The URL line (password masked), two playable streams, then a prompt clean exit on SIGTERM."""
    assert proc.stdout is not None
    line = proc.stdout.readline()  # printed once the scene is encoded and the port is open
    assert line.startswith("cam1  main rtsp://admin:***@127.0.0.1:"), line
    assert password not in line
    url = f"rtsp://admin:{password}@127.0.0.1:{port}/cam1"
    with ThreadPoolExecutor(2) as pool:  # FFmpeg probes a 5 fps stream for seconds: both at once
        sizes = list(pool.map(_first_frame, [url + "/main", url + "/sub"]))
    assert sizes == [(1280, 720), (640, 360)]
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    _, err = proc.communicate()
    assert "encoding light_switch main 1280x720@5: 100 %" in err  # first run: progress shown
    assert "encoded now (encoding took" in err
    assert password not in err


@pytest.mark.slow
def test_sigterm_during_the_first_encoding_stops_it_promptly(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "appliance", "simulate", "--port", str(free_port()), "--cache-dir", str(cache)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stderr is not None
            assert proc.stderr.readline().startswith("encoding demo ")
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
            assert time.monotonic() - started < 3
            assert not list(cache.glob("*.h264loop*"))  # nothing half-written is left to be trusted
        finally:
            if proc.poll() is None:
                proc.kill()
