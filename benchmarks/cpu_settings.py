#!/usr/bin/env python
"""Which CPU settings make our pretraining step fastest, and are they correct (issue 9 item 3).

One step = ``BrainMassForPreTraining`` forward on two precomputed pFC views ``(B, R, R)`` + backward + AdamW +
EMA (``benchmark_pretraining.train_step``). Variants, all timed interleaved in this process (order rotated every
round, median of ``--steps`` rounds after ``--warmup``):

* precision: fp32 vs bf16 autocast (this CPU's bf16 support is read from ``/proc/cpuinfo``: ``avx512_bf16``,
  ``amx_bf16``);
* torch threads: 1 vs 2 (``torch.set_num_threads`` before each step);
* attention: SDPA with the config's attention dropout (0.1, the authors'), SDPA with attention dropout 0
  (dropout inside SDPA forces its slow "math" kernel on a CPU), and eager attention.

Correctness of bf16: from identical weights, inputs and random seeds, the losses of ``--check-steps`` training
steps under fp32 and under bf16 autocast (relative difference per step), for each attention variant. Also the
SDPA kernel report (``benchmark_pretraining.sdpa_kernel_report``) at the model's attention shape.

Example::

    python benchmarks/cpu_settings.py --json benchmarks/results/cpu_settings.json --md benchmarks/results/cpu_settings.md
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

_HERE = Path(__file__).resolve().parent
for _path in (_HERE.parent, _HERE):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from harness import cpu_flags, interleaved_medians, json_line, machine_info, write_reports  # noqa: E402
from sdpa_report import sdpa_kernel_report  # noqa: E402
from step import flops_per_scan, make_inputs, make_optimizer, train_step  # noqa: E402
from brainmass_hf import BrainMassConfig, BrainMassForPreTraining  # noqa: E402

# attention variant → (config._attn_implementation, attention_probs_dropout_prob or None for the config's)
ATTENTION_VARIANTS = {"sdpa": ("sdpa", None), "sdpa_no_attn_dropout": ("sdpa", 0.0), "eager": ("eager", None)}


def build(preset: str, attention: str, num_rois: int, seed: int) -> BrainMassForPreTraining:
    impl, attn_dropout = ATTENTION_VARIANTS[attention]
    overrides = {"num_rois": num_rois}
    if attn_dropout is not None:
        overrides["attention_probs_dropout_prob"] = attn_dropout
    config = BrainMassConfig.from_preset(preset, **overrides)
    config._attn_implementation = impl
    torch.manual_seed(seed)
    return BrainMassForPreTraining(config).train()


def bf16_check(model: BrainMassForPreTraining, inputs: dict, steps: int, seed: int) -> dict:
    """Losses of ``steps`` training steps from the same weights, inputs and seeds under fp32 and bf16 autocast."""
    device = torch.device("cpu")
    losses = {}
    for precision in ("fp32", "bf16"):
        m = copy.deepcopy(model)
        opt = make_optimizer(m)
        torch.manual_seed(seed)
        losses[precision] = [float(train_step(m, m, opt, inputs, device, precision).detach()) for _ in range(steps)]
    rel = [abs(b - a) / abs(a) for a, b in zip(losses["fp32"], losses["bf16"])]
    return {"fp32_losses": losses["fp32"], "bf16_losses": losses["bf16"], "max_rel_diff": max(rel)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-rois", type=int, default=100)
    p.add_argument("--timepoints", type=int, default=168)
    p.add_argument("--threads", default="1,2", help="comma list of torch thread counts to compare")
    p.add_argument("--attention", default=",".join(ATTENTION_VARIANTS), help="comma list of attention variants")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--check-steps", type=int, default=3, help="training steps compared fp32 vs bf16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--note", default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--md", default=None)
    args = p.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    attentions = [a.strip() for a in args.attention.split(",") if a.strip()]
    for a in attentions:
        if a not in ATTENTION_VARIANTS:
            p.error(f"unknown attention variant {a!r}; choose from {list(ATTENTION_VARIANTS)}")
    device = torch.device("cpu")
    info = machine_info(device)
    info["cpu_flags"] = cpu_flags()
    t_start = time.perf_counter()

    models = {a: build(args.preset, a, args.num_rois, args.seed) for a in attentions}
    config = models[attentions[0]].config
    inputs = make_inputs("fc", args.batch_size, args.timepoints, config, device, args.seed)

    # correctness first (deep copies: the timed models below train on)
    checks = {a: bf16_check(models[a], inputs, args.check_steps, args.seed) for a in attentions}
    for a, c in checks.items():
        print(json_line({"mode": "bf16_check", "attention": a, **c,
                         "fp32_first_loss": c["fp32_losses"][0], "bf16_first_loss": c["bf16_losses"][0]}), flush=True)

    # the main attention variant is compared across threads; the others at the first thread count
    variants = {}
    optimizers = {a: make_optimizer(m) for a, m in models.items()}
    for a in attentions:
        for precision in ("fp32", "bf16"):
            for t in threads if a == attentions[0] else threads[:1]:
                def fn(a=a, precision=precision, t=t):
                    torch.set_num_threads(t)
                    return train_step(models[a], models[a], optimizers[a], inputs, device, precision).detach()
                variants[(a, precision, t)] = fn
    stats = interleaved_medians({k: v for k, v in variants.items()}, args.steps, args.warmup, device)
    torch.set_num_threads(threads[0])
    rows = []
    for (a, precision, t), st in stats.items():
        row = {"mode": "cpu_setting", "device_name": info["device_name"], "preset": args.preset,
               "batch_size": args.batch_size, "attention": a, "precision": precision, "threads": t,
               "ms_per_step": 1000.0 * st["median_s"], "step_ms": [round(1000.0 * x, 1) for x in st["times_s"]],
               "scans_per_s": args.batch_size / st["median_s"], "peak_memory_gib": st["peak_bytes"] / 2**30,
               "memory_kind": st["memory_kind"]}
        rows.append(row)
    gflops, flops_source = flops_per_scan(args.preset, args.num_rois)
    for row in rows:
        row["tflops"] = row["scans_per_s"] * gflops / 1000.0
        row["flops_source"] = flops_source
    fastest = min(rows, key=lambda r: r["ms_per_step"])

    heads = config.num_attention_heads
    sdpa = [r for prec in ("fp32", "bf16")
            for r in sdpa_kernel_report(device, prec, 2 * args.batch_size, args.num_rois, heads=(heads,))]
    for r in sdpa:
        print(json_line(r), flush=True)

    lines = [
        f"# CPU settings for the pretraining step — {info['device_name']}",
        "",
        f"* date: {info['date']}",
        *([f"* note: {args.note}"] if args.note else []),
        f"* CPU flags: {', '.join(info['cpu_flags']) or 'none found'}; {info['cpu_count']} cores visible; load "
        f"average at start {info['load_average_at_start']}; torch {info['torch']}",
        f"* {args.preset}, batch {args.batch_size}, two precomputed pFC views (R = {args.num_rois}); step = forward "
        f"+ backward + AdamW + EMA; median of {args.steps} interleaved rounds after {args.warmup}",
        "",
        "| attention | precision | threads | ms/step | scans/s | peak RSS (GiB) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        print(json_line(row), flush=True)
    for r in sorted(rows, key=lambda r: r["ms_per_step"]):
        lines.append(f"| {r['attention']} | {r['precision']} | {r['threads']} | {r['ms_per_step']:,.0f} | "
                     f"{r['scans_per_s']:.2f} | {r['peak_memory_gib']:.2f} |")
    lines += ["", f"Fastest: {fastest['attention']}, {fastest['precision']}, {fastest['threads']} thread(s).", "",
              "bf16 correctness (same weights, inputs and seeds; loss per training step):", "",
              "| attention | fp32 losses | bf16 losses | max relative diff |", "|---|---|---|---|"]
    for a, c in checks.items():
        lines.append(f"| {a} | {', '.join(f'{x:.4f}' for x in c['fp32_losses'])} | "
                     f"{', '.join(f'{x:.4f}' for x in c['bf16_losses'])} | {c['max_rel_diff']:.2%} |")
    lines += ["", f"SDPA forward + backward at the model's attention shape ({2 * args.batch_size} × {heads} heads):",
              "", "| precision | tokens | dropout | default backend | default ms | FLASH ms | MATH ms |",
              "|---|---|---|---|---|---|---|"]
    for r in sdpa:
        def cell(v):
            return f"{v:.2f}" if isinstance(v, float) else "n/a"
        lines.append(f"| {r['precision']} | {r['tokens']} | {r['dropout_p']} | {r['default_backend']} | "
                     f"{cell(r.get('default_ms'))} | {cell(r.get('FLASH_ATTENTION_ms'))} | {cell(r.get('MATH_ms'))} |")
    text = "\n".join(lines)
    print(text)
    print(f"\ntotal wall time {time.perf_counter() - t_start:.1f} s")
    payload = {"machine": info, "args": vars(args), "settings": rows, "bf16_check": checks, "sdpa": sdpa,
               "fastest": {k: fastest[k] for k in ("attention", "precision", "threads", "ms_per_step")}}
    write_reports(args.md, text, args.json, payload)
    return payload


if __name__ == "__main__":
    main()
