#!/usr/bin/env python
"""Matrix-product throughput at the shapes of a small pretraining step, fp32 vs bf16, on this device.

A CPU step of BrainMass is bound by its matrix products (``results/cpu_reference_profile.md``), so how fast this
machine multiplies at those shapes bounds any step: this script times ``a @ b`` for the feed-forward and projection
shapes of the small preset (batch 32 × 2 views × 102 tokens = 6,528 rows, R = 100, FFN 1,024) in fp32 and bf16 and
reports GFLOP/s per shape (median of ``--repeats`` timed calls after 2 warm-up calls).

Example::

    python benchmarks/cpu_matmul.py --threads 1 --json benchmarks/results/cpu_matmul.json --md benchmarks/results/cpu_matmul.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

from harness import json_line, machine_info, write_reports  # noqa: E402

# (rows, inner, cols): FFN up / down, the fused q-k-v projection, the attention output projection
SHAPES = {"ffn_in": (6528, 100, 1024), "ffn_out": (6528, 1024, 100), "qkv": (6528, 100, 300), "attn_out": (6528, 100, 100)}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def time_matmul(rows: int, inner: int, cols: int, dtype: torch.dtype, repeats: int, device: torch.device) -> float:
    """Median seconds of one ``(rows, inner) @ (inner, cols)`` product."""
    a = torch.randn(rows, inner, device=device).to(dtype)
    b = torch.randn(inner, cols, device=device).to(dtype)
    times = []
    for i in range(repeats + 2):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--rows", type=int, default=None, help="override the row count (e.g. small for a smoke run)")
    p.add_argument("--json", default=None)
    p.add_argument("--md", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    info = machine_info(device)
    results = []
    for name, (rows, inner, cols) in SHAPES.items():
        rows = args.rows or rows
        for precision, dtype in DTYPES.items():
            seconds = time_matmul(rows, inner, cols, dtype, args.repeats, device)
            results.append({"device_name": info["device_name"], "shape": name, "rows": rows, "inner": inner,
                            "cols": cols, "precision": precision, "ms": 1000.0 * seconds,
                            "gflops": 2.0 * rows * inner * cols / seconds / 1e9})
            print(json_line(results[-1]), flush=True)
    lines = [f"# Matrix products at the small preset's shapes — {info['device_name']}", "",
             f"* date: {info['date']}; torch {info['torch']}, torch threads {info['torch_threads']}, load average at "
             f"start {info['load_average_at_start']}; median of {args.repeats} calls after 2",
             "", "| shape | rows × inner × cols | precision | ms | GFLOP/s |", "|---|---|---|---|---|"]
    lines += [f"| {r['shape']} | {r['rows']} × {r['inner']} × {r['cols']} | {r['precision']} | {r['ms']:.2f} | "
              f"{r['gflops']:.0f} |" for r in results]
    text = "\n".join(lines)
    print(text)
    write_reports(args.md, text, args.json, {"machine": info, "args": vars(args), "results": results})
    return results


if __name__ == "__main__":
    main()
