"""`openblip serve` under load: dynamic batching against unbatched serving, in the same run.

For each setting (--max-batch 32 --max-wait-ms 10, then --max-batch 1) a fresh server runs the
same model in a subprocess on loopback; after a warm-up, `--requests` caption requests come from
`--clients` concurrent keep-alive clients (openblip/serve/loadgen.py, plain asyncio). Every
caption has the same length (min_length = max_length, greedy), so both settings do the same
work. Reported per setting: throughput (answers/s), p50 and p99 latency, mean batch size (from
the server's /metrics), errors; then the ratios. The client shares the machine with the server,
as a load balancer's health checks and a sidecar would; on a 2-core machine that costs both.

  python benchmarks/bench_serve.py                                  # tiny random model, 2,000 requests
  python benchmarks/bench_serve.py --preset base --requests 128 --clients 16   # BLIP-base size, random weights
  python benchmarks/bench_serve.py --model path/to/checkpoint
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def build_model(preset_name: str, root: Path) -> str:
    import torch

    from openblip.checkpoint_io import save_pretrained
    from openblip.config import preset
    from openblip.model.blip import Blip
    from openblip.tokenizer import Tokenizer

    torch.manual_seed(0)
    return str(save_pretrained(Blip(preset(preset_name, "full")).eval(), Tokenizer.default(), root / preset_name))


def start(model: str, extra: list[str], threads: int) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "openblip", "serve", "--model", model, "--port", "0", "--max-queue", "4096", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("openblip serve: http://"):
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, line.split()[2]


def metric(text: str, name: str) -> float:
    return sum(float(m) for m in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def run_setting(model: str, extra: list[str], args: argparse.Namespace, body: bytes) -> dict[str, object]:
    import httpx

    from openblip.serve.loadgen import load

    proc, url = start(model, extra, args.threads)
    try:
        load(url, "/v1/caption", body, requests=args.warmup, concurrency=args.clients)
        before = httpx.get(url + "/metrics", timeout=60).text
        result = load(url, "/v1/caption", body, requests=args.requests, concurrency=args.clients)
        after = httpx.get(url + "/metrics", timeout=60).text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    batches = metric(after, "openblip_batch_size_count") - metric(before, "openblip_batch_size_count")
    items = metric(after, "openblip_batch_size_sum") - metric(before, "openblip_batch_size_sum")
    return {
        "server": " ".join(extra),
        "ok": result.ok,
        "errors": args.requests - result.ok,
        "throughput": result.throughput,
        "p50_ms": 1000 * result.quantile(0.50),
        "p99_ms": 1000 * result.quantile(0.99),
        "mean_batch": items / batches if batches else float("nan"),
        "seconds": result.seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="checkpoint to serve (default: a random model of --preset)")
    ap.add_argument("--preset", default="tiny", help="architecture of the random model (default: tiny)")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=64)
    ap.add_argument("--max-length", type=int, default=20, help="caption tokens, [DEC] and prompt included, forced")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server (default: 1)")
    args = ap.parse_args()

    import base64
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(buf, "JPEG")
    image = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
    body = json.dumps(
        {"images": [image], "num_beams": 1, "max_length": args.max_length, "min_length": args.max_length}
    ).encode()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or build_model(args.preset, Path(tmp))
        batched = run_setting(model, ["--max-batch", "32", "--max-wait-ms", "10"], args, body)
        single = run_setting(model, ["--max-batch", "1", "--max-wait-ms", "0"], args, body)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu_name()}, {os.cpu_count()} cores",
        "commit": commit,
        "model": args.model or f"random {args.preset}",
        "load": f"{args.requests} caption requests, {args.clients} clients, {args.max_length} tokens forced, greedy",
    }
    print(json.dumps({**info, "batched": batched, "unbatched": single}))
    print(f"\n{info['date']} · {info['machine']} · commit {commit} · {info['model']} · {info['load']}\n")
    print("| server | throughput (req/s) | p50 (ms) | p99 (ms) | mean batch | errors |")
    print("|---|---|---|---|---|---|")
    for r in (batched, single):
        print(
            f"| {r['server']} | {r['throughput']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | "
            f"{r['mean_batch']:.1f} | {r['errors']} |"
        )
    ratio = float(batched["throughput"]) / max(float(single["throughput"]), 1e-9)  # type: ignore[arg-type]
    print(f"\nthroughput, batched / unbatched: {ratio:.2f}x")


if __name__ == "__main__":
    main()
