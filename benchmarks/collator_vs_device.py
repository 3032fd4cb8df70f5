#!/usr/bin/env python
"""Where to compute the two pFC views of a pretraining batch: in the data collator (CPU) or in the model (device).

Batch: 64 scans × 168 time points × 116 ROIs, the bundled cohort's shape (real scans from
``brainmass_hf.data.load_devfmri()`` when it loads, random otherwise).

* ``collator``: ``DataCollatorForPseudoFC(fe, compute_fc_on="collator")(rows)`` — validate, pad, draw the random
  choices, two pFC views, all on the CPU in the data-loader process. On CUDA the two ``(B, R, R)`` views must then be
  copied to the GPU (``H2D``, timed separately).
* ``model``: ``DataCollatorForPseudoFC(fe, compute_fc_on="model")(rows)`` — validate, pad and draw (which time points
  each view keeps, which ROIs are masked) on the CPU; the padded ``time_series`` + ``time_mask`` +
  ``view_time_masks`` are copied to the device and ``BrainMassForPreTraining.forward`` computes the two views there.
  The FC part is timed exactly as the forward runs it (``model._pretraining_views``: input checks + both views from
  the masks, sharing one ``R × R`` product per scan), on every requested device.

Each cell is the median over ``--repeats`` calls after ``--warmup`` calls (CUDA synchronised around each call).
In real training the collator runs in DataLoader worker processes and overlaps with the model's step, so
"collator ms" is latency a worker hides if it keeps up; "FC on device" ms add to every training step.

Example::

    python benchmarks/collator_vs_device.py --json benchmarks/results/gpu_collator_vs_device.json \
        --md benchmarks/results/gpu_collator_vs_device.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from brainmass_hf import BrainMassConfig, BrainMassFeatureExtractor, BrainMassForPreTraining  # noqa: E402
from brainmass_hf.data_collator import DataCollatorForPseudoFC  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import write_reports  # noqa: E402


def machine_info(devices: list[torch.device]) -> dict:
    """The harness's machine description (of the first device) with every device this run times."""
    info = harness.machine_info(devices[0])
    info["devices"] = [str(d) for d in devices]
    return info


def load_rows(batch: int, num_timepoints: int, num_rois: int, seed: int, source: str) -> tuple[list[dict], str]:
    """``batch`` rows ``{"time_series": (T, R) float32, "subject_id": str}``: bundled scans, or random ones."""
    if source in ("auto", "devfmri"):
        try:
            from brainmass_hf.data import load_devfmri, time_series_list

            ds = load_devfmri()
            scans = time_series_list(ds)
            ids = list(ds["subject_id"])
            if len(scans) >= batch:
                rows = [{"time_series": s, "subject_id": i} for s, i in zip(scans[:batch], ids[:batch])]
                shape = rows[0]["time_series"].shape
                return rows, f"devfmri (bundled AAL-116 scans, {batch} of {len(scans)}, each {shape[0]}×{shape[1]})"
        except Exception as exc:  # noqa: BLE001
            if source == "devfmri":
                raise
            print(f"load_devfmri() unavailable ({type(exc).__name__}: {exc}); using random scans", file=sys.stderr)
    rng = np.random.default_rng(seed)
    rows = [{"time_series": rng.standard_normal((num_timepoints, num_rois)).astype(np.float32),
             "subject_id": f"random-{i}"} for i in range(batch)]
    return rows, f"random normal ({batch}×{num_timepoints}×{num_rois})"


def timed(fn, repeats: int, warmup: int, device: torch.device | None = None) -> tuple[float, list[float], object]:
    """Median ms of ``fn()`` over ``repeats`` calls (after ``warmup``), all times in ms, and the last output."""
    median, times, out = harness.timed(fn, repeats, warmup, device)
    return 1000.0 * median, [1000.0 * t for t in times], out


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=False) for k, v in batch.items()}


def run(args) -> tuple[dict, list[dict], str]:
    devices = [torch.device(d) for d in args.devices]
    info = machine_info(devices)
    rows, source = load_rows(args.batch_size, args.timepoints, args.num_rois, args.seed, args.data)
    num_rois = rows[0]["time_series"].shape[1]
    results = []
    for kind in args.fc_kinds:
        fe = BrainMassFeatureExtractor(num_rois=num_rois, fc_kind=kind)
        # (a) both views in the collator, on the CPU
        collate_fc = DataCollatorForPseudoFC(fe, compute_fc_on="collator")
        ms, times, out_a = timed(lambda: collate_fc(rows), args.repeats, args.warmup)
        base_a = {"fc_kind": kind, "placement": "collator", "collator_ms": ms, "collator_ms_all": times}
        # (b) pad and draw in the collator; the model computes both views on its device
        collate_pad = DataCollatorForPseudoFC(fe, compute_fc_on="model")
        ms_pad, times_pad, out_b = timed(lambda: collate_pad(rows), args.repeats, args.warmup)
        base_b = {"fc_kind": kind, "placement": "model", "collator_ms": ms_pad, "collator_ms_all": times_pad}
        # a tiny model: only its input path (checks + pFC + FC, as in forward) is timed; the FC does not depend
        # on the encoder size
        config = BrainMassConfig.from_preset("tiny", num_rois=num_rois, fc_kind=kind)
        for device in devices:
            # (a) on this device: copy the two views
            r = dict(base_a, device=str(device), fc_on_device_ms=0.0)
            r["h2d_ms"] = timed(lambda: _to(out_a, device), args.repeats, args.warmup, device)[0] \
                if device.type != "cpu" else 0.0
            r["total_ms"] = r["collator_ms"] + r["h2d_ms"]
            r["bytes_to_device"] = sum(v.numel() * v.element_size() for v in out_a.values())
            results.append(r)
            # (b) on this device: copy time_series + mask, then two pFC views inside the model
            model = BrainMassForPreTraining(config).to(device).train()
            r = dict(base_b, device=str(device))
            r["h2d_ms"] = timed(lambda: _to(dict(out_b), device), args.repeats, args.warmup, device)[0] \
                if device.type != "cpu" else 0.0
            on_dev = _to(dict(out_b), device)
            ts, mask, kept = on_dev["time_series"], on_dev["time_mask"], on_dev["view_time_masks"]

            def two_views():
                return model._pretraining_views(None, None, ts, mask, kept)

            with torch.no_grad():
                ms_fc, times_fc, views = timed(two_views, args.repeats, args.warmup, device)
            r["fc_on_device_ms"] = ms_fc
            r["fc_on_device_ms_all"] = times_fc
            r["total_ms"] = r["collator_ms"] + r["h2d_ms"] + ms_fc
            r["bytes_to_device"] = sum(v.numel() * v.element_size() for v in out_b.values())
            # sanity: same shapes as the collator's views
            assert views[0].shape == out_a["connectivity_view1"].shape, (views[0].shape, out_a["connectivity_view1"].shape)
            results.append(r)
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return info, results, source


def markdown(info: dict, results: list[dict], source: str, args) -> str:
    where = info.get("gpu", "CPU only")
    lines = [
        f"# pFC views: collator (CPU) vs model (device) — {where}",
        "",
        f"* date: {info['date']}",
        *([f"* note: {args.note}"] if args.note else []),
        f"* host: {info['platform']}, {info['cpu']}, {info['cpu_count']} CPU cores visible, "
        f"torch threads {info['torch_threads']}, "
        f"load average at start {info['load_average_at_start']}",
        f"* torch {info['torch']}" + (f", CUDA {info['cuda']}" if "cuda" in info else "") + f", Python {info['python']}",
        f"* batch: {source}; two pFC views (20 % of time points dropped), median of {args.repeats} calls after "
        f"{args.warmup} warm-up",
        "* collator ms: `DataCollatorForPseudoFC(...)(rows)` on the CPU (validate + pad + draw [+ two pFC views]); "
        "H2D ms: copying its output to the device; FC on device ms: the model's "
        "`_pretraining_views` (both views from the drawn masks) as in `forward`",
        "",
        "| fc_kind | FC computed in | device | collator ms (CPU) | H2D ms | FC on device ms | total ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['fc_kind']} | {r['placement']} | {r['device']} | {r['collator_ms']:.2f} | {r['h2d_ms']:.2f} | "
            f"{r['fc_on_device_ms']:.2f} | {r['total_ms']:.2f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", default=None, help="comma list, e.g. cpu,cuda (default: cpu, plus cuda if available)")
    p.add_argument("--fc-kinds", default="ledoit_wolf,pearson")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--timepoints", type=int, default=168, help="random scans only")
    p.add_argument("--num-rois", type=int, default=116, help="random scans only")
    p.add_argument("--data", choices=("auto", "devfmri", "random"), default="auto",
                   help="auto: the bundled scans when they load, else random")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--note", default=None, help="free text added to the report header (e.g. 'cores shared')")
    p.add_argument("--json", default=None)
    p.add_argument("--md", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.fc_kinds = [k.strip() for k in args.fc_kinds.split(",") if k.strip()]
    if args.devices is None:
        args.devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    else:
        args.devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    info, results, source = run(args)
    text = markdown(info, results, source, args)
    print(text)
    payload = {"machine": info, "data": source, "args": vars(args), "results": results}
    compact = [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items() if not k.endswith("_all")}
               for r in results]
    print("\n```json\n" + json.dumps({"machine": info, "data": source}) + "\n"
          + "\n".join(json.dumps(r) for r in compact) + "\n```")
    write_reports(args.md, text, args.json, payload)
    return results


if __name__ == "__main__":
    main()
