#!/usr/bin/env python
"""Does the fast encoder importance of ``brainmass explain`` rank the regions as the old one did?

On the documentation's demo model (a randomly initialised ``tiny`` encoder for AAL-116, seeded) and the bundled
cohort (child vs adult), over the same ``--splits`` repeated stratified splits and the same frozen features + SVM:

* ``permutation``: the old default, permutation importance of each ROI (drop in held-out AUC, ``--permutations``
  per ROI and split);
* ``gradient``: the new default, gradient × input of the held-out SVM score with respect to the FC, |attribution|
  summed over each ROI's edges (:func:`brainmass_hf.interpret.probe_gradient_importance`).

Reported: the Spearman rank correlation of the two mean rankings (all ROIs, and over the old top ``--top`` ROIs),
the overlap of the two top-``--top`` sets, and for each method its own split-to-split agreement (mean Spearman
correlation between the rankings of two splits), which bounds how well any second method can agree with it; plus
the wall time of each method.

Example::

    python benchmarks/explain_agreement.py --json benchmarks/results/explain_agreement.json \
        --md benchmarks/results/explain_agreement.md
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import torch
from scipy.stats import spearmanr

from harness import machine_info, write_reports


def _split_agreement(per_split: np.ndarray) -> float:
    """Mean Spearman correlation between the ROI rankings of every pair of splits ``(S, R)``."""
    pairs = itertools.combinations(range(per_split.shape[0]), 2)
    return float(np.mean([spearmanr(per_split[a], per_split[b])[0] for a, b in pairs]))


def compare(fc: np.ndarray, labels: np.ndarray, model, splits: int, permutations: int, top: int, seed: int) -> dict:
    """Both importances on the same splits; the agreement figures of the module docstring."""
    from brainmass_hf.interpret import encoder_feature_function, permutation_importance, probe_gradient_importance

    t0 = time.perf_counter()
    new = probe_gradient_importance(model, fc, labels, n_splits=splits, seed=seed)
    t1 = time.perf_counter()
    old = permutation_importance(fc, labels, encoder_feature_function(model), n_splits=splits,
                                 n_permutations=permutations, seed=seed)
    t2 = time.perf_counter()
    old_top = np.argsort(-old.mean)[:top]
    new_top = np.argsort(-new.mean)[:top]
    return {
        "spearman_all": float(spearmanr(old.mean, new.mean)[0]),
        f"spearman_old_top{top}": float(spearmanr(old.mean[old_top], new.mean[old_top])[0]),
        f"top{top}_overlap": len(set(old_top.tolist()) & set(new_top.tolist())),
        "permutation_split_agreement": _split_agreement(old.importance),
        "gradient_split_agreement": _split_agreement(new.importance),
        "permutation_auc": float(old.baseline_auc.mean()), "gradient_auc": float(new.baseline_auc.mean()),
        "gradient_s": t1 - t0, "permutation_s": t2 - t1,
        "old_top": old_top.tolist(), "new_top": new_top.tolist(),
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--splits", type=int, default=5)
    p.add_argument("--permutations", type=int, default=3)
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--scans", type=int, default=None, help="use the first N scans of each class (smoke runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument("--md", default=None)
    args = p.parse_args(argv)
    from brainmass_hf import BrainMassConfig, BrainMassFeatureExtractor, BrainMassModel
    from brainmass_hf.atlases import roi_table
    from brainmass_hf.data import bundled_roi_names, load_devfmri, time_series_list

    data = load_devfmri()
    labels = np.asarray(data["label"])
    if args.scans:
        keep = np.concatenate([np.flatnonzero(labels == c)[: args.scans] for c in (0, 1)])
        data, labels = data.select(keep.tolist()), labels[keep]
    config = BrainMassConfig.from_preset("tiny", num_rois=116, atlas_name="AAL-116", roi_names=bundled_roi_names())
    torch.manual_seed(args.seed)
    model = BrainMassModel(config).eval()
    fc = BrainMassFeatureExtractor.from_config(config)(time_series_list(data), view="full")["connectivity"].numpy()
    info = machine_info(torch.device("cpu"))
    result = compare(fc, labels, model, args.splits, args.permutations, args.top, args.seed)
    names = roi_table(116, "AAL-116")["name"].tolist()
    top = args.top
    text = "\n".join([
        "# explain on the tiny demo encoder: gradient × input vs permutation importance", "",
        f"* {info['device_name']}, torch {info['torch']}, {info['torch_threads']} threads, load average at start "
        f"{info['load_average_at_start']} (a shared machine), {info['date']}",
        f"* devfmri ({len(labels)} scans, child vs adult), random-init tiny encoder (seed {args.seed}), frozen "
        f"features + SVM, {args.splits} splits; permutation importance with {args.permutations} permutations",
        "",
        "| figure | value |", "|---|---|",
        f"| Spearman ρ, all 116 ROIs | {result['spearman_all']:.2f} |",
        f"| Spearman ρ, over the permutation top {top} | {result[f'spearman_old_top{top}']:.2f} |",
        f"| top-{top} overlap | {result[f'top{top}_overlap']} of {top} |",
        f"| split-to-split ρ, permutation | {result['permutation_split_agreement']:.2f} |",
        f"| split-to-split ρ, gradient | {result['gradient_split_agreement']:.2f} |",
        f"| held-out AUC (same splits, same SVM) | {result['gradient_auc']:.3f} |",
        f"| wall time, gradient × input | {result['gradient_s']:.1f} s |",
        f"| wall time, permutation | {result['permutation_s']:.1f} s |",
        "",
        "Permutation top: " + ", ".join(names[i] for i in result["old_top"]),
        "",
        "Gradient top: " + ", ".join(names[i] for i in result["new_top"]),
    ])
    print(text)
    write_reports(args.md, text, args.json, {"machine": info, "args": vars(args), **result})
    return result


if __name__ == "__main__":
    main()
