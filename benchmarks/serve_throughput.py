"""`tailor serve` under load: requests/s and latency percentiles, with and without request batching.

    python benchmarks/serve_throughput.py runs/sentiment-001 runs/support-bot-001
    python benchmarks/serve_throughput.py runs/sentiment-001 --clients 16 --requests 256

Each run is served twice by the real command (`tailor serve RUN --max-batch 1`, then `--max-batch N`),
in its own process on a free loopback port, and driven by `--clients` concurrent clients sending
`--requests` requests in all (after a few warm-up requests): /v1/classify with one review each for a
classification or regression run, /v1/chat/completions (greedy, `--max-tokens`) for a chat or LM run.
Latency is measured by the client, from sending a request to its full answer. The two settings'
answers (greedy replies, labels) are compared and the output says whether they were the same. The
machine's load average is printed
before and after: on a shared CPU absolute numbers are noise, the ratio batched / unbatched is the result.
On a CPU that other jobs keep busy, give the server fewer threads than cores (`--threads 1` on 2 cores):
oversubscribed OpenMP threads slow token-by-token generation down by an order of magnitude or more.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from tailor.data.synthetic import build_world, sentiment_records, support_chat_records


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    run: Path, max_batch: int, max_queue: int, threads: int | None
) -> tuple[subprocess.Popen, str]:
    """`tailor serve` in its own process; returns it and its base URL once /health answers."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tailor.cli",
            "serve",
            str(run),
            "--port",
            str(port),
            "--max-batch",
            str(max_batch),
            "--max-queue",
            str(max_queue),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"tailor serve {run} exited:\n{proc.stderr.read()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"tailor serve {run} did not start in 300 s")


def requests_for(task: str, n: int, max_tokens: int) -> tuple[str, list[dict]]:
    """The endpoint and n request bodies (distinct texts from tailor's synthetic data)."""
    world = build_world(0)
    if task in ("classification", "regression"):
        return "/v1/classify", [{"input": r["text"]} for r in sentiment_records(world, n, 1)]
    conversations = support_chat_records(world, n, 1)
    bodies = []
    for record in conversations:
        first_user = next(m for m in record["messages"] if m["role"] == "user")
        bodies.append({"messages": [first_user], "temperature": 0, "max_tokens": max_tokens})
    return "/v1/chat/completions", bodies


def answer_of(path: str, reply: dict) -> tuple:
    """What must be equal with and without batching: the label(s) or the reply text."""
    if path == "/v1/classify":
        return tuple(d.get("label", round(d.get("value", 0.0), 3)) for d in reply["data"])
    return (reply["choices"][0]["message"]["content"],)


async def drive(url: str, path: str, bodies: list[dict], clients: int) -> dict:
    """Send every body, `clients` at a time; latencies, answers, wall time, 503 count, completion tokens."""
    latencies = [0.0] * len(bodies)
    answers: list = [None] * len(bodies)
    tokens = [0]
    busy = [0]
    pending = iter(range(len(bodies)))

    async def client(http: httpx.AsyncClient) -> None:
        for i in pending:
            while True:
                start = time.perf_counter()
                r = await http.post(path, json=bodies[i])
                if r.status_code != 503:
                    break
                busy[0] += 1
                await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
            latencies[i] = time.perf_counter() - start
            r.raise_for_status()
            reply = r.json()
            answers[i] = answer_of(path, reply)
            tokens[0] += reply.get("usage", {}).get("completion_tokens", 0)

    async with httpx.AsyncClient(
        base_url=url, timeout=600, limits=httpx.Limits(max_connections=clients)
    ) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - start
    return {
        "latencies": latencies,
        "answers": answers,
        "wall": wall,
        "busy": busy[0],
        "tokens": tokens[0],
    }


def measure(run: Path, max_batch: int, args: argparse.Namespace) -> dict:
    proc, url = start_server(run, max_batch, args.max_queue, args.threads)
    try:
        task = httpx.get(f"{url}/health").json()["task"]
        path, bodies = requests_for(task, args.warmup + args.requests, args.max_tokens)
        asyncio.run(
            drive(url, path, bodies[: args.warmup], min(args.clients, args.warmup))
        )  # warm-up
        result = asyncio.run(drive(url, path, bodies[args.warmup :], args.clients))
        stats = httpx.get(f"{url}/health").json()
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    lat = np.array(result["latencies"]) * 1000
    return {
        "run": str(run),
        "task": task,
        "path": path,
        "max_batch": max_batch,
        "requests": len(lat),
        "req_per_s": len(lat) / result["wall"],
        "tokens_per_s": result["tokens"] / result["wall"],
        "p50_ms": float(np.percentile(lat, 50)),
        "p90_ms": float(np.percentile(lat, 90)),
        "p99_ms": float(np.percentile(lat, 99)),
        "largest_batch": stats["largest_batch"],
        "http_503": result["busy"],
        "answers": result["answers"],
    }


def print_table(run: Path, unbatched: dict, batched: dict, args: argparse.Namespace) -> None:
    same = "yes" if unbatched["answers"] == batched["answers"] else "NO"
    print(
        f"\n{run} (task {batched['task']}, {batched['path']}): {args.clients} clients, "
        f"{args.requests} requests; same answers with and without batching: {same}"
    )
    print("| batching | req/s | tokens/s | p50 ms | p90 ms | p99 ms | largest batch | 503s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in (unbatched, batched):
        name = (
            "off (--max-batch 1)" if r["max_batch"] == 1 else f"on (--max-batch {r['max_batch']})"
        )
        tokens = f"{r['tokens_per_s']:.0f}" if r["path"] != "/v1/classify" else "-"
        print(
            f"| {name} | {r['req_per_s']:.1f} | {tokens} | {r['p50_ms']:.0f} | {r['p90_ms']:.0f} "
            f"| {r['p99_ms']:.0f} | {r['largest_batch']} | {r['http_503']} |"
        )
    print(f"batched / unbatched requests/s: {batched['req_per_s'] / unbatched['req_per_s']:.2f}x")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "runs", nargs="+", type=Path, help="run directories (classification, regression, chat, lm)"
    )
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument(
        "--requests", type=int, default=128, help="requests per setting, after the warm-up"
    )
    parser.add_argument("--warmup", type=int, default=8, help="requests sent first and not counted")
    parser.add_argument(
        "--max-batch", type=int, default=8, help="the batched setting's --max-batch"
    )
    parser.add_argument("--max-queue", type=int, default=256, help="the server's --max-queue")
    parser.add_argument(
        "--max-tokens", type=int, default=32, help="max_tokens of each chat request"
    )
    parser.add_argument(
        "--threads", type=int, help="the server's OMP_NUM_THREADS (default: as this shell has it)"
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    print(
        f"load average (1, 5, 15 min) before: {load_average()}; {os.cpu_count()} CPUs; "
        f"server OMP_NUM_THREADS={args.threads or os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    rows = []
    for run in args.runs:
        unbatched = measure(run, 1, args)
        batched = measure(run, args.max_batch, args)
        rows += [unbatched, batched]
        print_table(run, unbatched, batched, args)
    print(f"\nload average (1, 5, 15 min) after: {load_average()}")
    if args.json:
        args.json.write_text(
            json.dumps([{k: v for k, v in r.items() if k != "answers"} for r in rows], indent=1)
        )


if __name__ == "__main__":
    main()
