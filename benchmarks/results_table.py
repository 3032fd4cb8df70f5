#!/usr/bin/env python
"""Markdown rows for docs/results.md from `evaluate` reports (`results.json`), one row per method, over seeds.

Each argument is ``LABEL=PATH[,PATH...]``: the `results.json` files of one setting, one per pretraining seed,
evaluated on the same splits. For each setting and protocol the row gives the model's ROC AUC and its paired
differences with raw FC, tangent_fc and random init (model − baseline on the same splits):

* one seed: mean ± std over the splits (the differences paired split by split);
* several seeds: the mean over seeds of each seed's mean, ± the std of those means over seeds (ddof 1).

Baselines get rows of their own (from the first file; with several seeds their numbers are the same whenever the
seeds share the pFC settings, since the views and splits depend only on the evaluation seed).

``--versus LABEL`` adds a column: each setting's paired difference with setting LABEL (seed k with seed k, the same
splits), e.g. a variant against the recipe it changes.

Example::

    python benchmarks/results_table.py "released small=eval/released/results.json" --protocol paper
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from brainmass_hf.evaluation import (  # noqa: E402
    METHOD_MODEL, METHOD_RANDOM, METHOD_RAW_FC, METHOD_TANGENT, format_mean_std, paired_difference,
)

BASELINES = (METHOD_RAW_FC, METHOD_TANGENT, METHOD_RANDOM)


def _splits(report: dict, protocol: str, method: str) -> list[dict] | None:
    for result in report["results"]:
        if result["name"] == protocol and result["method"] == method:
            return result["splits"]
    return None


def _cell(values: list[dict], signed: bool = False) -> str:
    """One seed: its mean ± std over splits; several: mean over seeds ± std of the seed means."""
    if len(values) == 1:
        return format_mean_std(values[0], signed=signed)
    means = np.array([v["mean"] for v in values])
    return format_mean_std({"mean": means.mean(), "std": means.std(ddof=1)}, signed=signed)


def _auc(splits: list[dict]) -> dict:
    values = np.array([s["auc"] for s in splits], dtype=float)
    return {"mean": values.mean(), "std": values.std(ddof=1) if values.size > 1 else 0.0}


def rows(label: str, paths: list[Path], protocol: str, with_baselines: bool,
         versus: list[dict] | None = None, is_versus: bool = False) -> list[str]:
    """The Markdown rows of one setting: the model's, then (with `with_baselines`) each baseline's. `versus`: the
    reports of the setting the model rows are also compared with (seed by seed), for the `--versus` column."""
    reports = [json.loads(Path(p).read_text()) for p in paths]
    methods = [(METHOD_MODEL, label)] + ([(m, m) for m in BASELINES] if with_baselines else [])
    lines = []
    for method, name in methods:
        per_seed = [_splits(r, protocol, method) for r in (reports if method == METHOD_MODEL else reports[:1])]
        if any(s is None for s in per_seed):
            continue
        cells = [_cell([_auc(s) for s in per_seed])]
        for baseline in BASELINES:
            other = [_splits(r, protocol, baseline) for r in reports[: len(per_seed)]]
            cells.append("—" if baseline == method or any(o is None for o in other) else
                         _cell([paired_difference(s, o) for s, o in zip(per_seed, other)], signed=True))
        if versus is not None:
            other = [_splits(r, protocol, METHOD_MODEL) for r in versus]
            cells.append("—" if method != METHOD_MODEL or is_versus or len(other) != len(per_seed) else
                         _cell([paired_difference(s, o) for s, o in zip(per_seed, other)], signed=True))
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {len(per_seed)} | {len(per_seed[0])} |")
    return lines


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("settings", nargs="+", help="LABEL=PATH[,PATH...] (results.json per seed)")
    parser.add_argument("--protocol", default="paper")
    parser.add_argument("--baselines-of", default=None, help="LABEL whose baselines get rows (default: the first)")
    parser.add_argument("--versus", default=None, help="LABEL: add a column of paired differences with that setting")
    args = parser.parse_args(argv)
    settings = [(label, [Path(p) for p in paths.split(",")])
                for label, _, paths in (item.partition("=") for item in args.settings)]
    versus = None
    if args.versus is not None:
        found = [paths for label, paths in settings if label == args.versus]
        if not found:
            parser.error(f"--versus {args.versus!r} is not one of the settings' labels.")
        versus = [json.loads(p.read_text()) for p in found[0]]
    extra = [f"Δ vs {args.versus}"] if versus is not None else []
    header = ["| " + " | ".join(["method", "AUC mean ± std", "Δ vs raw FC", "Δ vs tangent_fc", "Δ vs random init",
                                 *extra, "seeds", "splits"]) + " |",
              "|" + "---|" * (7 + len(extra))]
    lines = []
    for index, (label, paths) in enumerate(settings):
        with_baselines = label == args.baselines_of if args.baselines_of else index == 0
        lines += rows(label, paths, args.protocol, with_baselines, versus=versus, is_versus=label == args.versus)
    text = "\n".join(header + lines)
    print(text)
    return text


if __name__ == "__main__":
    main()
