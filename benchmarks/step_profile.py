#!/usr/bin/env python
"""Where one CPU pretraining step of ours spends its time, by phase and by operator (issue 22 item 3).

The step is ``benchmark_pretraining.py --reference``'s: ``DataCollatorForPseudoFC`` on raw scans (validate, pad,
and the pFC views where the collator computes them) → ``BrainMassForPreTraining`` forward → backward → AdamW →
``update_target()`` (EMA). Phases are timed with wall clocks around each call over ``--steps`` steps (median);
the forward is split further with ``torch.profiler`` labels put on module calls from outside the model (forward
hooks on the attention, feed-forward, layer norms, readout and heads; the FC / pFC functions the forward calls
wrapped for the profiled step), so nothing in the
package changes for the measurement. The operator table (``aten::`` self time) of one profiled step comes with it.

Example::

    python benchmarks/step_profile.py --threads 2 --json benchmarks/results/cpu_step_profile.json \
        --md benchmarks/results/cpu_step_profile.md
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
from torch.autograd.profiler import record_function

from harness import autocast, json_line, load_average, machine_info, write_reports
from step import make_optimizer
from step_vs_reference import random_rows
from brainmass_hf import BrainMassConfig, BrainMassFeatureExtractor, BrainMassForPreTraining
from brainmass_hf.data_collator import DataCollatorForPseudoFC

PHASES = ("collation", "forward", "backward", "optimizer", "ema")
# module class name → forward label (the modules the encoder and heads are made of)
MODULE_LABELS = {"BrainMassSelfAttention": "fwd: attention", "BrainMassFeedForward": "fwd: feed-forward",
                 "LayerNorm": "fwd: layer norm", "BrainMassReadout": "fwd: readout",
                 "BrainMassMLPHead": "fwd: projection / predictor heads",
                 "BrainMassMaskedRoiHead": "fwd: masked-ROI heads"}


def label_modules(model: torch.nn.Module) -> list:
    """Forward pre/post hooks that open and close a profiler label around every module named in
    ``MODULE_LABELS``. Returns the handles."""
    handles = []
    for module in model.modules():
        label = MODULE_LABELS.get(type(module).__name__)
        if label is None:
            continue

        def pre(mod, args, label=label):
            mod._profile_label = record_function(label)
            mod._profile_label.__enter__()

        def post(mod, args, output):
            mod._profile_label.__exit__(None, None, None)

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    return handles


@contextlib.contextmanager
def fc_labelled():
    """Inside, the FC / pFC functions the model's forward calls (``modeling_brainmass``'s module-level
    ``connectivity_view`` / ``connectivity_views``) run under the profiler label ``fwd: FC and pFC views``; the
    module attributes are restored on exit."""
    from brainmass_hf import modeling_brainmass

    names = [n for n in ("connectivity_view", "connectivity_views") if hasattr(modeling_brainmass, n)]
    originals = {n: getattr(modeling_brainmass, n) for n in names}

    def labelled(function):
        def run(*args, **kwargs):
            with record_function("fwd: FC and pFC views"):
                return function(*args, **kwargs)
        return run

    try:
        for n in names:
            setattr(modeling_brainmass, n, labelled(originals[n]))
        yield
    finally:
        for n in names:
            setattr(modeling_brainmass, n, originals[n])


def build(args):
    config = BrainMassConfig.from_preset(args.preset, num_rois=args.num_rois)
    torch.manual_seed(args.seed)
    model = BrainMassForPreTraining(config).train()
    optimizer = make_optimizer(model, args.fused_adamw)
    collator = DataCollatorForPseudoFC(BrainMassFeatureExtractor.from_config(config))
    return model, optimizer, collator, random_rows(args.batch_size, args.timepoints, args.num_rois, args.seed)


def timed_step(model, optimizer, collator, rows, precision: str) -> dict:
    """One step, each phase timed with a wall clock (seconds)."""
    device, times = torch.device("cpu"), {}
    t0 = time.perf_counter()
    with record_function("collation"):
        inputs = {k: v for k, v in collator(rows).items() if isinstance(v, torch.Tensor)}
    t1 = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    with record_function("forward"), autocast(device, precision):
        loss = model(**inputs).loss
    t2 = time.perf_counter()
    with record_function("backward"):
        loss.backward()
    t3 = time.perf_counter()
    with record_function("optimizer"):
        optimizer.step()
    t4 = time.perf_counter()
    with record_function("ema"):
        model.update_target()
    t5 = time.perf_counter()
    for name, (a, b) in zip(PHASES, [(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)]):
        times[name] = b - a
    return times


def profile_one(model, optimizer, collator, rows, precision: str, top: int) -> tuple[list[dict], list[dict]]:
    """One step under ``torch.profiler``: (labelled phases and forward parts, inclusive ms; top ``aten::`` ops by
    self ms)."""
    from torch.profiler import ProfilerActivity, profile

    with fc_labelled(), profile(activities=[ProfilerActivity.CPU]) as prof:
        timed_step(model, optimizer, collator, rows, precision)
    events = prof.key_averages()
    labels = set(PHASES) | set(MODULE_LABELS.values()) | {"fwd: FC and pFC views"}
    parts = [{"part": e.key, "ms": round(e.cpu_time_total / 1000.0, 1), "calls": e.count}
             for e in events if e.key in labels]
    ops = sorted((e for e in events if e.key.startswith("aten::")), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events if e.key.startswith("aten::")) or 1
    return parts, [{"op": e.key, "self_ms": round(e.self_cpu_time_total / 1000.0, 1),
                    "share": round(e.self_cpu_time_total / total, 3), "calls": e.count} for e in ops[:top]]


def markdown(info, args, phases, parts, ops, load_end) -> str:
    total = sum(phases.values())
    lines = [
        f"# One CPU pretraining step of ours, by phase and by operator — {info['device_name']}", "",
        f"* {info['date']}; torch {info['torch']}, transformers {info.get('transformers', '?')}; torch threads "
        f"{info['torch_threads']}; load average at start {info['load_average_at_start']}, at end {load_end} (a "
        "shared machine)",
        f"* {args.preset}, batch {args.batch_size}, R = {args.num_rois}, T = {args.timepoints}, {args.precision}, "
        f"AdamW ({'fused' if args.fused_adamw else 'foreach'}); median of {args.steps} steps after {args.warmup}",
        "", "| phase | ms (median) | share |", "|---|---|---|",
    ]
    lines += [f"| {name} | {1000 * phases[name]:,.0f} | {phases[name] / total:.0%} |" for name in PHASES]
    lines += [f"| **step** | **{1000 * total:,.0f}** | |", "",
              "Forward parts and phases in one profiled step (inclusive ms; the profiler adds overhead):", "",
              "| part | ms | calls |", "|---|---|---|"]
    lines += [f"| {p['part']} | {p['ms']:,.1f} | {p['calls']} |" for p in sorted(parts, key=lambda p: -p["ms"])]
    lines += ["", "Operators by self time in the profiled step:", "", "| op | self ms | share | calls |",
              "|---|---|---|---|"]
    lines += [f"| `{o['op']}` | {o['self_ms']:,.1f} | {o['share']:.1%} | {o['calls']} |" for o in ops]
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-rois", type=int, default=100)
    p.add_argument("--timepoints", type=int, default=168)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--fused-adamw", action=argparse.BooleanOptionalAction, default=True,
                   help="fused AdamW (default, as `brainmass pretrain`) or foreach (--no-fused-adamw)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument("--md", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine_info(torch.device("cpu"))
    model, optimizer, collator, rows = build(args)
    for _ in range(args.warmup):
        timed_step(model, optimizer, collator, rows, args.precision)
    runs = [timed_step(model, optimizer, collator, rows, args.precision) for _ in range(args.steps)]
    phases = {name: statistics.median(r[name] for r in runs) for name in PHASES}
    handles = label_modules(model)
    parts, ops = profile_one(model, optimizer, collator, rows, args.precision, args.top)
    for handle in handles:
        handle.remove()
    text = markdown(info, args, phases, parts, ops, load_average())
    print(text)
    payload = {"machine": info, "args": vars(args), "phases_s": phases, "steps_s": runs, "parts": parts, "ops": ops,
               "load_average_at_end": load_average()}
    print(json_line({"mode": "step_profile", **{f"{k}_ms": 1000 * v for k, v in phases.items()}}))
    write_reports(args.md, text, args.json, payload)
    return payload


if __name__ == "__main__":
    main()
