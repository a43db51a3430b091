"""Soak test of ``cli.py serve``: valid, malformed, slow, vanishing and flooding clients at once, bounded in time.

    python benchmarks/serve_soak.py --seconds 300 --clients 16

Starts the server in a subprocess on a free port, then runs for ``--seconds``:
- ``--clients`` threads that POST /generate back to back, about one request in ten malformed (bad JSON, unknown
  names, n out of range, a wrong type, an oversized body);
- slow clients that send half a request's headers and hang (the server's header timeout must cut them off);
- vanishing clients that send a whole request and close the connection before the answer;
- a flood every ``--flood-every`` seconds: 200 requests of 64 images at once (the bounded queue must shed it).
It prints images/s, p50 / p99 latency of the valid requests, the answers by status, errors (a malformed request
that got a 2xx or any 5xx other than 503 / 504, connection failures of valid clients), and the server's RSS at
the start, its peak and its end.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.serve_load import free_port, wait_until_up  # noqa: E402
from cgan_export.cpu import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MALFORMED = [b"{not json", b'{"objects": ["pink cube"], "n": 2}', b'{"objects": ["red cube"], "n": 0}',
             b'{"objects": "red cube"}', b'{"objects": ["red cube", "red cube"]}', b"[1, 2]",
             b'{"objects": ["red cube"], "n": 2, "pad": "' + b"x" * 20_000 + b'"}']


class Tally:
    """Answers by status, latencies of valid requests, images, errors: shared by every client thread."""

    def __init__(self):
        self.lock, self.status, self.latencies, self.images, self.errors = threading.Lock(), Counter(), [], 0, Counter()
        self.flood: list[tuple[int, float]] = []  # (status, seconds) of each flood request

    def add(self, status: int, latency: float | None = None, images: int = 0, error: str | None = None) -> None:
        with self.lock:
            self.status[status] += 1
            self.images += images
            if latency is not None:
                self.latencies.append(latency)
            if error:
                self.errors[error] += 1


def post(url: str, body: bytes, timeout: float = 120) -> tuple[int, bytes]:
    request = urllib.request.Request(f"{url}/generate", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def valid_client(url: str, stop: float, seed: int, tally: Tally) -> None:
    rng = random.Random(seed)
    while time.time() < stop:
        if rng.random() < 0.1:  # malformed: must get a 4xx
            try:
                status, _ = post(url, rng.choice(MALFORMED))
            except OSError as exc:
                tally.add(0, error=f"malformed request: {type(exc).__name__}")
                continue
            tally.add(status, error=None if 400 <= status < 500 else f"malformed request answered {status}")
            continue
        n = rng.choice([1, 4, 8])
        body = json.dumps({"objects": ["red cube", "blue cylinder"], "n": n, "seed": rng.randrange(1 << 30)}).encode()
        start = time.perf_counter()
        try:
            status, data = post(url, body)
        except OSError as exc:
            tally.add(0, error=f"valid request: {type(exc).__name__}")
            continue
        ok = status == 200 and len(json.loads(data)["images"]) == n
        tally.add(status, time.perf_counter() - start if ok else None, n if ok else 0,
                  None if ok or status in (503, 504) else f"valid request answered {status}")


def slow_client(port: int, stop: float, tally: Tally) -> None:
    """Half a header, then silence, again and again: each connection should be closed by the server."""
    while time.time() < stop:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                s.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Ty")
                closed = s.recv(100) == b""  # blocks until the server gives up on us
            tally.add(-1 if closed else -2, error=None if closed else "slow client got an answer")
        except OSError as exc:
            tally.add(-2, error=f"slow client: {type(exc).__name__}")


def vanishing_client(port: int, stop: float, tally: Tally) -> None:
    body = json.dumps({"objects": ["red cube"], "n": 8, "seed": 1}).encode()
    while time.time() < stop:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            tally.add(-3)
        except OSError as exc:
            tally.add(-2, error=f"vanishing client: {type(exc).__name__}")
        time.sleep(0.2)


def flood(url: str, requests: int, tally: Tally) -> None:
    body = json.dumps({"objects": ["green sphere"], "n": 64, "seed": 0}).encode()
    threads = [threading.Thread(target=lambda: tally.add(*_flood_one(url, body, tally))) for _ in range(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _flood_one(url: str, body: bytes, tally: Tally) -> tuple:
    start = time.perf_counter()
    try:
        status, _ = post(url, body)
        with tally.lock:
            tally.flood.append((status, time.perf_counter() - start))
        return (status, None, 64 if status == 200 else 0, None if status in (200, 503, 504) else f"flood answered {status}")
    except OSError as exc:
        return (0, None, 0, f"flood: {type(exc).__name__}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=16, help="valid/malformed client threads")
    parser.add_argument("--slow", type=int, default=8, help="slow clients (half a header)")
    parser.add_argument("--vanishing", type=int, default=2, help="clients that close before the answer")
    parser.add_argument("--flood-every", type=float, default=30, help="seconds between floods (0: none)")
    parser.add_argument("--flood", type=int, default=200, help="requests of 64 images in each flood")
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "cli.py", "serve", "--port", str(port), "--device", "cpu"]
    server = subprocess.Popen(cmd + (["--model", str(args.model)] if args.model else []), cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tally, rss, times = Tally(), [], []
    try:
        wait_until_up(url)
        rss.append(rss_mb(server.pid))
        start = time.time()
        stop = start + args.seconds
        threads = ([threading.Thread(target=valid_client, args=(url, stop, i, tally)) for i in range(args.clients)]
                   + [threading.Thread(target=slow_client, args=(port, stop, tally)) for _ in range(args.slow)]
                   + [threading.Thread(target=vanishing_client, args=(port, stop, tally)) for _ in range(args.vanishing)])
        for t in threads:
            t.start()
        next_flood = start + args.flood_every if args.flood_every else float("inf")
        while time.time() < stop:
            if time.time() >= next_flood:
                threading.Thread(target=flood, args=(url, args.flood, tally)).start()
                next_flood += args.flood_every
            rss.append(rss_mb(server.pid))
            times.append(time.time() - start)
            time.sleep(0.5)
        for t in threads:
            t.join(timeout=60)
        elapsed = time.time() - start
        rss.append(rss_mb(server.pid))
    finally:
        server.terminate()
        server.wait(timeout=60)
    lat = np.array(tally.latencies) * 1e3
    names = {-1: "slow client cut off", -2: "client failure", -3: "vanished before the answer", 0: "no answer"}
    print(f"{cpu_model()}; {args.seconds:.0f} s, {args.clients} clients, {args.slow} slow, {args.vanishing} vanishing, "
          f"a flood of {args.flood} x 64 images every {args.flood_every:g} s")
    print("| images/s | p50 (ms) | p99 (ms) | RSS start / peak / end (MB) | errors |\n|---|---|---|---|---|")
    p50, p99 = (f"{np.percentile(lat, q):.0f}" if len(lat) else "-" for q in (50, 99))
    print(f"| {tally.images / elapsed:.0f} | {p50} | {p99} | "
          f"{rss[0]:.0f} / {max(rss):.0f} / {rss[-1]:.0f} | {sum(tally.errors.values())} |")
    print("\n| answer | count |\n|---|---|")
    for status, count in sorted(tally.status.items()):
        print(f"| {names.get(status, status)} | {count} |")
    for status in sorted({st for st, _ in tally.flood}):
        secs = [t for st, t in tally.flood if st == status]
        print(f"flood answers {status}: {len(secs)}, median {np.median(secs) * 1e3:.0f} ms, slowest {max(secs):.2f} s")
    marks = [next(r for r, t in zip(rss[1:], times) if t >= mark) for mark in np.arange(0, elapsed, elapsed / 10)]
    print("\nRSS (MB) at each tenth of the run: " + " ".join(f"{r:.0f}" for r in marks))
    for error, count in tally.errors.most_common():
        print(f"error: {error} x{count}")


if __name__ == "__main__":
    main()
