#!/usr/bin/env python
"""pFC throughput: the two pretraining views of a batch, ours (batched torch) vs nilearn one scan at a time.

Batch: ``--scans 256`` synthetic scans (shared latent signals + noise, so that FC has structure) of ``--timepoints 200`` × ``--num-rois 100`` (float32 rows, as a
dataset gives them). For each FC kind (``ledoit_wolf``: nilearn's ``ConnectivityMeasure(kind="correlation")``
default; ``pearson``: the same with ``EmpiricalCovariance``), three ways to make both pFC views
(``int(0.2 * T)`` random time points dropped per scan and view):

* ``nilearn``: per scan and view, the numpy drop + a fresh ``ConnectivityMeasure`` (``reference_step.py``, the
  authors' data path);
* ``ours_collator``: ``DataCollatorForPseudoFC(fe, compute_fc_on="collator")(rows)`` — validate, pad and both
  views, from the same list of arrays;
* ``ours_batched``: :func:`brainmass_hf.connectivity.connectivity_views` on the already padded ``(N, T, R)``
  tensor, both views at once (what the collator and the model run);
* ``ours_two_calls``: two :func:`~brainmass_hf.connectivity.connectivity_view` calls instead, one view each (the
  same numbers; shows what sharing the product of all points between the views saves).

All three are timed interleaved (the order rotated every round), ``--repeats`` rounds after ``--warmup``; the
median is reported with the ratio nilearn / ours. The same run checks that our full FC equals nilearn's
(max abs difference over the batch), so the speed is for the same numbers.

Example::

    python benchmarks/benchmark_pfc.py --threads 1 --json benchmarks/results/cpu_pfc.json --md benchmarks/results/cpu_pfc.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

_HERE = Path(__file__).resolve().parent
for _path in (_HERE.parent, _HERE):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from harness import device_name, interleaved_medians, json_line, machine_info, write_reports  # noqa: E402
from step_vs_reference import random_rows  # noqa: E402
from brainmass_hf import BrainMassFeatureExtractor  # noqa: E402
from brainmass_hf.connectivity import (  # noqa: E402
    connectivity_view, connectivity_views, functional_connectivity, pad_time_series,
)
from brainmass_hf.data_collator import DataCollatorForPseudoFC  # noqa: E402
from reference_step import nilearn_fc, reference_pfc_views  # noqa: E402

FC_KINDS = ("ledoit_wolf", "pearson")


def run_kind(kind: str, rows: list[dict], args, device: torch.device) -> dict:
    """Both pFC views of ``rows`` three ways (see the module docstring); one result dict."""
    scans = [r["time_series"] for r in rows]
    fe = BrainMassFeatureExtractor(num_rois=scans[0].shape[1], fc_kind=kind, min_timepoints=2)
    num_masked = min(5, fe.num_rois)  # the collator also draws the masked ROIs (a few per scan; R may be tiny here)
    collator = DataCollatorForPseudoFC(fe, compute_fc_on="collator", mrm_num_masked=num_masked,
                                       mrc_num_masked=num_masked)
    padded, mask = pad_time_series(scans)
    padded, mask = padded.to(device), mask.to(device)
    rng = np.random.default_rng(args.seed)

    def nilearn_views():
        return reference_pfc_views(scans, rng, fe.pfc_drop_ratio, kind)

    def ours_collator():
        return collator(rows)

    def ours_batched():
        return connectivity_views(padded, mask, settings=fe, num_views=2)

    def ours_two_calls():
        return (connectivity_view(padded, mask, settings=fe, pfc=True),
                connectivity_view(padded, mask, settings=fe, pfc=True))

    stats = interleaved_medians({"nilearn": nilearn_views, "ours_collator": ours_collator,
                                 "ours_batched": ours_batched, "ours_two_calls": ours_two_calls},
                                args.repeats, args.warmup, device)
    # the same numbers: our full FC vs nilearn's, scan by scan (a few scans suffice; the maths is per scan)
    check = scans[: min(len(scans), 8)]
    ours_full = functional_connectivity(torch.from_numpy(np.stack(check)), kind=kind)
    theirs = torch.from_numpy(np.stack([nilearn_fc(s, kind) for s in check]))
    n, t, r = len(scans), scans[0].shape[0], scans[0].shape[1]
    result = {"mode": "pfc", "device_name": device_name(device), "fc_kind": kind, "scans": n, "timepoints": t,
              "num_rois": r, "views": 2, "max_abs_diff_vs_nilearn": float((ours_full - theirs).abs().max()),
              # the check means something only if the FC is not the identity (as it is for white noise + LW)
              "mean_abs_offdiag_fc": float(theirs.abs().sum(dim=(1, 2)).sub(r).mean() / (r * (r - 1)))}
    for name, st in stats.items():
        result[f"{name}_ms"] = 1000.0 * st["median_s"]
        result[f"{name}_ms_all"] = [round(1000.0 * x, 2) for x in st["times_s"]]
        result[f"{name}_scans_per_s"] = n / st["median_s"]
    result["ratio_collator"] = stats["nilearn"]["median_s"] / stats["ours_collator"]["median_s"]
    result["ratio_batched"] = stats["nilearn"]["median_s"] / stats["ours_batched"]["median_s"]
    result["ratio_two_calls"] = stats["nilearn"]["median_s"] / stats["ours_two_calls"]["median_s"]
    return result


def markdown(info: dict, results: list[dict], args) -> str:
    lines = [
        f"# pFC throughput: ours (batched torch) vs nilearn per scan — {info['device_name']}",
        "",
        f"* date: {info['date']}",
        *([f"* note: {args.note}"] if args.note else []),
        f"* host: {info['platform']}, {info['cpu_count']} CPU cores visible, torch threads {info['torch_threads']}, "
        f"load average at start {info['load_average_at_start']}; torch {info['torch']}, Python {info['python']}",
        f"* batch: {args.scans} synthetic scans (latent signals + noise) × {args.timepoints} time points × {args.num_rois} ROIs; two pFC views "
        f"per scan (20 % of time points dropped); median of {args.repeats} interleaved rounds after {args.warmup}",
        "* nilearn: numpy drop + `ConnectivityMeasure(kind=\"correlation\")` per scan and view; ours (collator): "
        "`DataCollatorForPseudoFC(compute_fc_on=\"collator\")` from the list of arrays (validation, padding, both "
        "views); ours (batched): `connectivity_views` on the padded tensor, both views at once; ours (two calls): two "
        "`connectivity_view` calls, one view each",
        "",
        "| fc_kind | nilearn ms | ours collator ms | ours batched ms | ours two calls ms | ratio (collator) | "
        "ratio (batched) | ratio (two calls) | max abs diff vs nilearn |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['fc_kind']} | {r['nilearn_ms']:,.1f} | {r['ours_collator_ms']:,.1f} | "
                     f"{r['ours_batched_ms']:,.1f} | {r['ours_two_calls_ms']:,.1f} | {r['ratio_collator']:.1f}× | "
                     f"{r['ratio_batched']:.1f}× | {r['ratio_two_calls']:.1f}× | {r['max_abs_diff_vs_nilearn']:.1e} |")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="where ours runs the batched FC (cpu, cuda); nilearn is CPU")
    p.add_argument("--scans", type=int, default=256)
    p.add_argument("--timepoints", type=int, default=200)
    p.add_argument("--num-rois", type=int, default=100)
    p.add_argument("--fc-kinds", default=",".join(FC_KINDS))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--note", default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--md", default=None)
    args = p.parse_args(argv)
    kinds = [k.strip() for k in args.fc_kinds.split(",") if k.strip()]
    for kind in kinds:
        if kind not in FC_KINDS:
            p.error(f"unknown fc kind {kind!r}; choose from {FC_KINDS}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    info = machine_info(device)
    rows = random_rows(args.scans, args.timepoints, args.num_rois, args.seed)
    results = []
    t0 = time.perf_counter()
    for kind in kinds:
        results.append(run_kind(kind, rows, args, device))
        print(json_line(results[-1]), flush=True)
    text = markdown(info, results, args)
    print(text)
    print(f"\ntotal wall time {time.perf_counter() - t0:.1f} s")
    write_reports(args.md, text, args.json, {"machine": info, "args": vars(args), "results": results})
    return results


if __name__ == "__main__":
    main()
