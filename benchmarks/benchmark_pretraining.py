#!/usr/bin/env python
"""Throughput of one full BrainMass pretraining step, beside the authors' measured anchor (SPEC §6).

One step = ``BrainMassForPreTraining`` forward on two pFC views (LRA/BYOL on both views through the online and
the EMA target encoder, masked-ROI reconstruction + classification on view 1), backward, ``AdamW`` step
(lr 3e-4, weight decay 5e-5, the authors' settings) and ``model.update_target()`` (the EMA of the target).

Inputs are synthetic, built once before timing and already on the device (host-to-device copies are not timed):

* ``--inputs fc`` (default, as SPEC §6): two pFC views ``(B, R, R)`` per step, made from random time series
  ``(B, T, R)`` with :func:`brainmass_hf.connectivity.connectivity_views` on two random 80 % subsets of the
  time points (the pFC drop); R = 100, T = 168. The masked ROIs are drawn once, as the collator draws them.
* ``--inputs time_series``: the model gets ``time_series`` ``(B, T, R)`` + the points each view keeps (drawn once,
  as the collator draws them) and computes the two pFC views itself, on its device, inside the timed step
  (``config.fc_kind``, Ledoit-Wolf by default).

Reported per (preset, batch, precision, inputs): samples/s, ms/step, peak memory (``torch.cuda.max_memory_allocated``
on CUDA; on CPU the peak resident set size of the process sampled during the timed steps), and on CUDA the SPEC §6
anchor (official code, one H200, torch 2.11) with our speed-up over it, plus the achieved TFLOP/s using SPEC §6's
FLOPs per scan (valid for R = 100 only). CUDA out-of-memory is reported as ``OOM`` and the run goes on.

Modes and options beyond the default step (README.md has the details):

* ``--reference``: our full step from raw scans (collator + model + AdamW + EMA) beside the per-scan reference of
  ``reference_step.py`` (nilearn FC per scan, ``nn.TransformerEncoderLayer`` stack, Python loops), timed interleaved
  in this process; one JSON line per case with both scans/s and the ratio; ``--profile`` adds a profiler table.
* ``--sdpa-report``: the SDPA backend picked, and each forced backend's ms, for head dims 20/10/5 at R = 100.
* ``--gradient-checkpointing``, ``--compile``: the GPU levers (``gpu_run.sh`` runs them); ``--no-fused-adamw``: torch's
  foreach AdamW instead of the fused one ``brainmass pretrain`` uses.

Examples::

    # ours vs the per-scan reference on this CPU
    python benchmarks/benchmark_pretraining.py --device cpu --threads 1 --presets small --batch-sizes 32 --reference
    # quick CPU check
    python benchmarks/benchmark_pretraining.py --device cpu --presets small --batch-sizes 8 --steps 3 --warmup 1
    # the GPU run (default set: small 256, base 64/256, large 64; fp32 + bf16)
    python benchmarks/benchmark_pretraining.py --json benchmarks/results/gpu_pretraining.json \
        --md benchmarks/results/gpu_pretraining.md

Timings on a shared machine are noisy; compare numbers from the same run or the same warm machine only.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

# Runs from a checkout without installing the package (the harness puts the repository root on sys.path).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import RssSampler, fmt_number, is_oom, json_line, machine_info, sync, write_reports  # noqa: E402
from sdpa_report import sdpa_kernel_report  # noqa: E402
from step import (  # noqa: E402
    ANCHOR, ANCHOR_DEVICE, DEFAULT_BATCH_SIZES, GFLOPS_PER_SCAN, PRECISIONS, build_model, checkpointing_on,
    flops_per_scan, make_inputs, make_optimizer, train_step,
)
from step_vs_reference import reference_table, run_reference_case  # noqa: E402

_fmt = fmt_number


# ------------------------------------------------------------------------------------------------------------
# One configuration
# ------------------------------------------------------------------------------------------------------------
def run_config(preset: str, batch: int, precision: str, inputs_kind: str, args, device: torch.device) -> dict:
    result = {"preset": preset, "batch_size": batch, "precision": precision, "inputs": inputs_kind,
              "steps": args.steps, "warmup": args.warmup, "compile": args.compile, "status": "ok"}
    model = optimizer = inputs = step_model = scaler = None
    prev_tf32 = None
    if device.type == "cuda":
        prev_tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = precision == "tf32"
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        torch.manual_seed(args.seed)
        model = build_model(preset, args, device)
        config = model.config
        result["gradient_checkpointing"] = checkpointing_on(model)
        result["parameters"] = sum(p.numel() for p in model.parameters())
        result["attn_implementation"] = config._attn_implementation
        optimizer = make_optimizer(model, args.fused_adamw)
        if precision == "fp16":
            scaler = torch.amp.GradScaler(device.type)
        inputs = make_inputs(inputs_kind, batch, args.timepoints, config, device, args.seed)
        step_model = torch.compile(model) if args.compile else model

        def step():
            return train_step(model, step_model, optimizer, inputs, device, precision, scaler)

        t0 = time.perf_counter()
        for i in range(max(args.warmup, 0)):
            loss = step()
            if i == 0:
                sync(device)
                result["first_step_s"] = round(time.perf_counter() - t0, 3)
        sync(device)
        result["warmup_s"] = round(time.perf_counter() - t0, 3)

        sampler = RssSampler() if device.type == "cpu" else None
        if sampler is not None:
            sampler.__enter__()
        step_s = []
        try:
            t_all = time.perf_counter()
            for _ in range(args.steps):
                t0 = time.perf_counter()
                loss = step()
                sync(device)  # one sync per step, so each step is timed on its own
                step_s.append(time.perf_counter() - t0)
            elapsed = time.perf_counter() - t_all
        finally:
            if sampler is not None:
                sampler.__exit__(None, None, None)
        final_loss = float(loss.detach().float())
        median = statistics.median(step_s)
        result["loss"] = round(final_loss, 4)
        result["step_ms"] = [round(1000.0 * t, 2) for t in step_s]
        result["ms_per_step"] = 1000.0 * median  # median: robust to a noisy shared machine
        result["ms_per_step_mean"] = 1000.0 * elapsed / args.steps
        result["ms_per_step_min"] = 1000.0 * min(step_s)
        result["samples_per_s"] = batch / median
        result["samples_per_s_mean"] = batch * args.steps / elapsed
        if device.type == "cuda":
            result["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
            result["memory_kind"] = "max_memory_allocated"
        else:
            result["peak_memory_gib"] = sampler.peak / 2**30
            result["memory_kind"] = "peak RSS (process)"
        gflops, source = flops_per_scan(preset, args.num_rois)
        result["gflops_per_scan"], result["flops_source"] = gflops, source
        result["tflops"] = result["samples_per_s"] * gflops / 1000.0
    except Exception as exc:  # noqa: BLE001 -- report and go on with the next configuration
        if is_oom(exc):
            result["status"] = "OOM"
        else:
            result["status"] = "error"
            traceback.print_exc(file=sys.stderr)
        result["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    finally:
        del model, optimizer, inputs, step_model, scaler
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = prev_tf32
        if args.compile:
            torch._dynamo.reset()

    anchor = ANCHOR.get((preset, batch), "missing") if args.num_rois == 100 else "missing"
    if anchor != "missing":
        if anchor is None:
            result["anchor"] = "OOM"
        else:
            ref = {"fp32": anchor[0], "tf32": anchor[0], "bf16": anchor[1]}.get(precision)
            result["anchor_samples_per_s"] = ref
            result["anchor_peak_memory_gib_fp32"] = anchor[2]
            if device.type == "cuda" and ref and result["status"] == "ok":
                result["speedup_vs_anchor"] = result["samples_per_s"] / ref
    return result


# ------------------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------------------
def markdown_table(results: list[dict], device: torch.device) -> str:
    cuda = device.type == "cuda"
    mem_head = "peak GPU mem (GiB)" if cuda else "peak RSS (GiB)"
    head = ["preset", "batch", "precision", "inputs", "samples/s", "ms/step (median)", "ms/step (min)", mem_head]
    if cuda:
        head += ["TFLOP/s", "anchor samples/s (H200)", "speed-up vs anchor", "anchor mem fp32 (GiB)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        ok = r["status"] == "ok"
        row = [r["preset"], str(r["batch_size"]), r["precision"] + (" +compile" if r.get("compile") else "")
               + (" +checkpointing" if r.get("gradient_checkpointing") else ""),
               r["inputs"],
               _fmt(r.get("samples_per_s")) if ok else r["status"],
               _fmt(r.get("ms_per_step")) if ok else r["status"],
               _fmt(r.get("ms_per_step_min")) if ok else r["status"],
               _fmt(r.get("peak_memory_gib"), 2) if ok else r["status"]]
        if cuda:
            anchor = r.get("anchor")
            row += [_fmt(r.get("tflops"), 2) if ok else r["status"],
                    anchor if anchor == "OOM" else _fmt(r.get("anchor_samples_per_s"), 0),
                    _fmt(r.get("speedup_vs_anchor"), 2, "×") if ok else "–",
                    anchor if anchor == "OOM" else _fmt(r.get("anchor_peak_memory_gib_fp32"), 1)]
        lines.append("| " + " | ".join(row) + " |")
    failed = [r for r in results if r["status"] != "ok"]
    if failed:
        lines.append("")
        for r in failed:
            lines.append(f"* {r['preset']} b{r['batch_size']} {r['precision']} {r['inputs']}: {r['status']} "
                         f"({r.get('error', '')})")
    return "\n".join(lines)


def header(info: dict, args) -> str:
    where = info.get("gpu", "CPU")
    lines = [
        f"# BrainMass pretraining step benchmark — {where}",
        "",
        f"* date: {info['date']}",
        *([f"* note: {args.note}"] if args.note else []),
        f"* device: {info['device']}" + (f" ({info['gpu']}, {info['gpu_memory_gib']} GiB, CUDA {info['cuda']})"
                                         if "gpu" in info else ""),
        f"* host: {info['platform']}, {info['cpu']}, {info['cpu_count']} CPU cores visible, "
        f"torch threads {info['torch_threads']}, "
        f"load average at start {info.get('load_average_at_start')}",
        f"* torch {info['torch']}, transformers {info.get('transformers', '?')}, Python {info['python']}",
        f"* step: forward (2 pFC views, LRA + MRM + MRC) + backward + AdamW (lr 3e-4, wd 5e-5) + EMA update; "
        f"R = {args.num_rois}, T = {args.timepoints}; warm-up {args.warmup}, timed {args.steps} steps"
        + (", torch.compile" if args.compile else ""),
    ]
    if args.reference:
        lines += [
            "* --reference: both steps from the same raw scans (synthetic, shared latent signals + noise). Ours: "
            "`DataCollatorForPseudoFC` (default placement) + `BrainMassForPreTraining` + AdamW ("
            f"{'fused, as `brainmass pretrain`' if args.fused_adamw else 'foreach'}) + `update_target()`. "
            "Reference (`reference_step.py`): numpy drop + nilearn `ConnectivityMeasure` per scan and view, "
            "`nn.TransformerEncoderLayer` stack, Python loops over scans for masking / masked-ROI heads / losses, "
            "AdamW, EMA as a loop over parameters",
            "* timed interleaved in one process (order rotated each round); scans/s = batch / median step time; "
            "ratio = ours / reference",
        ]
    else:
        lines += [
            "* inputs already on the device; `fc` = two precomputed pFC views, `time_series` = the drawn view masks, pFC computed in forward",
            "* each timed step ends with a device sync; samples/s = batch / median step time (mean-based figures and "
            "every step time are in the JSON)",
        ]
    if info["device"].startswith("cuda"):
        lines.append(f"* anchor: SPEC §6, {ANCHOR_DEVICE}; speed-up = ours / anchor at the same precision "
                     "(different GPU if ours is not an H200); TFLOP/s uses SPEC §6 FLOPs per scan")
    else:
        lines.append("* CPU run: peak memory is the process RSS sampled during the timed steps; no anchor "
                     "comparison (the anchor is a GPU). Shared cores make timings noisy.")
    return "\n".join(lines)


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if available, else cpu)")
    p.add_argument("--presets", default="small,base,large", help="comma list of small, base, large, tiny")
    p.add_argument("--batch-sizes", default=None,
                   help="comma list applied to every preset (default: small 256; base 64,256; large 64)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per configuration (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps (default 3)")
    p.add_argument("--precision", default="fp32,bf16",
                   help="comma list of fp32, tf32 (fp32 with TF32 matmuls, CUDA), bf16 (autocast), "
                        "fp16 (autocast + GradScaler)")
    p.add_argument("--inputs", default="fc", help="fc, time_series, or both as a comma list (default fc)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (compile time is in warm-up)")
    p.add_argument("--fused-adamw", action=argparse.BooleanOptionalAction, default=True,
                   help="our AdamW fused (default: what `brainmass pretrain` runs) or, with --no-fused-adamw, foreach")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute each encoder layer in backward (less activation memory; for large at batch 256)")
    p.add_argument("--reference", action="store_true",
                   help="time our full step from raw scans (collator + model + AdamW + EMA) beside the per-scan "
                        "reference step of reference_step.py (nilearn FC per scan, nn.TransformerEncoderLayer, "
                        "Python loops), interleaved in this process; print the ratio")
    p.add_argument("--profile", action="store_true",
                   help="with --reference: after timing, profile one step of each (torch.profiler; top operators "
                        "in the JSON report, full tables on stderr)")
    p.add_argument("--sdpa-report", action="store_true",
                   help="first report which SDPA backend runs (and how fast each forced one is) for head dims "
                        "20/10/5 at R = 100, with and without attention dropout")
    p.add_argument("--sdpa-batch", type=int, default=64, help="batch of the --sdpa-report inputs (default 64)")
    p.add_argument("--attn-implementation", default=None, help="sdpa (model default) or eager")
    p.add_argument("--fc-kind", default=None, help="ledoit_wolf (default config) or pearson")
    p.add_argument("--num-rois", type=int, default=100)
    p.add_argument("--timepoints", type=int, default=168)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--note", default=None, help="free text added to the report header (e.g. 'cores shared')")
    p.add_argument("--json", default=None, help="write machine info + all results here")
    p.add_argument("--md", default=None, help="write the header + Markdown table here")
    args = p.parse_args(argv)
    args.presets = _csv(args.presets)
    args.precisions = _csv(args.precision)
    args.inputs_kinds = _csv(args.inputs)
    for prec in args.precisions:
        if prec not in PRECISIONS:
            p.error(f"unknown precision {prec!r}; choose from {PRECISIONS}")
    for kind in args.inputs_kinds:
        if kind not in ("fc", "time_series"):
            p.error(f"unknown inputs {kind!r}; choose fc or time_series")
    if args.batch_sizes is not None:
        args.batch_sizes = [int(b) for b in _csv(args.batch_sizes)]
    if args.steps < 1:
        p.error("--steps must be at least 1")
    return args


def main(argv=None) -> list[dict]:
    """Runs the cases of the command line; returns every result dict (``mode``: ``sdpa``, ``step`` or
    ``reference``), also printed one JSON line per case."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    info = machine_info(device)
    print(header(info, args), flush=True)
    print(flush=True)

    sdpa_rows, results = [], []
    t_start = time.perf_counter()

    def report():  # after every configuration, so a run cut short by a time limit keeps what it measured
        table = reference_table(results) if args.reference else markdown_table(results, device)
        payload = {"machine": info, "args": dict(vars(args)),
                   "anchor": {f"{k[0]}/{k[1]}": v for k, v in ANCHOR.items()}, "anchor_device": ANCHOR_DEVICE,
                   "gflops_per_scan": GFLOPS_PER_SCAN, "wall_s": round(time.perf_counter() - t_start, 1),
                   "sdpa": sdpa_rows, "results": results}
        write_reports(args.md, header(info, args) + "\n\n" + table, args.json, payload)
        return table

    if args.sdpa_report:
        for precision in args.precisions:
            for row in sdpa_kernel_report(device, precision, args.sdpa_batch, args.num_rois):
                sdpa_rows.append(row)
                print(json_line(row), flush=True)
        report()

    for preset in args.presets:
        for batch in args.batch_sizes or DEFAULT_BATCH_SIZES.get(preset, [64]):
            for inputs_kind in ["raw scans"] if args.reference else args.inputs_kinds:
                for precision in args.precisions:
                    if args.reference:
                        r = run_reference_case(preset, batch, precision, args, device)
                        msg = (f"ours {r['scans_per_s']:.2f} scans/s, reference {r['reference_scans_per_s']:.2f}, "
                               f"ratio {r['ratio']:.2f}" if r["status"] == "ok" else r["status"])
                    else:
                        r = dict(mode="step", device_name=info["device_name"],
                                 **run_config(preset, batch, precision, inputs_kind, args, device))
                        if r["status"] == "ok":
                            r["scans_per_s"] = r["samples_per_s"]
                        msg = (f"{r['samples_per_s']:.1f} samples/s, {r['ms_per_step']:.1f} ms/step, "
                               f"peak {r['peak_memory_gib']:.2f} GiB, loss {r['loss']}" if r["status"] == "ok"
                               else r["status"])
                    results.append(r)
                    print(json_line(r), flush=True)
                    print(f"[{time.perf_counter() - t_start:6.1f}s] {preset} b{batch} {precision} {inputs_kind}: "
                          f"{msg}", file=sys.stderr, flush=True)
                    report()
    print(report())
    print(f"\ntotal wall time {time.perf_counter() - t_start:.1f} s")
    return sdpa_rows + results


if __name__ == "__main__":
    main()
