"""``brainmass``: the command line, a thin layer over the library functions.

    brainmass demo       [--data devfmri|PATH] [--preset tiny] [--epochs 30] [--out DIR] [--fast]
    brainmass pretrain   --output_dir DIR [--data ...] [--preset small] [any TrainingArguments flag]
    brainmass finetune   --model_name_or_path ENC --output_dir DIR [--data ...] [TrainingArguments flags]
    brainmass evaluate   --model ENC --data PATH [--protocols paper,linear_probe] [--out DIR]
    brainmass extract    --scans a.nii.gz b.nii.gz --atlas atlas.nii.gz --out DIR [--t-r 2 ...]
"""

from __future__ import annotations

import argparse
import sys


def _demo(argv):
    from .demo import DemoSettings, run_demo

    d = DemoSettings()
    p = argparse.ArgumentParser(prog="brainmass demo", description="Pretrain + evaluate BrainMass on real data.")
    p.add_argument("--data", default=d.data, help="'devfmri' (bundled CC0 cohort) or your data folder / .npz")
    p.add_argument("--label-column", default=d.label_column)
    p.add_argument("--preset", default=d.preset, help="tiny | small | base | large")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--learning-rate", type=float, default=d.learning_rate)
    p.add_argument("--n-repeats", type=int, default=d.n_repeats, help="repeated stratified splits")
    p.add_argument("--protocols", default=",".join(d.protocols))
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", default=d.output_dir, help="report folder")
    p.add_argument("--fast", action="store_true", help="2 epochs, 2 splits: a smoke run")
    a = p.parse_args(argv)
    run_demo(
        DemoSettings(
            data=a.data, output_dir=a.out, preset=a.preset, epochs=a.epochs, batch_size=a.batch_size,
            learning_rate=a.learning_rate, label_column=a.label_column, n_repeats=a.n_repeats,
            protocols=tuple(x for x in a.protocols.split(",") if x), seed=a.seed, fast=a.fast,
        )
    )


def _evaluate(argv):
    from .evaluation import PROTOCOLS, evaluate

    p = argparse.ArgumentParser(prog="brainmass evaluate", description="Evaluate a BrainMass encoder on diagnosis.")
    p.add_argument("--model", required=True, help="encoder checkpoint folder or Hub id")
    p.add_argument("--data", required=True, help="'devfmri', a data folder, an .npz bundle or a saved dataset")
    p.add_argument("--protocols", default="paper,linear_probe", help=f"comma-separated from {PROTOCOLS} or 'all'")
    p.add_argument("--label-column", default="label")
    p.add_argument("--site-column", default=None)
    p.add_argument("--cv", default="repeated", help="repeated | kfold | leave_one_site_out")
    p.add_argument("--n-repeats", type=int, default=10)
    p.add_argument("--test-size", type=float, default=0.2)
    p.add_argument("--test-view", default="full", help="full | pfc | tta")
    p.add_argument("--num-tta-views", type=int, default=8)
    p.add_argument("--few-shot-k", default="1,5,10,20")
    p.add_argument("--no-random-baseline", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default="brainmass_eval", help="report folder")
    a = p.parse_args(argv)
    report = evaluate(
        a.model, a.data, protocols=a.protocols, label_column=a.label_column, site_column=a.site_column, cv=a.cv,
        n_repeats=a.n_repeats, test_size=a.test_size, test_view=a.test_view, num_tta_views=a.num_tta_views,
        few_shot_k=tuple(int(k) for k in a.few_shot_k.split(",") if k), seed=a.seed, output_dir=a.out,
        include_random_baseline=not a.no_random_baseline, device=a.device,
    )
    print(report.to_markdown())
    print(f"Report written to {a.out}")


def _extract(argv):
    from .data import extract_time_series

    p = argparse.ArgumentParser(prog="brainmass extract", description="NIfTI scans + label atlas → ROI time series.")
    p.add_argument("--scans", nargs="+", required=True, help="preprocessed 4D NIfTI scans")
    p.add_argument("--atlas", required=True, help="3D integer label atlas (NIfTI)")
    p.add_argument("--out", required=True, help="folder for <id>.npy per scan + rois.csv")
    p.add_argument("--roi-names", default=None, help="text file with one ROI name per line (label order)")
    p.add_argument("--confounds", nargs="*", default=None, help="one confounds file per scan")
    p.add_argument("--subject-ids", nargs="*", default=None)
    p.add_argument("--standardize", default="zscore_sample", help="zscore_sample | none")
    p.add_argument("--detrend", action="store_true")
    p.add_argument("--low-pass", type=float, default=None)
    p.add_argument("--high-pass", type=float, default=None)
    p.add_argument("--t-r", type=float, default=None, help="repetition time in seconds")
    a = p.parse_args(argv)
    names = None
    if a.roi_names:
        with open(a.roi_names) as f:
            names = [line.strip() for line in f if line.strip()]
    paths = extract_time_series(
        a.scans, a.atlas, roi_names=names, confounds=a.confounds,
        standardize=False if a.standardize.lower() == "none" else a.standardize, detrend=a.detrend,
        low_pass=a.low_pass, high_pass=a.high_pass, t_r=a.t_r, subject_ids=a.subject_ids, output_dir=a.out,
    )
    print(f"Wrote {len(paths)} time series to {a.out}")


def _pretrain(argv):
    from .training import pretrain_main

    pretrain_main(argv)


def _finetune(argv):
    from .training import finetune_main

    finetune_main(argv)


COMMANDS = {"demo": _demo, "pretrain": _pretrain, "finetune": _finetune, "evaluate": _evaluate, "extract": _extract}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    COMMANDS[argv[0]](argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
