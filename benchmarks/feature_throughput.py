#!/usr/bin/env python
"""Feature-extraction throughput, ``encoder(**feature_extractor(scans))``, beside the matrix-product bound.

For each preset (``--presets small,base,large``; R = ``--num-rois``, random-init weights) a batch of
``--batch-size`` synthetic scans (``--timepoints`` × R, shared latent signals + noise) goes through
``BrainMassFeatureExtractor`` (full-scan FC, the checkpoint's FC settings) and ``BrainMassModel`` in eval mode under
``torch.inference_mode`` (``pooler_output``, what ``evaluate`` and ``explain`` read). Variants: fp32 and bf16
(autocast) × eager and ``torch.compile`` (compile time reported apart, not in the timed calls).

The bound: the forward's FLOPs per scan (matrix products and attention, counted with ``FlopCounterMode``) over the
rate at which this machine runs exactly those products: the same GEMMs and batched products at the same shapes and
dtype, into preallocated outputs, with nothing else in between (``products_only``), timed in the same rounds as the
model (the rounds interleave every variant, so a load change on a shared machine hits all of them alike).
``bound / achieved`` = how far the step is from the matrix-product bound (1 = at the bound).

Example::

    python benchmarks/feature_throughput.py --json benchmarks/results/cpu_feature_throughput.json \
        --md benchmarks/results/cpu_feature_throughput.md
"""

from __future__ import annotations

import argparse
import time

import torch

from harness import (
    PRECISION_DTYPES, autocast, interleaved_medians, json_line, load_average, machine_info, write_reports,
)
from step import random_scans
from brainmass_hf import BrainMassConfig, BrainMassFeatureExtractor, BrainMassModel


def forward_flops_per_scan(model: BrainMassModel) -> float:
    """FLOPs of one scan's forward (matrix products and attention; ``FlopCounterMode`` on a batch of 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    r = model.config.num_rois
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(connectivity=torch.eye(r).expand(2, r, r).contiguous())
    return counter.get_total_flops() / 2


def products_only(config: BrainMassConfig, batch: int, dtype: torch.dtype):
    """A callable running only the forward's matrix products for ``batch`` scans, at their shapes, into
    preallocated outputs: per layer the fused q-k-v projection, ``Q Kᵀ`` and ``A V`` per head, the output
    projection, the two feed-forward products; then the readout."""
    r, heads, ffn = config.num_rois, config.num_attention_heads, config.intermediate_size
    rows, d = batch * r, r // heads

    def pair(m, k, n):
        return torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype), torch.empty(m, n, dtype=dtype)

    layer = [pair(rows, r, 3 * r), pair(rows, r, r), pair(rows, r, ffn), pair(rows, ffn, r)]
    q, k, v = (torch.randn(batch * heads, r, d, dtype=dtype) for _ in range(3))
    scores, context = torch.empty(batch * heads, r, r, dtype=dtype), torch.empty(batch * heads, r, d, dtype=dtype)
    readout = pair(rows, r, config.readout_dim)

    def run():
        for _ in range(config.num_hidden_layers):
            for a, b, c in layer:
                torch.mm(a, b, out=c)
            torch.bmm(q, k.transpose(1, 2), out=scores)
            torch.bmm(scores, v, out=context)
        torch.mm(readout[0], readout[1], out=readout[2])

    return run


def extract(model, feature_extractor, scans, precision: str):
    """``model(**feature_extractor(scans)).pooler_output`` under ``precision``, no grad."""
    with torch.inference_mode(), autocast(torch.device("cpu"), precision):
        inputs = feature_extractor(scans, view="full")
        return model(connectivity=inputs["connectivity"]).pooler_output


def run_preset(preset: str, args) -> list[dict]:
    """Every (precision, mode) variant of one preset and its products-only bound, timed interleaved."""
    config = BrainMassConfig.from_preset(preset, num_rois=args.num_rois)
    torch.manual_seed(args.seed)
    model = BrainMassModel(config).eval()
    fe = BrainMassFeatureExtractor.from_config(config)
    scans = list(random_scans(args.batch_size, args.timepoints, args.num_rois, args.seed))
    flops = forward_flops_per_scan(model)
    fns, compile_s = {}, {}
    for mode in args.modes:
        runner = torch.compile(model) if mode == "compile" else model
        for precision in args.precisions:
            fn = (lambda runner=runner, precision=precision: extract(runner, fe, scans, precision))
            if mode == "compile":  # compile (and its recompiles per precision) outside the timed rounds
                t0 = time.perf_counter()
                fn()
                compile_s[(mode, precision)] = time.perf_counter() - t0
            fns[(mode, precision)] = fn
    for precision in args.precisions:
        fns[("products_only", precision)] = products_only(config, args.batch_size, PRECISION_DTYPES[precision])
    stats = interleaved_medians(fns, args.repeats, args.warmup, torch.device("cpu"))
    rows = []
    for (mode, precision), st in stats.items():
        if mode == "products_only":
            continue
        bound_s = stats[("products_only", precision)]["median_s"]
        rows.append({
            "mode": "feature_throughput", "preset": preset, "batch_size": args.batch_size, "num_rois": args.num_rois,
            "precision": precision, "compiled": mode == "compile", "scans_per_s": args.batch_size / st["median_s"],
            "gflops_per_scan": flops / 1e9, "achieved_gflops": args.batch_size * flops / st["median_s"] / 1e9,
            "gemm_gflops": args.batch_size * flops / bound_s / 1e9, "bound_scans_per_s": args.batch_size / bound_s,
            "bound_over_achieved": st["median_s"] / bound_s, "compile_s": compile_s.get((mode, precision)),
            "times_s": [round(t, 4) for t in st["times_s"]], "peak_rss_gib": st["peak_bytes"] / 2**30,
        })
        print(json_line(rows[-1]), flush=True)
    if "compile" in args.modes:
        torch._dynamo.reset()
    return rows


def markdown(info: dict, rows: list[dict], args, load_end) -> str:
    lines = [
        f"# Feature extraction, `encoder(**feature_extractor(scans))`, beside the matrix-product bound — "
        f"{info['device_name']}",
        "",
        f"* {info['date']}; torch {info['torch']}, transformers {info.get('transformers', '?')}, Python "
        f"{info['python']}; {info['cpu_count']} cores visible, torch threads {info['torch_threads']}",
        f"* load average (1, 5, 15 min) at start {info['load_average_at_start']}, at end {load_end}: a shared "
        "machine, other jobs ran beside this one",
        f"* batch {args.batch_size}, R = {args.num_rois}, T = {args.timepoints}, random-init weights, eval mode, "
        f"`torch.inference_mode`; median of {args.repeats} interleaved rounds after {args.warmup}",
        "* bound = forward FLOPs ÷ the rate of the same matrix products alone (same shapes and dtype, timed in the "
        "same rounds); `bound ÷ achieved` = 1 at the bound",
        "",
        "| preset | precision | mode | scans/s | GFLOP/scan | achieved GFLOP/s | products-only GFLOP/s | bound scans/s "
        "| bound ÷ achieved | compile s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['precision']} | {'compile' if r['compiled'] else 'eager'} | "
            f"{r['scans_per_s']:.1f} | "
            f"{r['gflops_per_scan']:.2f} | {r['achieved_gflops']:.0f} | {r['gemm_gflops']:.0f} | "
            f"{r['bound_scans_per_s']:.1f} | {r['bound_over_achieved']:.2f}× | "
            + (f"{r['compile_s']:.0f}" if r["compile_s"] is not None else "–") + " |"
        )
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", default="small,base,large")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--modes", default="eager,compile", help="eager, compile, or both")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-rois", type=int, default=100)
    p.add_argument("--timepoints", type=int, default=168)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument("--md", default=None)
    args = p.parse_args(argv)
    for name in ("presets", "precisions", "modes"):
        setattr(args, name, [x.strip() for x in getattr(args, name).split(",") if x.strip()])
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine_info(torch.device("cpu"))
    rows = [row for preset in args.presets for row in run_preset(preset, args)]
    text = markdown(info, rows, args, load_average())
    print(text)
    write_reports(args.md, text, args.json, {"machine": info, "args": vars(args), "load_average_at_end": load_average(),
                                            "results": rows})
    return rows


if __name__ == "__main__":
    main()
