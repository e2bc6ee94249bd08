"""Benchmark of the Kubernetes API emulator over a long session: does a request get slower as requests pile up?

kmock keeps every request it served and matches each new one by scanning them all; the emulator drops each request
once served (`sandbox.kmock_boundary`). This runs the same workload with that on and, for comparison, off (kmock's
own behaviour), and reports the latency of the first and the last `--window` GETs of an object, and their ratio.

Usage: python bench/emulator_bench.py [--requests 4000] [--window 200] [--json OUT]
(about 10 minutes at 4000 requests on 2 cores, nearly all of it in the comparison run: that one is quadratic)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import urllib.request
from pathlib import Path
from typing import Any

from deploymind.api.crd import render_crd
from deploymind.sandbox.kube.apiserver import ApiServer
from deploymind.sandbox.kube.kmock_boundary import EmulatorBase

PATH = "/apis/deploymind.io/v1alpha1/namespaces/default/deployments"
BODY = {"apiVersion": "deploymind.io/v1alpha1", "kind": "Deployment", "metadata": {"name": "bench"},
        "spec": {"image": "registry.example/app@sha256:" + "a" * 64, "target": {"transport": "local"},
                 "container": {"port": 8080}}}


def get_ms(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as response:
        response.read()
    return (time.perf_counter() - started) * 1000


def session(requests: int, window: int, keep_requests: bool) -> dict[str, Any]:
    forget = EmulatorBase._forget
    if keep_requests:
        EmulatorBase._forget = lambda self, request: None  # type: ignore[method-assign]
    try:
        with ApiServer(crds=[render_crd()]) as api:
            create = urllib.request.Request(f"{api.url}{PATH}", data=json.dumps(BODY).encode(), method="POST",
                                            headers={"Content-Type": "application/json"})
            urllib.request.urlopen(create, timeout=30).read()
            url = f"{api.url}{PATH}/bench"
            started = time.perf_counter()
            latencies = [get_ms(url) for _ in range(requests)]
            wall = time.perf_counter() - started
            kept = api.call(lambda emulator: len(emulator._requests))
    finally:
        EmulatorBase._forget = forget  # type: ignore[method-assign]
    first, last = latencies[:window], latencies[-window:]
    return {
        "requests": requests,
        "first_window_median_ms": round(statistics.median(first), 2),
        "last_window_median_ms": round(statistics.median(last), 2),
        "last_over_first": round(statistics.median(last) / statistics.median(first), 2),
        "wall_s": round(wall, 1),
        "requests_kept_at_the_end": kept,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--window", type=int, default=200)
    parser.add_argument("--json", help="write the results here as well")
    args = parser.parse_args()
    results = {
        "command": f"python bench/emulator_bench.py --requests {args.requests} --window {args.window}"
                   + (f" --json {args.json}" if args.json else ""),
        "machine": {"cpus": os.cpu_count()},
        "served_requests_dropped": session(args.requests, args.window, keep_requests=False),
        "kmock_keeps_every_request": session(args.requests, args.window, keep_requests=True),
    }
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
