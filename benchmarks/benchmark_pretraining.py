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
* ``--gradient-checkpointing``, ``--fused-adamw``, ``--compile``: the GPU levers (``gpu_run.sh`` runs them).

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
import contextlib
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
import warnings
from pathlib import Path

import numpy as np
import torch

# Runs from a checkout without installing the package; ``reference_step`` sits next to this file.
_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
for _path in (_ROOT, _HERE):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from brainmass_hf import BrainMassConfig, BrainMassFeatureExtractor, BrainMassForPreTraining  # noqa: E402
from brainmass_hf.connectivity import connectivity_views  # noqa: E402
from brainmass_hf.data_collator import draw_pretraining_choices  # noqa: E402
from brainmass_hf.data_collator import DataCollatorForPseudoFC  # noqa: E402
from reference_step import ReferencePreTraining, reference_step  # noqa: E402

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


def device_name(device: torch.device) -> str:
    """The GPU's name on CUDA, else the CPU model (with its bf16 extensions)."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_model()


def machine_info(device: torch.device) -> dict:
    info = {
        "device_name": device_name(device),
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
def random_scans(batch: int, num_timepoints: int, num_rois: int, seed: int) -> np.ndarray:
    """Synthetic ROI signals ``(batch, T, R)`` float32 with network structure: ``max(1, R // 10)`` shared latent
    signals mixed into every ROI plus unit noise. Plain white noise would not do: at T = 200, R = 100 its Ledoit-Wolf
    shrinkage is 1, every FC is the identity, and a check against nilearn would compare zeros."""
    rng = np.random.default_rng(seed)
    k = max(1, num_rois // 10)
    latent = rng.standard_normal((batch, num_timepoints, k))
    mixing = rng.standard_normal((batch, k, num_rois))
    noise = rng.standard_normal((batch, num_timepoints, num_rois))
    return (latent @ mixing + noise).astype(np.float32)


def make_inputs(kind: str, batch: int, num_timepoints: int, config: BrainMassConfig, device: torch.device,
                seed: int) -> dict:
    """Synthetic model inputs on ``device`` (built on the CPU, copied once): ``kind="fc"`` two pFC views
    ``(B, R, R)``, ``"time_series"`` the padded scans + ``time_mask`` + the points each view keeps (the model computes
    the views); both with the masked ROIs. The random choices are one :func:`draw_pretraining_choices`, as
    ``DataCollatorForPseudoFC`` draws them."""
    ts = torch.from_numpy(random_scans(batch, num_timepoints, config.num_rois, seed))
    full = torch.ones(batch, num_timepoints, dtype=torch.bool)
    choices = draw_pretraining_choices(full, config, torch.Generator().manual_seed(seed))
    if kind == "time_series":
        inputs = {"time_series": ts, "time_mask": full, **choices}
    else:
        views = connectivity_views(ts, full, settings=config, view_time_masks=choices.pop("view_time_masks"))
        inputs = {"connectivity_view1": views[0], "connectivity_view2": views[1], **choices}
    return {k: v.to(device) for k, v in inputs.items()}


def _autocast(device: torch.device, precision: str):
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=device.type, dtype=dtype)
    return torch.autocast(device_type=device.type, enabled=False)


def train_step(model, step_model, optimizer, inputs: dict, device: torch.device, precision: str, scaler=None):
    """One pretraining step of ours: forward (``step_model``, maybe compiled) under ``precision`` → backward →
    optimizer step (through ``scaler`` for fp16) → ``model.update_target()`` (EMA). Returns the loss tensor."""
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


def flops_per_scan(preset: str, num_rois: int) -> tuple[float, str]:
    """Forward + backward FLOPs of one scan in one pretraining step, in GFLOP, and where the number comes from:
    SPEC §6 for the paper presets at R = 100, else counted with ``torch.utils.flop_counter.FlopCounterMode``
    (matrix products and attention only) on one step of a batch of 2 on the CPU."""
    if num_rois == 100 and preset in GFLOPS_PER_SCAN:
        return GFLOPS_PER_SCAN[preset], "SPEC §6"
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = BrainMassForPreTraining(BrainMassConfig.from_preset(preset, num_rois=num_rois)).train()
    views = torch.eye(num_rois).expand(2, -1, -1).contiguous()
    rois = {k: v for k, v in draw_pretraining_choices(torch.ones(2, 10, dtype=torch.bool), model.config).items()
            if k.endswith("masked_roi_indices")}
    with FlopCounterMode(display=False) as counter:
        model(connectivity_view1=views, connectivity_view2=views, **rois).loss.backward()
    return counter.get_total_flops() / 2 / 1e9, "counted (FlopCounterMode)"


def checkpointing_on(model) -> bool:
    """Whether activation (gradient) checkpointing is on; transformers 5 renamed the property."""
    if hasattr(type(model), "is_activation_checkpointing"):
        return bool(model.is_activation_checkpointing)
    return bool(model.is_gradient_checkpointing)


def build_model(preset: str, args, device: torch.device) -> BrainMassForPreTraining:
    """Our pretraining model for ``preset`` with the command line's overrides, in train mode on ``device``."""
    overrides = {"num_rois": args.num_rois}
    if args.fc_kind:
        overrides["fc_kind"] = args.fc_kind
    config = BrainMassConfig.from_preset(preset, **overrides)
    if args.attn_implementation:
        config._attn_implementation = args.attn_implementation
    model = BrainMassForPreTraining(config).to(device).train()
    if args.gradient_checkpointing:  # recompute each layer in backward: memory for time (large at batch 256)
        model.activation_checkpointing_enable()
        if not checkpointing_on(model):
            raise RuntimeError("activation_checkpointing_enable() did not switch checkpointing on for this model.")
    return model


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
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=3e-4, weight_decay=5e-5, fused=args.fused_adamw or None)
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
        gflops, source = flops_per_scan(preset, args.num_rois)
        result["gflops_per_scan"], result["flops_source"] = gflops, source
        result["tflops"] = result["samples_per_s"] * gflops / 1000.0
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
# --reference: ours beside a per-scan implementation of the authors' step, interleaved in one process
# ------------------------------------------------------------------------------------------------------------
def random_rows(batch: int, num_timepoints: int, num_rois: int, seed: int) -> list[dict]:
    """``batch`` dataset rows ``{"time_series": (T, R) float32, "subject_id": str}`` from :func:`random_scans`."""
    return [{"time_series": ts, "subject_id": f"scan-{i}"}
            for i, ts in enumerate(random_scans(batch, num_timepoints, num_rois, seed))]


class _PeakMemory:
    """Peak memory over several timed calls of one implementation: CUDA ``max_memory_allocated`` (reset before
    each call) or, on a CPU, the process RSS sampled by :class:`_RssSampler` during each call."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0

    def measure(self, fn):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            out = fn()
            _sync(self.device)
            self.peak = max(self.peak, torch.cuda.max_memory_allocated(self.device))
            return out
        with _RssSampler() as sampler:
            out = fn()
        self.peak = max(self.peak, sampler.peak)
        return out

    @property
    def kind(self) -> str:
        return "max_memory_allocated" if self.device.type == "cuda" else "peak RSS (process)"


def interleaved_medians(fns: dict, steps: int, warmup: int, device: torch.device) -> dict:
    """Times the zero-argument callables in ``fns`` back to back: ``warmup`` untimed rounds, then ``steps``
    rounds, the order rotated every round so that no callable always runs first on a noisy machine.

    Returns ``{name: {"times_s": [...], "median_s": float, "peak_bytes": int, "memory_kind": str, "last": out}}``.
    """
    names = list(fns)
    stats = {n: {"times_s": [], "memory": _PeakMemory(device), "last": None} for n in names}
    for _ in range(max(warmup, 0)):
        for n in names:
            stats[n]["last"] = fns[n]()
    _sync(device)
    for i in range(steps):
        for n in names[i % len(names):] + names[: i % len(names)]:
            t0 = time.perf_counter()
            stats[n]["last"] = stats[n]["memory"].measure(fns[n])
            _sync(device)
            stats[n]["times_s"].append(time.perf_counter() - t0)
    for n in names:
        st = stats[n]
        st["median_s"] = statistics.median(st["times_s"])
        st["peak_bytes"] = st["memory"].peak
        st["memory_kind"] = st.pop("memory").kind
    return stats


def profile_step(fn, device: torch.device, top: int = 15) -> list[dict]:
    """One call of ``fn`` under ``torch.profiler``: the ``top`` operators by self time (CPU, or CUDA on a GPU),
    each ``{"op", "self_ms", "share", "calls"}``; the full table goes to stderr."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        fn()
        _sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = prof.key_averages()
    print(events.table(sort_by=key, row_limit=top, max_name_column_width=60), file=sys.stderr)
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    total = sum(getattr(e, attr, 0) for e in events) or 1
    rows = sorted(events, key=lambda e: getattr(e, attr, 0), reverse=True)[:top]
    return [{"op": e.key, "self_ms": round(getattr(e, attr, 0) / 1000.0, 2),
             "share": round(getattr(e, attr, 0) / total, 4), "calls": e.count} for e in rows]


def run_reference_case(preset: str, batch: int, precision: str, args, device: torch.device) -> dict:
    """Our full step (collator + ``BrainMassForPreTraining`` + AdamW + EMA) and the per-scan reference step
    (:mod:`reference_step`: nilearn pFC per scan + ``nn.TransformerEncoderLayer`` stack + Python loops), both
    from the same raw scans, timed interleaved in this process. Returns one result dict (``ratio`` = ours /
    reference scans/s)."""
    result = {"mode": "reference", "device_name": device_name(device), "preset": preset, "batch_size": batch,
              "precision": precision, "steps": args.steps, "warmup": args.warmup, "status": "ok"}
    try:
        torch.manual_seed(args.seed)
        model = build_model(preset, args, device)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-4,
                                      weight_decay=5e-5, fused=args.fused_adamw or None)
        step_model = torch.compile(model) if args.compile else model
        collator = DataCollatorForPseudoFC(BrainMassFeatureExtractor.from_config(model.config))
        reference = ReferencePreTraining(model.config).to(device).train()
        ref_optimizer = torch.optim.AdamW([p for p in reference.parameters() if p.requires_grad], lr=3e-4,
                                          weight_decay=5e-5)
        rows = random_rows(batch, args.timepoints, args.num_rois, args.seed)
        scans = [row["time_series"] for row in rows]
        rng = np.random.default_rng(args.seed)

        def ours():
            inputs = {k: v.to(device) for k, v in collator(rows).items() if isinstance(v, torch.Tensor)}
            return train_step(model, step_model, optimizer, inputs, device, precision).detach()

        def ref():
            return reference_step(reference, ref_optimizer, scans, rng, device, lambda: _autocast(device, precision))

        stats = interleaved_medians({"ours": ours, "reference": ref}, args.steps, args.warmup, device)
        if args.profile:  # where the time goes, one step each (after the timing, so it does not disturb it)
            result["profile"] = profile_step(ours, device)
            result["reference_profile"] = profile_step(ref, device)
        ours_s, ref_s = stats["ours"], stats["reference"]
        result.update({
            "ours_fc_on": collator.compute_fc_on,
            "fc_kind": model.config.fc_kind,
            "num_rois": args.num_rois,
            "timepoints": args.timepoints,
            "parameters": sum(p.numel() for p in model.parameters()),
            "reference_parameters": sum(p.numel() for p in reference.parameters()),
            "scans_per_s": batch / ours_s["median_s"],
            "reference_scans_per_s": batch / ref_s["median_s"],
            "ratio": ref_s["median_s"] / ours_s["median_s"],
            "ms_per_step": 1000.0 * ours_s["median_s"],
            "reference_ms_per_step": 1000.0 * ref_s["median_s"],
            "step_ms": [round(1000.0 * t, 1) for t in ours_s["times_s"]],
            "reference_step_ms": [round(1000.0 * t, 1) for t in ref_s["times_s"]],
            "peak_memory_gib": ours_s["peak_bytes"] / 2**30,
            "reference_peak_memory_gib": ref_s["peak_bytes"] / 2**30,
            "memory_kind": ours_s["memory_kind"],
            "loss": round(float(ours_s["last"].float()), 4),
            "reference_loss": round(float(ref_s["last"].float()), 4),
        })
        gflops, source = flops_per_scan(preset, args.num_rois)
        result["gflops_per_scan"], result["flops_source"] = gflops, source
        result["tflops"] = result["scans_per_s"] * gflops / 1000.0
        result["reference_tflops"] = result["reference_scans_per_s"] * gflops / 1000.0
    except Exception as exc:  # noqa: BLE001 -- report and go on with the next case
        result["status"] = "OOM" if _is_oom(exc) else "error"
        if result["status"] == "error":
            traceback.print_exc(file=sys.stderr)
        result["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    finally:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if args.compile:
            torch._dynamo.reset()
    return result


def reference_table(results: list[dict]) -> str:
    mem = "peak GPU mem (GiB)" if any("allocated" in r.get("memory_kind", "") for r in results) else "peak RSS (GiB)"
    head = ["device", "preset", "batch", "precision", "ours scans/s", "reference scans/s", "ratio (ours/ref)",
            "ours TFLOP/s", f"ours {mem}", f"reference {mem}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        if r["status"] != "ok":
            lines.append(f"| {r['device_name']} | {r['preset']} | {r['batch_size']} | {r['precision']} | "
                         f"{r['status']}: {r.get('error', '')} |" + " |" * 5)
            continue
        lines.append("| " + " | ".join([
            r["device_name"], r["preset"], str(r["batch_size"]), r["precision"], _fmt(r["scans_per_s"], 1),
            _fmt(r["reference_scans_per_s"], 1), _fmt(r["ratio"], 2, "×"), _fmt(r.get("tflops"), 3),
            _fmt(r["peak_memory_gib"], 2), _fmt(r["reference_peak_memory_gib"], 2)]) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------
# --sdpa-report: which scaled-dot-product-attention kernel runs for BrainMass's head sizes
# ------------------------------------------------------------------------------------------------------------
def sdpa_kernel_report(device: torch.device, precision: str, batch: int, num_rois: int = 100,
                       heads: tuple[int, ...] = (5, 10, 20), dropouts: tuple[float, ...] = (0.0, 0.1),
                       repeats: int = 5) -> list[dict]:
    """For each head count (head dim ``num_rois / heads``: 20, 10, 5 at R = 100), token count (``R`` for LRA,
    ``R + 2`` for the masked-ROI paths) and attention dropout: the backend SDPA picks by itself
    (``torch._fused_sdp_choice``) and the median forward + backward ms of every backend forced with
    ``torch.nn.attention.sdpa_kernel`` (``error`` with the reason where a backend cannot run these inputs).

    Inputs are ``(batch, heads, tokens, head_dim)`` in the precision's dtype (bf16 for ``bf16``, else fp32)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    backends = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION,
                SDPBackend.MATH]
    by_value = {b.value: name for name, b in SDPBackend.__members__.items()}  # a pybind enum
    rows = []
    for h in heads:
        if num_rois % h:
            continue
        for tokens in (num_rois, num_rois + 2):
            for p in dropouts:
                q, k, v = (torch.randn(batch, h, tokens, num_rois // h, device=device, dtype=dtype,
                                       requires_grad=True) for _ in range(3))
                row = {"mode": "sdpa", "device_name": device_name(device), "precision": precision,
                       "batch_size": batch, "heads": h, "head_dim": num_rois // h, "tokens": tokens,
                       "dropout_p": p}
                try:
                    row["default_backend"] = by_value.get(int(torch._fused_sdp_choice(q, k, v, None, p, False)), "?")
                except Exception as exc:  # noqa: BLE001 -- a private helper; report, do not fail
                    row["default_backend"] = f"unknown ({type(exc).__name__})"

                def call():
                    with warnings.catch_warnings():  # "kernel not used because ..." for each refused backend
                        warnings.simplefilter("ignore")
                        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=p)
                    out.sum().backward()

                for backend in backends + [None]:
                    name = "default" if backend is None else backend.name
                    try:
                        with sdpa_kernel([backend]) if backend is not None else contextlib.nullcontext():
                            call()  # warm-up; raises if the backend cannot take these inputs
                            times = []
                            for _ in range(repeats):
                                _sync(device)
                                t0 = time.perf_counter()
                                call()
                                _sync(device)
                                times.append(1000.0 * (time.perf_counter() - t0))
                        row[f"{name}_ms"] = round(statistics.median(times), 3)
                    except Exception as exc:  # noqa: BLE001
                        row[f"{name}_ms"] = "error: " + (str(exc).splitlines() or [type(exc).__name__])[0][:120]
                rows.append(row)
    return rows


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
            "`DataCollatorForPseudoFC` (default placement) + `BrainMassForPreTraining` + AdamW + `update_target()`. "
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
    p.add_argument("--fused-adamw", action="store_true", help="AdamW(fused=True) (CUDA); default foreach")
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


def json_line(result: dict) -> str:
    """One case as one JSON line, floats to 5 significant digits (per-step time lists are left to the ``--json``
    report)."""
    return json.dumps({k: (float(f"{v:.5g}") if isinstance(v, float) else v) for k, v in result.items()
                       if not isinstance(v, list)}, default=str)


def write_reports(md_path: str | None, markdown_text: str, json_path: str | None, payload: dict) -> None:
    """Write the Markdown table and the JSON payload of a benchmark run where ``--md`` / ``--json`` point (each
    optional; folders are created). Every benchmark script in this folder reports through this."""
    if md_path:
        Path(md_path).parent.mkdir(parents=True, exist_ok=True)
        Path(md_path).write_text(markdown_text + "\n")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(payload, indent=2, default=str) + "\n")


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
