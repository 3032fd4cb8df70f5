#!/usr/bin/env python
"""Does re-centring help a tangent-token encoder on a new cohort? (issue 19 diagnostic, docs/results.md, T1)

For an encoder with ``input_space="tangent"``, compare its frozen features (paper protocol and linear probe, the
`evaluate` splits and views) with the tangent reference it was saved with (the pretraining corpus's geometric mean)
against the same encoder with the reference re-fitted on each split's **training** scans (their full Ledoit-Wolf
FC; Riemannian re-centring, Zanini et al., IEEE TBME 2018), and the same for its random-init twin. Test scans never
shape the reference. Prints one line per (model, reference) and writes them as JSON with ``--json``.

Example::

    python benchmarks/recentre_diagnostic.py --encoder runs/T1_s0/encoder --data ../shared/data/abide1_aal116 \\
        --label-column diagnosis --site-column site --sites NYU
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from brainmass_hf import BrainMassModel  # noqa: E402
from brainmass_hf.connectivity import scans_connectivity, spd_geometric_mean  # noqa: E402
from brainmass_hf.data import resolve_dataset, select_sites, time_series_list  # noqa: E402
from brainmass_hf.evaluation import extract_features, random_init_like  # noqa: E402
from brainmass_hf.evaluation.protocols import run_split_protocol  # noqa: E402
from brainmass_hf.evaluation.run import labels_from_dataset  # noqa: E402
from brainmass_hf.evaluation.splits import make_splits  # noqa: E402

PROTOCOLS = ("paper", "linear_probe")


def _aucs(model, scans, labels, splits, seed: int) -> dict[str, list[float]]:
    """Per-split AUCs of `model`'s features: training rows one pFC view (seed), test rows another (seed + 1)."""
    train = extract_features(model, scans, view="pfc", seed=seed)
    test = extract_features(model, scans, view="pfc", seed=seed + 1)
    return {p: [s["auc"] for s in run_split_protocol(p, train, labels, test_features=test, splits=splits).splits]
            for p in PROTOCOLS}


def _recentred_aucs(model, scans, labels, splits, seed: int) -> dict[str, list[float]]:
    """Per-split AUCs with the reference re-fitted on each split's training scans (full FC)."""
    matrices = scans_connectivity(scans, settings=model.config).double()
    saved = model.embeddings.whitening.clone()
    aucs: dict[str, list[float]] = {p: [] for p in PROTOCOLS}
    try:
        for train_rows, test_rows in splits:
            model.set_tangent_reference(spd_geometric_mean(matrices[train_rows]), len(train_rows))
            for protocol, values in _aucs(model, scans, labels, [(train_rows, test_rows)], seed).items():
                aucs[protocol] += values
    finally:
        model.embeddings.whitening.copy_(saved)
    return aucs


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", required=True, help="an encoder folder with input_space='tangent'")
    parser.add_argument("--data", required=True)
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--site-column", default=None)
    parser.add_argument("--sites", default=None, help="only these sites' scans (comma-separated)")
    parser.add_argument("--n-repeats", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    encoder = BrainMassModel.from_pretrained(args.encoder).eval()
    if encoder.config.input_space != "tangent":
        parser.error(f"{args.encoder} has input_space={encoder.config.input_space!r}; this diagnostic needs 'tangent'.")
    dataset = select_sites(resolve_dataset(args.data), keep=args.sites, site_column=args.site_column or "site")
    labels, _ = labels_from_dataset(dataset, args.label_column)
    sites = np.asarray(dataset[args.site_column]) if args.site_column else None
    splits = make_splits("repeated", labels, n_repeats=args.n_repeats, seed=args.seed, sites=sites)
    scans = time_series_list(dataset)
    records = []
    for name, model in (("encoder", encoder), ("random-init twin", random_init_like(encoder, seed=args.seed))):
        for reference, aucs in (("saved", _aucs(model, scans, labels, splits, args.seed)),
                                ("per split", _recentred_aucs(model, scans, labels, splits, args.seed))):
            record = {"model": name, "reference": reference, "num_scans": len(scans), "splits": len(splits)}
            for protocol, values in aucs.items():
                record[protocol] = {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)),
                                    "aucs": values}
            records.append(record)
            print(f"{name}, reference {reference}: " + ", ".join(
                f"{p} {record[p]['mean']:.3f} ± {record[p]['std']:.3f}" for p in PROTOCOLS), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"encoder": args.encoder, "results": records}, indent=1))
    return records


if __name__ == "__main__":
    main()
