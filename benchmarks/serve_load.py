"""`bertclf serve` under load: throughput and latency of concurrent clients over real HTTP.

Starts `bertclf serve MODEL` on 127.0.0.1, then `--clients` threads each send their share of
`--requests` requests of one real text (the test split, in order) and wait for the answer before
sending the next (closed loop, like users of an app). Reported: requests/s, texts/s, and the
latency each client saw (p50, p95, max), with and without batching of concurrent requests
(`--batch-size 1`: one forward pass per request). Beside them, what the same model does in
process (`bertclf bench`'s measurement: texts per second at batch 1 and at the server's batch
size), so the HTTP overhead is visible.

    python -m benchmarks.serve_load --model models/classifier --data data/split/test.parquet \\
        --clients 32 --requests 640 --out benchmarks/results/serve_load.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.benchlib import finish
from bertclf.serving.bench import bench_batch_size
from bertclf.serving.predictor import TextClassifier


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, texts: list[str]) -> tuple[int, float]:
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", "/predict", body=json.dumps({"texts": texts}),
                 headers={"content-type": "application/json"})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status, time.perf_counter() - t0


def start(model: Path, port: int, batch_size: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "bertclf", "serve", str(model), "--port", str(port),
                             "--batch-size", str(batch_size), "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("the server did not start in 120 s")


def load(model: Path, texts: list[str], clients: int, batch_size: int) -> dict[str, Any]:
    port = free_port()
    proc = start(model, port, batch_size)
    try:
        for text in texts[:8]:  # warm-up
            post(port, [text])
        t0 = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(lambda t: post(port, [t]), texts))
        wall = time.perf_counter() - t0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    latencies = np.array([s for _, s in results]) * 1000
    errors = sum(status != 200 for status, _ in results)
    return {"server_batch_size": batch_size, "clients": clients, "requests": len(texts), "errors": errors,
            "requests_per_s": round(len(texts) / wall, 1), "texts_per_s": round(len(texts) / wall, 1),
            "latency_ms_p50": round(float(np.percentile(latencies, 50)), 1),
            "latency_ms_p95": round(float(np.percentile(latencies, 95)), 1),
            "latency_ms_max": round(float(latencies.max()), 1),
            "latency_ms_mean": round(statistics.fmean(latencies), 1), "wall_s": round(wall, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("models/classifier"))
    parser.add_argument("--data", type=Path, default=Path("data/split/test.parquet"))
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    load_before = os.getloadavg()
    texts = pd.read_parquet(args.data, columns=["text"])["text"].tolist()[:args.requests]
    result: dict[str, Any] = {"benchmark": "serve_load", "model": str(args.model), "data": str(args.data),
                              "runs": []}
    for batch_size in (args.batch_size, 1):
        result["runs"].append(load(args.model, texts, args.clients, batch_size))
        print(json.dumps(result["runs"][-1]), flush=True)
    clf = TextClassifier(args.model)
    result["in_process"] = {f"batch_{b}": bench_batch_size(clf, texts, b)["samples_per_s"]
                            for b in (1, args.batch_size)}
    batched, single = result["runs"]
    result["headline"] = (
        f"{args.clients} clients, one text per request: {batched['texts_per_s']} texts/s with batching "
        f"(p50 {batched['latency_ms_p50']} ms, p95 {batched['latency_ms_p95']} ms), "
        f"{single['texts_per_s']} without (p50 {single['latency_ms_p50']} ms, p95 "
        f"{single['latency_ms_p95']} ms); in process {result['in_process']['batch_1']} texts/s at batch 1, "
        f"{result['in_process'][f'batch_{args.batch_size}']} at batch {args.batch_size}")
    finish(result, args.out, load_before)


if __name__ == "__main__":
    main()
