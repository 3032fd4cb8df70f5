"""``benchmark_pretraining.py --reference``: our full step from raw scans beside the per-scan reference of
``reference_step.py``, both timed interleaved in one process."""

from __future__ import annotations

import gc
import sys
import traceback

import numpy as np
import torch

from harness import autocast as _autocast
from harness import device_name, fmt_number as _fmt, interleaved_medians, is_oom, profile_step
from reference_step import ReferencePreTraining, reference_step
from step import build_model, flops_per_scan, make_optimizer, random_scans, train_step
from brainmass_hf import BrainMassFeatureExtractor
from brainmass_hf.data_collator import DataCollatorForPseudoFC


def random_rows(batch: int, num_timepoints: int, num_rois: int, seed: int) -> list[dict]:
    """``batch`` dataset rows ``{"time_series": (T, R) float32, "subject_id": str}`` from :func:`random_scans`."""
    return [{"time_series": ts, "subject_id": f"scan-{i}"}
            for i, ts in enumerate(random_scans(batch, num_timepoints, num_rois, seed))]


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
        optimizer = make_optimizer(model, args.fused_adamw)
        step_model = torch.compile(model) if args.compile else model
        collator = DataCollatorForPseudoFC(BrainMassFeatureExtractor.from_config(model.config))
        reference = ReferencePreTraining(model.config).to(device).train()
        ref_optimizer = torch.optim.AdamW([p for p in reference.parameters() if p.requires_grad], lr=3e-4,  # foreach
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
        result["status"] = "OOM" if is_oom(exc) else "error"
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
