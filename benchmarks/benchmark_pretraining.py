#!/usr/bin/env python
"""Throughput of one full BrainMass pretraining step, beside the authors' measured anchor (SPEC §6).

One step = ``BrainMassForPreTraining`` forward on two pFC views (LRA/BYOL on both views through the online and
the EMA target encoder, masked-ROI reconstruction + classification on view 1), backward, ``AdamW`` step
(lr 3e-4, weight decay 5e-5, the authors' settings) and ``model.update_target()`` (the EMA of the target).

Inputs are synthetic, built once before timing and already on the device (host-to-device copies are not timed):

* ``--inputs fc`` (default, as SPEC §6): two pFC views ``(B, R, R)`` per step, made from random time series
  ``(B, T, R)`` with :func:`brainmass_hf.connectivity.functional_connectivity` on two random 80 % subsets of the
  time points (the pFC drop); R = 100, T = 168.
* ``--inputs time_series``: the model gets ``time_series`` ``(B, T, R)`` and draws the two pFC views itself, on
  its device, inside the timed step (``config.fc_kind``, Ledoit-Wolf by default).

Reported per (preset, batch, precision, inputs): samples/s, ms/step, peak memory (``torch.cuda.max_memory_allocated``
on CUDA; on CPU the peak resident set size of the process sampled during the timed steps), and on CUDA the SPEC §6
anchor (official code, one H200, torch 2.11) with our speed-up over it, plus the achieved TFLOP/s using SPEC §6's
FLOPs per scan (valid for R = 100 only). CUDA out-of-memory is reported as ``OOM`` and the run goes on.

Examples::

    # quick CPU check
    python benchmarks/benchmark_pretraining.py --device cpu --presets small --batch-sizes 8 --steps 3 --warmup 1
    # the GPU run (default set: small 256, base 64/256, large 64; fp32 + bf16)
    python benchmarks/benchmark_pretraining.py --json benchmarks/results/gpu_pretraining.json \
        --md benchmarks/results/gpu_pretraining.md

Timings on a shared machine are noisy; compare numbers from the same run or the same warm machine only.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import resource
import statistics
import sys
import threading
import time
import traceback
from pathlib import Path

import torch

# Runs from a checkout without installing the package.
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from brainmass_hf import BrainMassConfig, BrainMassForPreTraining  # noqa: E402
from brainmass_hf.connectivity import functional_connectivity, pseudo_fc_time_mask  # noqa: E402

# SPEC §6: official code, one NVIDIA H200, torch 2.11, FC inputs 100x100, AdamW, EMA.
ANCHOR_DEVICE = "NVIDIA H200 (official code, torch 2.11)"
ANCHOR = {
    # (preset, batch): (fp32 samples/s, bf16 autocast samples/s, fp32 peak GiB); None = out of memory on 139 GiB
    ("small", 256): (605.0, 497.0, 10.6),
    ("base", 64): (207.0, 201.0, 12.8),
    ("base", 256): (344.0, 389.0, 49.9),
    ("large", 64): (138.0, 118.0, 46.7),
    ("large", 256): None,
}
# SPEC §6: forward + backward FLOPs per scan per step (all four encoder passes + target), R = 100.
GFLOPS_PER_SCAN = {"small": 6.2, "base": 21.4, "large": 79.6}
DEFAULT_BATCH_SIZES = {"small": [256], "base": [64, 256], "large": [64], "tiny": [256]}
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")


# ------------------------------------------------------------------------------------------------------------
# Environment
# ------------------------------------------------------------------------------------------------------------
def _cpu_model() -> str:
    """CPU model name and its bf16 matrix extensions (AMX / AVX512-BF16), from /proc/cpuinfo when present."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                platform.machine())
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    extras = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return name + (f" ({', '.join(extras)})" if extras else "")


def machine_info(device: torch.device) -> dict:
    info = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "device": str(device),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except Exception:  # pragma: no cover
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
    return info


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _RssSampler:
    """Peak resident set size of this process (bytes), sampled every few ms in a thread (CPU runs)."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = None
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _rss(self) -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self._page
        except OSError:  # not Linux: lifetime peak (KiB on Linux, bytes on macOS)
            scale = 1 if sys.platform == "darwin" else 1024
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(self.interval)

    def __enter__(self):
        self.peak = self._rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def _is_oom(exc: BaseException) -> bool:
    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(torch.cuda, "OutOfMemoryError", None)) if t is not None)
    if oom_types and isinstance(exc, oom_types):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


# ------------------------------------------------------------------------------------------------------------
# Inputs and one step
# ------------------------------------------------------------------------------------------------------------
def make_inputs(kind: str, batch: int, num_rois: int, num_timepoints: int, fc_kind: str, drop_ratio: float,
                device: torch.device, seed: int) -> dict:
    """Synthetic model inputs on ``device`` (built on the CPU, copied once)."""
    g = torch.Generator().manual_seed(seed)
    ts = torch.randn(batch, num_timepoints, num_rois, generator=g)
    if kind == "time_series":
        return {"time_series": ts.to(device)}
    full = torch.ones(batch, num_timepoints, dtype=torch.bool)
    views = []
    for _ in range(2):  # two pFC views: FC of two independent random 80 % subsets of the time points
        kept = pseudo_fc_time_mask(full, drop_ratio=drop_ratio, generator=g)
        views.append(functional_connectivity(ts, kept, kind=fc_kind))
    return {"connectivity_view1": views[0].to(device), "connectivity_view2": views[1].to(device)}


def _autocast(device: torch.device, precision: str):
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=device.type, dtype=dtype)
    return torch.autocast(device_type=device.type, enabled=False)


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
        overrides = {"num_rois": args.num_rois}
        if args.fc_kind:
            overrides["fc_kind"] = args.fc_kind
        config = BrainMassConfig.from_preset(preset, **overrides)
        if args.attn_implementation:
            config._attn_implementation = args.attn_implementation
        model = BrainMassForPreTraining(config).to(device).train()
        result["parameters"] = sum(p.numel() for p in model.parameters())
        result["attn_implementation"] = config._attn_implementation
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=3e-4, weight_decay=5e-5, fused=args.fused_adamw or None)
        if precision == "fp16":
            scaler = torch.amp.GradScaler(device.type)
        inputs = make_inputs(inputs_kind, batch, args.num_rois, args.timepoints, config.fc_kind,
                             config.pfc_drop_ratio, device, args.seed)
        step_model = torch.compile(model) if args.compile else model

        def step():
            optimizer.zero_grad(set_to_none=True)
            with _autocast(device, precision):
                loss = step_model(**inputs).loss
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            model.update_target()
            return loss

        t0 = time.perf_counter()
        for i in range(max(args.warmup, 0)):
            loss = step()
            if i == 0:
                _sync(device)
                result["first_step_s"] = round(time.perf_counter() - t0, 3)
        _sync(device)
        result["warmup_s"] = round(time.perf_counter() - t0, 3)

        sampler = _RssSampler() if device.type == "cpu" else None
        if sampler is not None:
            sampler.__enter__()
        step_s = []
        try:
            t_all = time.perf_counter()
            for _ in range(args.steps):
                t0 = time.perf_counter()
                loss = step()
                _sync(device)  # one sync per step, so each step is timed on its own
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
        if args.num_rois == 100 and preset in GFLOPS_PER_SCAN:
            result["tflops"] = result["samples_per_s"] * GFLOPS_PER_SCAN[preset] / 1000.0
    except Exception as exc:  # noqa: BLE001 -- report and go on with the next configuration
        if _is_oom(exc):
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
def _fmt(value, digits=1, suffix=""):
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    return f"{value:,.{digits}f}{suffix}"


def markdown_table(results: list[dict], device: torch.device) -> str:
    cuda = device.type == "cuda"
    mem_head = "peak GPU mem (GiB)" if cuda else "peak RSS (GiB)"
    head = ["preset", "batch", "precision", "inputs", "samples/s", "ms/step (median)", "ms/step (min)", mem_head]
    if cuda:
        head += ["TFLOP/s", "anchor samples/s (H200)", "speed-up vs anchor", "anchor mem fp32 (GiB)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        ok = r["status"] == "ok"
        row = [r["preset"], str(r["batch_size"]), r["precision"] + (" +compile" if r.get("compile") else ""),
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
        "* inputs already on the device; `fc` = two precomputed pFC views, `time_series` = pFC computed in forward",
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
    p.add_argument("--fused-adamw", action="store_true", help="AdamW(fused=True) (CUDA); default foreach")
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
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    info = machine_info(device)
    print(header(info, args), flush=True)
    print(flush=True)

    results = []
    t_start = time.perf_counter()

    def write_reports():  # after every configuration, so a run cut short by a time limit keeps what it measured
        table = markdown_table(results, device)
        if args.md:
            Path(args.md).parent.mkdir(parents=True, exist_ok=True)
            Path(args.md).write_text(header(info, args) + "\n\n" + table + "\n")
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            payload = {"machine": info, "args": dict(vars(args)),
                       "anchor": {f"{k[0]}/{k[1]}": v for k, v in ANCHOR.items()}, "anchor_device": ANCHOR_DEVICE,
                       "gflops_per_scan": GFLOPS_PER_SCAN, "wall_s": round(time.perf_counter() - t_start, 1),
                       "results": results}
            Path(args.json).write_text(json.dumps(payload, indent=2, default=str) + "\n")
        return table

    for preset in args.presets:
        for batch in args.batch_sizes or DEFAULT_BATCH_SIZES.get(preset, [64]):
            for inputs_kind in args.inputs_kinds:
                for precision in args.precisions:
                    r = run_config(preset, batch, precision, inputs_kind, args, device)
                    results.append(r)
                    msg = (f"{r['samples_per_s']:.1f} samples/s, {r['ms_per_step']:.1f} ms/step, "
                           f"peak {r['peak_memory_gib']:.2f} GiB, loss {r['loss']}" if r["status"] == "ok"
                           else r["status"])
                    print(f"[{time.perf_counter() - t_start:6.1f}s] {preset} b{batch} {precision} {inputs_kind}: "
                          f"{msg}", file=sys.stderr, flush=True)
                    write_reports()
    print(write_reports())
    print(f"\ntotal wall time {time.perf_counter() - t_start:.1f} s")
    return results


if __name__ == "__main__":
    main()
