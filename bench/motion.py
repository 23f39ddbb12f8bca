"""What motion analysis costs per analysed frame, against the bare OpenCV steps in the same run.

    PYTHONPATH=. .venv/bin/python bench/motion.py [--repeats 15] [--threads 1]

Frames come from the simulator's renderer (a shopper walking through the shop), so the detector
does its real work: blobs, boxes, background updates. Every variant runs over the same frames,
interleaved with the others in each repeat, so that a busy machine slows them all alike; the
median over repeats is reported. The ratio to the baseline (blur + absdiff + threshold, the least
any frame-differencing detector does) is the price of the guards and the stretch.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import cv2
import numpy as np

from appliance.cameras.motion import MotionDetector, chroma_variance
from appliance.cameras.tamper import TamperDetector
from appliance.simulator.render import Renderer
from appliance.simulator.scenes import SCENES

FPS = 5
SCENE = "store_day_person"
BASELINE_THRESHOLD = 30
"""The threshold of the bare steps; the same as the detector's medium sensitivity."""


def _frames(width: int, height: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    scene = SCENES[SCENE]
    renderer = Renderer(scene, width, height)
    frames = [renderer.frame(i, FPS) for i in range(round(scene.duration * FPS))]
    return [(f.y, f.u, f.v) for f in frames]


def _baseline(small: list[np.ndarray]) -> Callable[[], None]:
    background = cv2.GaussianBlur(small[0], (3, 3), 0)

    def run() -> None:
        for y in small:
            blurred = cv2.GaussianBlur(y, (3, 3), 0)
            cv2.threshold(cv2.absdiff(blurred, background), BASELINE_THRESHOLD - 1, 255, cv2.THRESH_BINARY)

    return run


def _classic(small: list[np.ndarray]) -> Callable[[], None]:
    """The textbook step: blur, running average, absdiff, threshold, dilate, contours."""
    average = small[0].astype(np.float32)

    def run() -> None:
        for y in small:
            blurred = cv2.GaussianBlur(y, (3, 3), 0)
            cv2.accumulateWeighted(blurred, average, 0.01)
            diff = cv2.absdiff(blurred, cv2.convertScaleAbs(average))
            mask = cv2.threshold(diff, BASELINE_THRESHOLD - 1, 255, cv2.THRESH_BINARY)[1]
            cv2.findContours(cv2.dilate(mask, None), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)

    return run


def _detector(frames: list[np.ndarray], uv: list[float]) -> Callable[[], None]:
    detector = MotionDetector()
    clock = [0.0]

    def run() -> None:
        # The clock runs on across repeats, so the detector stays calibrated and keeps working.
        for y, variance in zip(frames, uv, strict=True):
            detector.process(y, variance, clock[0])
            clock[0] += 1 / FPS

    return run


def _chroma(frames: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Callable[[], None]:
    def run() -> None:
        for _, u, v in frames:
            chroma_variance(u, v)

    return run


def _tamper(small: list[np.ndarray]) -> Callable[[], None]:
    tamper = TamperDetector()
    clock = [0.0]

    def run() -> None:
        for y in small:
            tamper.process(y, clock[0])
            clock[0] += 1.0

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="cv2.setNumThreads (default: OpenCV's own)")
    args = parser.parse_args()
    if args.threads is not None:
        cv2.setNumThreads(args.threads)

    small = _frames(320, 180)
    sub = _frames(640, 360)
    small_y = [y for y, _, _ in small]
    small_uv = [chroma_variance(u, v) for _, u, v in small]
    sub_y = [y for y, _, _ in sub]
    sub_uv = [chroma_variance(u, v) for _, u, v in sub]
    variants: dict[str, tuple[Callable[[], None], int]] = {
        "baseline: blur+absdiff+threshold, 320×180": (_baseline(small_y), len(small)),
        "classic step (+average, dilate, contours), 320×180": (_classic(small_y), len(small)),
        "MotionDetector.process, 320×180 input": (_detector(small_y, small_uv), len(small)),
        "MotionDetector.process, 640×360 input (+shrink)": (_detector(sub_y, sub_uv), len(sub)),
        "chroma_variance, 640×360 stream (U/V 320×180)": (_chroma(sub), len(sub)),
        "TamperDetector.process, 320×180 (runs at 1 fps)": (_tamper(small_y), len(small)),
    }
    for run, _ in variants.values():  # warm-up: caches, first-call costs, calibration
        run()
    timings: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, (run, count) in variants.items():
            started = time.perf_counter()
            run()
            timings[name].append((time.perf_counter() - started) / count * 1e6)

    baseline = statistics.median(timings[next(iter(variants))])
    print(f"OpenCV {cv2.__version__}, {cv2.getNumThreads()} thread(s); {args.repeats} repeats of {len(small)} frames")
    print(f"{'variant':58} {'median µs':>10} {'min µs':>8} {'× baseline':>11}")
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"{name:58} {median:10.1f} {min(values):8.1f} {median / baseline:11.2f}")


if __name__ == "__main__":
    main()
