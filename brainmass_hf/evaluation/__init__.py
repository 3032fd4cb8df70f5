"""Downstream evaluation of BrainMass encoders (SPEC §5).

The encoder is frozen and its `8R`-dim readout (`pooler_output`) is the feature of a scan. The paper's
protocol standardises the features and fits an RBF SVM (C = 1) on **one pFC view per training scan** and
tests on **one pFC view per test scan** (the authors' `Task2Data(is_test=True)`; the full FC is their
validation set). `test_view="full"` and `"tta"` (mean feature of K pFC views) are options. Protocols:

* ``"paper"``        frozen features → ``StandardScaler`` → ``SVC(kernel="rbf", C=1)``.
* ``"linear_probe"`` the same features → ``StandardScaler`` → ``LogisticRegression``.
* ``"finetune"``     the whole network trained per split (``brainmass_hf.training.finetune``).
* ``"few_shot"``     k ∈ {1, 5, 10, 20} labelled scans per class, tested on every other scan.
* ``"zero_shot"``    trained on one site / cohort, applied to another with none of its labels.

Every protocol reports two baselines beside the model, on the same splits and the same pFC views: the raw
FC upper triangle with the same classifier, and the same architecture with random (seeded, never trained)
weights. The report gives a verdict per protocol from the paired differences over splits.

Layout: `features` (scan → feature), `splits`, `metrics` (thin over sklearn), `protocols` (classifiers per
split), `report` (tables, verdicts, figures); :func:`evaluate` here composes them.

Example::

    from brainmass_hf.data import load_devfmri
    from brainmass_hf.evaluation import evaluate

    report = evaluate("path/to/checkpoint", load_devfmri(), protocols=("paper", "linear_probe"))
    print(report.to_markdown())
    report.save("eval_out")   # results.json, results.md, roc_paper.png, roc_linear_probe.png
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data import class_labels, resolve_dataset, scan_ids, time_series_list, validate_dataset
from ..modeling_brainmass import BrainMassModel
from ..validation import check_no_missing
from .features import (
    FEATURES, VIEWS, FCSettings, _encoder_of, _view_count, extract_features, random_init_like, raw_fc_features,
)
from .metrics import METRICS, classification_metrics, format_mean_std, paired_difference, summarize
from .protocols import (
    CLASSIFIERS,
    METHOD_MODEL,
    METHOD_RANDOM,
    METHOD_RAW_FC,
    PROTOCOLS,
    ProtocolResult,
    decision_scores,
    evaluate_features,
    make_classifier,
    run_few_shot,
    run_finetune,
    run_linear_probe,
    run_paper_protocol,
    run_split_protocol,
    run_zero_shot,
)
from .report import EvaluationReport, roc_curve_data
from .splits import (
    CV_SCHEMES,
    _check_per_scan,
    few_shot_splits,
    kfold_splits,
    leave_one_site_out,
    make_splits,
    repeated_stratified_splits,
    site_pairs,
)


def parse_protocols(protocols: str | Sequence[str]) -> tuple[str, ...]:
    """`"paper,linear_probe"` or a sequence → a checked tuple of protocol names (`"all"` = every one)."""
    if isinstance(protocols, str):
        protocols = [p.strip() for p in protocols.split(",") if p.strip()]
    protocols = tuple(dict.fromkeys(protocols))
    if protocols == ("all",):
        return PROTOCOLS
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise ValueError(f"Unknown protocol(s) {unknown or list(protocols)}; choose from {list(PROTOCOLS)} or 'all'.")
    return protocols


def labels_from_dataset(dataset: Any, label_column: str = "label") -> tuple[np.ndarray, list[str]]:
    """Integer class codes `[N]` and class names from any dataset column (`brainmass_hf.data.class_labels`).

    A ClassLabel keeps its names (classes without scans are dropped and the rest re-coded in order); any
    other column is encoded by its sorted distinct values. Missing values, one class, a class with fewer than 2
    scans and continuous values are errors; spellings differing only in case or whitespace are merged with a
    warning.
    """
    return class_labels(dataset, label_column, min_per_class=2, drop_unused=True)


def _column(dataset: Any, column: str | None, argument: str, n: int) -> np.ndarray | None:
    """A per-scan id column (site, subject) as strings, or None when `column` is None."""
    if column is None:
        return None
    if column not in dataset.column_names:
        raise ValueError(f"{argument}={column!r} is not a column of the dataset (columns: {dataset.column_names}).")
    check_no_missing(dataset[column], scan_ids(dataset), f"{argument} {column!r}",
                     "Fill them in or drop these scans (a blank would become a site or subject named 'None').")
    return _check_per_scan(dataset[column], n, argument)


def _load_encoder(model_or_path: Any) -> torch.nn.Module:
    if isinstance(model_or_path, (str, os.PathLike)):
        return BrainMassModel.from_pretrained(str(model_or_path)).eval()
    if not isinstance(model_or_path, torch.nn.Module) or not hasattr(_encoder_of(model_or_path), "config"):
        raise ValueError(
            "model_or_path must be a BrainMass model or the path / hub id of a saved checkpoint; got "
            f"{type(model_or_path).__name__}."
        )
    return _encoder_of(model_or_path)


def _finetune_dataset(dataset: Any, label_column: str, codes: np.ndarray, class_names: list[str]) -> Any:
    """The dataset with a ClassLabel `label` column holding `codes` (what `finetune` reads)."""
    from datasets import ClassLabel

    drop = [c for c in ("label", label_column) if c in dataset.column_names]
    dataset = dataset.remove_columns(list(dict.fromkeys(drop)))
    dataset = dataset.add_column("label", codes.tolist())
    return dataset.cast_column("label", ClassLabel(names=class_names))


def _finetune_all(
    models: dict[str, torch.nn.Module], dataset: Any, label_column: str, labels: np.ndarray,
    class_names: list[str], splits: list[tuple[np.ndarray, np.ndarray]], raw_features: tuple[np.ndarray, np.ndarray],
    *, output_dir: Any, finetune_kwargs: dict[str, Any] | None, seed: int, show_progress: bool, model_or_path: Any,
) -> list[ProtocolResult]:
    """Fine-tune the model and its random-init twin on the same splits; raw FC + SVM beside them."""
    data = _finetune_dataset(dataset, label_column, labels, class_names)
    results = []
    with tempfile.TemporaryDirectory(prefix="brainmass_ckpt_") as scratch:
        for method, model in models.items():
            if method == METHOD_MODEL and isinstance(model_or_path, (str, os.PathLike)):
                path = str(model_or_path)
            else:
                path = os.path.join(scratch, method.replace(" ", "_"))
                model.save_pretrained(path)
            run_dir = None if output_dir is None else Path(output_dir) / "finetune" / method.replace(" ", "_")
            results.append(
                run_finetune(path, data, splits, method=method, output_dir=run_dir,
                             finetune_kwargs=finetune_kwargs, seed=seed, show_progress=show_progress)
            )
    train_x, test_x = raw_features
    raw = run_paper_protocol(train_x, labels, test_features=test_x, splits=splits, seed=seed, method=METHOD_RAW_FC,
                             show_progress=show_progress)
    raw.protocol = "finetune"
    raw.notes.append("raw FC + SVM (the paper protocol's classifier) on the fine-tuning splits.")
    return results + [raw]


def evaluate(
    model_or_path: Any,
    dataset: Any,
    *,
    protocols: str | Sequence[str] = ("paper", "linear_probe"),
    label_column: str = "label",
    site_column: str | None = None,
    group_column: str | None = None,
    n_repeats: int = 10,
    test_size: float = 0.2,
    test_view: str = "pfc",
    num_tta_views: int = 8,
    feature: str = "readout",
    few_shot_k: Sequence[int] = (1, 5, 10, 20),
    seed: int = 0,
    output_dir: str | os.PathLike | None = None,
    show_progress: bool = True,
    include_random_baseline: bool = True,
    pretrained_on_eval_scans: bool | None = None,
    finetune_kwargs: dict[str, Any] | None = None,
    cv: str = "repeated",
    zero_shot_pairs: Sequence[tuple[str, str]] | None = None,
    finetune_repeats: int | None = None,
    batch_size: int = 32,
    device: str | None = None,
) -> EvaluationReport:
    """Evaluate a BrainMass encoder on a labelled dataset, with the raw-FC and random-init baselines.

    Args:
        model_or_path: a BrainMass model (any model whose `base_model` is a `BrainMassModel`) or a checkpoint
            path / hub id.
        dataset: a `datasets.Dataset` with `time_series` (`[T, R]` per row) and `label_column`, or a string
            for `resolve_dataset` (`"devfmri"`, a `save_to_disk` folder, an npz bundle, a folder of per-scan
            files).
        protocols: names from `PROTOCOLS` (or a comma-separated string, or `"all"`).
        label_column: the class column (ClassLabel, int or str values). Binary: the second class (ClassLabel
            order, else sorted values) is the positive class.
        site_column: a column naming each scan's site/cohort: splits are stratified by label × site,
            `zero_shot` transfers between its values and `cv="leave_one_site_out"` holds one out at a time.
        group_column: a column naming each scan's subject: all scans of a subject fall on one side of every
            split (`StratifiedGroupKFold`), so multi-session cohorts do not test on subjects they trained on.
        n_repeats: repeated splits (`cv="repeated"`) and few-shot draws per k.
        test_size: test fraction of each repeated split.
        test_view: features of test scans: one `"pfc"` view (default, the authors' test set), the `"full"` FC
            (the authors' validation set), or `"tta"`.
        num_tta_views: pFC views averaged for `test_view="tta"`.
        feature: the encoder feature of a scan, `"readout"` (the paper's `8R` readout) or `"mean_hidden"` (mean
            last hidden state over ROI tokens, `R` values); see `extract_features`.
        few_shot_k: labelled scans per class for `few_shot`.
        seed: seeds splits, pFC views, few-shot draws, random-init weights and fine-tuning.
        output_dir: when given, `report.save(output_dir)` is called (fine-tuning runs go in
            `<output_dir>/finetune`).
        include_random_baseline: also evaluate the same architecture with random weights.
        pretrained_on_eval_scans: whether the encoder was pretrained (label-free) on these very scans; the
            report states it, since such a result is transductive. None: unknown, and the report says so.
        finetune_kwargs: passed to `brainmass_hf.training.finetune`.
        cv: `"repeated"` (n_repeats stratified shuffles), `"kfold"` (5 folds) or `"leave_one_site_out"`;
            used by paper, linear_probe and finetune.
        zero_shot_pairs: `(source, target)` site pairs; default every ordered pair.
        finetune_repeats: how many of the splits fine-tuning runs on (it is slow); default all.
        batch_size, device: for feature extraction.

    Training features are one pFC view per scan (seed `seed`); test features are `test_view` (a pFC view
    uses seed `seed + 1`, TTA seed `seed + 2`). The raw-FC baseline uses the same views.
    """
    protocols = parse_protocols(protocols)
    if int(n_repeats) < 1:
        raise ValueError(f"n_repeats must be at least 1 (splits, and few-shot draws per k); got {n_repeats}.")
    if cv not in CV_SCHEMES:
        raise ValueError(f"cv must be one of {CV_SCHEMES}; got {cv!r}.")
    test_views = _view_count(test_view, num_tta_views if test_view == "tta" else 1)
    if feature not in FEATURES:
        raise ValueError(f"feature must be one of {FEATURES}; got {feature!r}.")
    dataset = resolve_dataset(dataset)
    labels, class_names = labels_from_dataset(dataset, label_column)
    sites = _column(dataset, site_column, "site_column", labels.shape[0])
    groups = _column(dataset, group_column, "group_column", labels.shape[0])
    if sites is None and ("zero_shot" in protocols or cv == "leave_one_site_out"):
        raise ValueError("zero_shot and cv='leave_one_site_out' need site_column= naming each scan's site/cohort.")
    if "zero_shot" in protocols:
        zero_shot_pairs = site_pairs(sites, zero_shot_pairs)
    if "few_shot" in protocols and (not few_shot_k or any(int(k) < 1 for k in few_shot_k)):
        raise ValueError(f"few_shot_k must list labelled scans per class, each at least 1; got {list(few_shot_k)}.")
    encoder = _load_encoder(model_or_path)
    validate_dataset(dataset, encoder.config)  # every scan against the checkpoint (R, length), named, before any work
    time_series = time_series_list(dataset)
    fc_settings = FCSettings.of(encoder.config)
    splits = make_splits(cv, labels, n_repeats=n_repeats, test_size=test_size, seed=seed, sites=sites, groups=groups)

    settings = {
        "protocols": list(protocols), "label_column": label_column, "site_column": site_column,
        "group_column": group_column, "cv": cv, "n_repeats": n_repeats, "test_size": test_size,
        "train_view": "pfc", "test_view": test_view, "num_tta_views": num_tta_views, "feature": feature,
        "few_shot_k": list(few_shot_k),
        "seed": seed, **vars(fc_settings), "num_scans": int(labels.size), "class_counts": np.bincount(labels).tolist(),
        "num_rois": int(time_series[0].shape[1]),
        "model": str(getattr(encoder.config, "_name_or_path", "") or type(encoder).__name__),
        "pretrained_on_eval_scans": pretrained_on_eval_scans, "include_random_baseline": include_random_baseline,
        "finetune_kwargs": dict(finetune_kwargs or {}),
        # leave-one-site-out split k tests the k-th site in sorted order (the report names unscored ones)
        "test_sites": np.unique(sites).tolist() if cv == "leave_one_site_out" else None,
    }
    models = {METHOD_MODEL: encoder}
    if include_random_baseline:
        models[METHOD_RANDOM] = random_init_like(encoder, seed=seed)

    # Features once per method: training rows use one pFC view, test rows `test_view`.
    test_seed = {"full": seed, "pfc": seed + 1, "tta": seed + 2}[test_view]
    features: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    common = {"batch_size": batch_size, "show_progress": show_progress}
    if any(p != "finetune" for p in protocols):  # frozen-feature protocols
        for method, model in models.items():
            features[method] = (
                extract_features(model, time_series, view="pfc", seed=seed, device=device, feature=feature, **common),
                extract_features(model, time_series, view=test_view, num_views=test_views, seed=test_seed,
                                 device=device, feature=feature, **common),
            )
    # Raw FC is computed for every protocol: it is reported beside fine-tuning too.
    features[METHOD_RAW_FC] = (
        raw_fc_features(time_series, view="pfc", seed=seed, settings=fc_settings, **common),
        raw_fc_features(time_series, view=test_view, num_views=test_views, seed=test_seed, settings=fc_settings,
                        **common),
    )
    methods = [m for m in (METHOD_MODEL, METHOD_RAW_FC, METHOD_RANDOM) if m in features]

    results: list[ProtocolResult] = []
    notes = [] if include_random_baseline else ["The random-init baseline was not run (include_random_baseline=False)."]
    for protocol in tqdm(protocols, desc="protocols", disable=not show_progress):
        if protocol == "finetune":
            results += _finetune_all(
                models, dataset, label_column, labels, class_names, splits[: finetune_repeats or len(splits)],
                features[METHOD_RAW_FC], output_dir=output_dir, finetune_kwargs=finetune_kwargs, seed=seed,
                show_progress=show_progress, model_or_path=model_or_path,
            )
            continue
        for method in methods:
            train_x, test_x = features[method]
            shared = {"test_features": test_x, "method": method, "show_progress": show_progress}
            if protocol in ("paper", "linear_probe"):
                results.append(run_split_protocol(protocol, train_x, labels, splits=splits, seed=seed, **shared))
            elif protocol == "few_shot":
                results += run_few_shot(train_x, labels, k_values=few_shot_k, n_draws=n_repeats, seed=seed,
                                        groups=groups, **shared)
            else:
                results += run_zero_shot(train_x, labels, sites, pairs=zero_shot_pairs, **shared)
    report = EvaluationReport(results, class_names, settings, notes)
    if output_dir is not None:
        report.save(output_dir)
    return report


__all__ = [
    # features
    "VIEWS", "FEATURES", "FCSettings", "extract_features", "random_init_like", "raw_fc_features",
    # splits
    "CV_SCHEMES", "few_shot_splits", "kfold_splits", "leave_one_site_out", "make_splits",
    "repeated_stratified_splits", "site_pairs",
    # metrics
    "METRICS", "classification_metrics", "format_mean_std", "paired_difference", "summarize",
    # protocols
    "CLASSIFIERS", "METHOD_MODEL", "METHOD_RANDOM", "METHOD_RAW_FC", "PROTOCOLS", "ProtocolResult", "decision_scores",
    "evaluate_features", "make_classifier", "run_few_shot", "run_finetune", "run_linear_probe", "run_paper_protocol",
    "run_split_protocol", "run_zero_shot",
    # report
    "EvaluationReport", "roc_curve_data",
    # this module
    "evaluate", "labels_from_dataset", "parse_protocols", "resolve_dataset",
]
