"""A steady stream of UDP datagrams and a receiver that stamps when a stream starts getting through,
for measuring how soon a gateway lets a device's packets pass.

    python -m tests.peers.udp_probe send 10.99.2.2 9999 0.0005 [SOURCE_ADDRESS]
    python -m tests.peers.udp_probe receive 0.0.0.0 9999 0.05

The receiver prints `first <time.monotonic_ns()>` for every datagram that arrives after at least
the given silence (seconds): the first packet through after the gateway opened. All namespaces
share the machine's monotonic clock, so the stamp compares with the gateway's.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time


def send(host: str, port: int, interval_s: float, source: str | None = None) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        if source is not None:  # one of several devices sharing a namespace (bench/portal.py)
            sock.bind((source, 0))
        seq = 0
        while True:
            seq += 1
            # A rejected datagram's ICMP error is reported by the next send: not this test's business.
            with contextlib.suppress(OSError):
                sock.sendto(seq.to_bytes(8, "big"), (host, port))
            time.sleep(interval_s)


def receive(host: str, port: int, silence_s: float) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, port))
        print("ready", flush=True)
        last = 0
        while True:
            sock.recv(64)
            now = time.monotonic_ns()
            if now - last >= silence_s * 1e9:
                print(f"first {now}", flush=True)
            last = now


if __name__ == "__main__":
    mode, host, port, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    if mode == "send":
        send(host, port, seconds, *sys.argv[5:6])
    else:
        receive(host, port, seconds)
