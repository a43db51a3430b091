"""Load test of ``cli.py serve``: N concurrent clients for T seconds, beside the model's in-process throughput.

    python benchmarks/serve_load.py --clients 1,32 --seconds 10 --n 1

Starts the server in a subprocess on a free port, then for each client count runs that many threads that
POST /generate (``n`` images each, a new seed per request) back to back for ``--seconds``.  Prints images/s,
p50 / p99 latency and errors, and, measured in this process just before, the model alone at batch 1 and at
the server's maximum batch.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout: cli.py

from cgan_export import Generator  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, timeout: float = 60.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1).read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the server at {url} did not come up in {timeout:.0f} s")


def client_loop(url: str, n: int, stop: float, first_seed: int, latencies: list, errors: list) -> None:
    seed = first_seed
    while time.time() < stop:
        body = json.dumps({"objects": ["red cube", "blue cylinder"], "n": n, "seed": seed}).encode()
        request = urllib.request.Request(f"{url}/generate", body, {"Content-Type": "application/json"})
        start = time.perf_counter()
        try:
            urllib.request.urlopen(request, timeout=60).read()
            latencies.append(time.perf_counter() - start)
        except (urllib.error.URLError, OSError) as exc:
            errors.append(str(exc))
        seed += 1000


def load(url: str, clients: int, seconds: float, n: int) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    stop = time.time() + seconds
    threads = [threading.Thread(target=client_loop, args=(url, n, stop, i, latencies, errors)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    lat = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {"images_per_second": len(latencies) * n / elapsed, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "errors": len(errors), "requests": len(latencies)}


def load_wrk(url: str, clients: int, seconds: float, n: int) -> dict:
    """The same load from wrk (a C client: the load generator takes less of the CPU the server runs on)."""
    import re
    import tempfile

    body = json.dumps({"objects": ["red cube", "blue cylinder"], "n": n, "seed": 0})
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f'wrk.method = "POST"\nwrk.body = \'{body}\'\nwrk.headers["Content-Type"] = "application/json"\n')
    out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{seconds:.0f}s", "--latency", "-s", script.name,
                          f"{url}/generate"], capture_output=True, text=True).stdout
    Path(script.name).unlink()

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    return {"images_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)) * n,
            "p50_ms": ms("50%"), "p99_ms": ms("99%"), "errors": errors, "requests": requests}


def model_alone(batch: int, seconds: float = 3.0) -> float:
    """Images/s of the shipped ONNX model in this process at ``batch``."""
    gen = Generator.load(device="cpu")
    noise = np.random.default_rng(0).standard_normal((batch, int(gen.metadata["z_dim"])), dtype=np.float32)
    cond = np.repeat(gen.encode(["red cube", "blue cylinder"]), batch, axis=0)
    gen.backend.run(noise, cond)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        gen.backend.run(noise, cond)
        count += batch
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,32", help="comma-separated concurrent client counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per client count")
    parser.add_argument("--n", type=int, default=1, help="images per request")
    parser.add_argument("--max-batch", type=int, default=64, help="the server's --max-batch")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto",
                        help="load generator: wrk where installed (auto), else Python threads")
    args = parser.parse_args()
    print(f"| model alone, in process | batch 1: {model_alone(1):.0f} images/s | batch {args.max_batch}: "
          f"{model_alone(args.max_batch):.0f} images/s |")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "cli.py", "serve", "--port", str(port), "--max-batch", str(args.max_batch)],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until_up(url)
        use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk"))
        print(f"\nload from {'wrk' if use_wrk else 'Python threads'}, {args.seconds:.0f} s per row")
        print("| clients | images per request | images/s | p50 latency (ms) | p99 latency (ms) | requests | errors |")
        print("|---|---|---|---|---|---|---|")
        for clients in [int(c) for c in args.clients.split(",")]:
            r = (load_wrk if use_wrk else load)(url, clients, args.seconds, args.n)
            print(f"| {clients} | {args.n} | {r['images_per_second']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                  f"{r['requests']} | {r['errors']} |")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
