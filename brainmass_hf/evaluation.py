"""Downstream evaluation of BrainMass encoders (SPEC §5).

The encoder is frozen and its `8R`-dim readout (`pooler_output`) is the feature of a scan. The
paper's protocol standardises the features and fits an RBF SVM (C = 1) on **one pFC view per
training scan**, then tests on the full FC of the test scans (or one pFC view, or the mean feature
of K pFC views: test-time augmentation). Around that protocol this module offers:

* ``"paper"``        frozen features → ``StandardScaler`` → ``SVC(kernel="rbf", C=1)``.
* ``"linear_probe"`` the same features → ``StandardScaler`` → ``LogisticRegression``.
* ``"finetune"``     the whole network trained per split (``brainmass_hf.training.finetune``).
* ``"few_shot"``     k ∈ {1, 5, 10, 20} labelled scans per class, tested on every other scan.
* ``"zero_shot"``    trained on one site / cohort, applied to another with none of its labels.

Every protocol reports two baselines beside the model: the raw FC upper triangle with the same
classifier, and the same architecture with random (seeded, never trained) weights. Views are drawn
from the same seeded generator for all three, so they see the same dropped time points.

AUC comes from ``decision_function`` (sklearn 1.9 deprecates ``SVC(probability=True)``); for more
than two classes it is the macro one-vs-rest AUC of the decision-score matrix.

Example::

    from brainmass_hf.data import load_devfmri
    from brainmass_hf.evaluation import evaluate

    report = evaluate("path/to/checkpoint", load_devfmri(), protocols=("paper", "linear_probe"))
    print(report.to_markdown())
    report.save("eval_out")   # results.json, results.md, roc_paper.png, roc_linear_probe.png
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix as _sk_confusion_matrix
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from tqdm.auto import tqdm

from .connectivity import (
    fc_upper_triangle,
    functional_connectivity,
    pad_time_series,
    pseudo_functional_connectivity,
)
from .data import resolve_dataset, time_series_list
from .modeling_brainmass import BrainMassModel

PROTOCOLS = ("paper", "linear_probe", "finetune", "few_shot", "zero_shot")
VIEWS = ("full", "pfc", "tta")
CLASSIFIERS = ("svm", "logreg")
CV_SCHEMES = ("repeated", "kfold", "leave_one_site_out")
METRICS = ("accuracy", "balanced_accuracy", "auc", "sensitivity", "specificity", "f1")

METHOD_MODEL = "BrainMass"
METHOD_RAW_FC = "raw FC"
METHOD_RANDOM = "random-init BrainMass"

# The classifier each protocol fits on frozen features.
_PROTOCOL_CLASSIFIER = {"paper": "svm", "linear_probe": "logreg", "few_shot": "svm", "zero_shot": "svm"}


# ----------------------------------------------------------------------------------------------
# Input validation
# ----------------------------------------------------------------------------------------------


def _check_time_series(time_series: Sequence[np.ndarray] | np.ndarray) -> list[np.ndarray]:
    """Return the scans as a list of float32 `[T_i, R]` arrays; one clear error otherwise."""
    if isinstance(time_series, np.ndarray) and time_series.ndim == 3:
        time_series = list(time_series)
    if isinstance(time_series, (str, bytes)) or not isinstance(time_series, Sequence):
        raise ValueError(
            "time_series must be a list of [num_timepoints, num_rois] arrays (one per scan) or a "
            f"[num_scans, num_timepoints, num_rois] array; got {type(time_series).__name__}."
        )
    if len(time_series) == 0:
        raise ValueError("time_series is empty; pass at least one scan.")
    scans = []
    for i, scan in enumerate(time_series):
        scan = np.asarray(scan, dtype=np.float32)
        if scan.ndim != 2:
            raise ValueError(
                f"Scan {i} must be a 2D [num_timepoints, num_rois] array; it has shape {scan.shape}."
            )
        if scan.shape[1] != np.asarray(time_series[0]).shape[1]:
            raise ValueError(
                f"Scan {i} has {scan.shape[1]} ROIs but scan 0 has {np.asarray(time_series[0]).shape[1]}; "
                "all scans must use the same atlas."
            )
        if scan.shape[0] < 3:
            raise ValueError(f"Scan {i} has {scan.shape[0]} time points; FC needs at least 3.")
        scans.append(scan)
    return scans


def _check_labels(labels: Sequence[Any] | np.ndarray, *, name: str = "labels") -> np.ndarray:
    """Integer class codes `[N]`; every class must have at least two members."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"{name} must be a non-empty 1D sequence of class codes; got shape {labels.shape}.")
    if not np.issubdtype(labels.dtype, np.integer):
        integral = np.issubdtype(labels.dtype, np.floating) and np.all(np.isfinite(labels))
        if integral and np.all(labels == np.round(labels)):
            labels = labels.astype(np.int64)
        else:
            raise ValueError(
                f"{name} must be integer class codes 0..K-1 (got dtype {labels.dtype}); encode them first "
                "or pass a dataset whose label column is a ClassLabel."
            )
    classes, counts = np.unique(labels, return_counts=True)
    if classes.size < 2:
        raise ValueError(f"{name} hold a single class ({classes[0]}); classification needs at least two.")
    if not np.array_equal(classes, np.arange(classes.size)):
        raise ValueError(
            f"{name} must be class codes 0..K-1 with every code used; got classes {classes.tolist()}. "
            "Re-encode them (e.g. numpy.unique(labels, return_inverse=True)[1])."
        )
    if counts.min() < 2:
        rare = [int(c) for c, n in zip(classes, counts) if n < 2]
        raise ValueError(
            f"class(es) {rare} have fewer than 2 scans; every class needs at least 2 "
            "(one to train on, one to test on). Drop or merge those classes."
        )
    return labels


def _check_features(features: np.ndarray, labels: np.ndarray, *, name: str = "features") -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"{name} must be a 2D [num_scans, num_features] array; got shape {features.shape}.")
    if features.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{name} has {features.shape[0]} rows but there are {labels.shape[0]} labels; pass one "
            "feature row per labelled scan, in the same order."
        )
    if not np.all(np.isfinite(features)):
        raise ValueError(f"{name} contain NaN or inf values; check the inputs (constant ROIs?).")
    return features


def _check_sites(sites: Sequence[Any] | np.ndarray, n: int) -> np.ndarray:
    sites = np.asarray([str(s) for s in sites])
    if sites.shape[0] != n:
        raise ValueError(f"There are {sites.shape[0]} site values for {n} scans; pass one per scan.")
    return sites


# ----------------------------------------------------------------------------------------------
# Features
# ----------------------------------------------------------------------------------------------


def _view_count(view: str, num_views: int) -> int:
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}; got {view!r}.")
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1; got {num_views}.")
    if view != "tta" and num_views != 1:
        raise ValueError(f"view={view!r} uses one view per scan; use view='tta' to average {num_views} pFC views.")
    return num_views


def _connectivity_batches(
    scans: list[np.ndarray],
    *,
    view: str,
    num_views: int,
    seed: int,
    batch_size: int,
    kind: str,
    drop_ratio: float,
    show_progress: bool,
    desc: str,
    fc_options: dict[str, Any] | None = None,
) -> Iterator[list[torch.Tensor]]:
    """Yield, per batch of scans, a list of `num_views` FC tensors `[B, R, R]`.

    One seeded CPU generator is consumed in scan order, so (seed, batch_size, scan order)
    reproduce the same pFC views, whatever encoder the views are fed to.
    """
    fc_options = dict(fc_options or {})
    fisher_z = bool(fc_options.pop("fisher_z", False))
    generator = torch.Generator().manual_seed(int(seed))
    starts = range(0, len(scans), batch_size)
    for start in tqdm(starts, desc=desc, disable=not show_progress, leave=False):
        time_series, time_mask = pad_time_series(scans[start : start + batch_size])
        if view == "full":
            yield [functional_connectivity(time_series, time_mask=time_mask, kind=kind, fisher_z=fisher_z)]
        else:
            yield [
                pseudo_functional_connectivity(
                    time_series, time_mask=time_mask, drop_ratio=drop_ratio, kind=kind, generator=generator,
                    fisher_z=fisher_z, **fc_options,
                )
                for _ in range(num_views)
            ]


def _fc_options_of(config: Any) -> dict[str, Any]:
    """The FC settings a checkpoint was trained with, beyond kind and drop ratio."""
    options = {"fisher_z": bool(getattr(config, "fisher_z", False))}
    if hasattr(config, "pfc_mask_way"):
        options["mask_way"] = config.pfc_mask_way
    if hasattr(config, "pfc_crop_length"):
        options["crop_length"] = config.pfc_crop_length
    return options


def _encoder_of(model: torch.nn.Module) -> torch.nn.Module:
    """The bare encoder (`BrainMassModel`) inside a task or pretraining model."""
    base = getattr(model, "base_model", model)
    return base if base is not None else model


def extract_features(
    model: torch.nn.Module,
    time_series: Sequence[np.ndarray],
    *,
    view: str = "full",
    num_views: int = 1,
    seed: int = 0,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    fc_kind: str | None = None,
    drop_ratio: float | None = None,
    show_progress: bool = False,
) -> np.ndarray:
    """Frozen BrainMass features (`pooler_output`) of each scan.

    Args:
        model: a `BrainMassModel` (or any model whose `base_model` is one).
        time_series: one float array `[T_i, R]` per scan; T may vary.
        view: `"full"` (FC of all time points), `"pfc"` (one pFC view), or `"tta"` (the mean
            feature of `num_views` pFC views).
        num_views: number of pFC views averaged for `"tta"`; must be 1 otherwise.
        seed: seeds the pFC draws; the same seed and `batch_size` reproduce the same views.
        batch_size: scans per forward pass.
        device: where the encoder runs (the model is moved there); default its current device.
        fc_kind: FC estimator; default `model.config.fc_kind`.
        drop_ratio: fraction of time points a pFC view drops; default `model.config.pfc_drop_ratio`.

    Returns:
        float32 array `[N, 8R]`.
    """
    scans = _check_time_series(time_series)
    num_views = _view_count(view, num_views)
    encoder = _encoder_of(model)
    config = encoder.config
    num_rois = getattr(config, "num_rois", None)
    if num_rois is not None and scans[0].shape[1] != num_rois:
        raise ValueError(
            f"The scans have {scans[0].shape[1]} ROIs but the model expects num_rois={num_rois}; "
            "use time series from the atlas the model was trained on."
        )
    fc_kind = fc_kind or getattr(config, "fc_kind", "pearson")
    drop_ratio = getattr(config, "pfc_drop_ratio", 0.2) if drop_ratio is None else drop_ratio
    fc_options = _fc_options_of(config)
    if device is not None:
        encoder.to(device)
    parameter = next(encoder.parameters())
    was_training = encoder.training
    encoder.eval()
    features = []
    try:
        with torch.inference_mode():
            for views in _connectivity_batches(
                scans, view=view, num_views=num_views, seed=seed, batch_size=batch_size, kind=fc_kind,
                drop_ratio=drop_ratio, show_progress=show_progress, desc=f"features ({view})", fc_options=fc_options,
            ):
                total = None
                for fc in views:
                    out = encoder(connectivity=fc.to(parameter.device, parameter.dtype)).pooler_output
                    out = out.float().cpu()
                    total = out if total is None else total + out
                features.append((total / len(views)).numpy())
    finally:
        encoder.train(was_training)
    return np.concatenate(features).astype(np.float32)


def raw_fc_features(
    time_series: Sequence[np.ndarray],
    *,
    view: str = "full",
    num_views: int = 1,
    seed: int = 0,
    kind: str = "pearson",
    drop_ratio: float = 0.2,
    batch_size: int = 32,
    show_progress: bool = False,
    fc_options: dict[str, Any] | None = None,
) -> np.ndarray:
    """The raw-FC baseline feature: strict upper triangle of the FC, `[N, R(R-1)/2]` float32.

    Views are drawn exactly as in `extract_features` (same `seed` and `batch_size` → same dropped
    time points), so the baseline and the model see the same data. `fc_options` passes
    `fisher_z`, `mask_way` and `crop_length` on to `brainmass_hf.connectivity`.
    """
    scans = _check_time_series(time_series)
    num_views = _view_count(view, num_views)
    features = []
    for views in _connectivity_batches(
        scans, view=view, num_views=num_views, seed=seed, batch_size=batch_size, kind=kind,
        drop_ratio=drop_ratio, show_progress=show_progress, desc=f"raw FC ({view})", fc_options=fc_options,
    ):
        features.append((sum(fc_upper_triangle(fc).float() for fc in views) / len(views)).numpy())
    return np.concatenate(features).astype(np.float32)


def random_init_like(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """The same architecture and config as `model`'s encoder, with fresh weights drawn under `seed`.

    It lands on the device and dtype of `model`; the global torch RNG is left untouched.
    """
    encoder = _encoder_of(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        fresh = type(encoder)(encoder.config)
    parameter = next(encoder.parameters())
    return fresh.to(parameter.device, parameter.dtype).eval()


# ----------------------------------------------------------------------------------------------
# Classifiers
# ----------------------------------------------------------------------------------------------


def make_classifier(name: str = "svm", *, C: float = 1.0, max_iter: int = 5000) -> Pipeline:
    """`"svm"`: StandardScaler → SVC(rbf, C) (the paper's protocol); `"logreg"`: StandardScaler →
    LogisticRegression (linear probe)."""
    if name == "svm":
        return make_pipeline(StandardScaler(), SVC(kernel="rbf", C=C))
    if name in ("logreg", "linear_probe"):
        return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    raise ValueError(f"classifier must be one of {CLASSIFIERS}; got {name!r}.")


def decision_scores(classifier: Pipeline, features: np.ndarray) -> np.ndarray:
    """`decision_function` as AUC scores: `[N]` for two classes (higher = class 1), else `[N, K]`."""
    return np.asarray(classifier.decision_function(features), dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------


def _strata(labels: np.ndarray, sites: Sequence[Any] | None) -> np.ndarray:
    """Label codes, or label × site codes; a label×site cell with one scan joins the largest cell of
    its label (a one-member stratum cannot be split)."""
    if sites is None:
        return np.asarray(labels)
    labels = np.asarray(labels)
    _, site_codes = np.unique(_check_sites(sites, labels.shape[0]), return_inverse=True)
    strata = labels.astype(np.int64) * (site_codes.max() + 1) + site_codes
    for label in np.unique(labels):
        cells, counts = np.unique(strata[labels == label], return_counts=True)
        largest = cells[np.argmax(counts)]
        for cell, count in zip(cells, counts):
            if count < 2:
                strata[strata == cell] = largest
    return strata


def repeated_stratified_splits(
    labels: Sequence[Any],
    *,
    n_repeats: int = 10,
    test_size: float | int = 0.2,
    seed: int = 0,
    sites: Sequence[Any] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`n_repeats` random train/test splits, stratified by label (label × site when `sites` given).

    Yields sorted `(train_idx, test_idx)` integer arrays; the same `seed` yields the same splits.
    """
    labels = _check_labels(labels)
    splitter = StratifiedShuffleSplit(n_splits=n_repeats, test_size=test_size, random_state=seed)
    strata = _strata(labels, sites)
    for train, test in splitter.split(np.zeros(labels.shape[0]), strata):
        yield np.sort(train), np.sort(test)


def kfold_splits(
    labels: Sequence[Any], n_splits: int = 5, seed: int = 0, sites: Sequence[Any] | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stratified, shuffled k-fold; every scan is in exactly one test fold."""
    labels = _check_labels(labels)
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for train, test in splitter.split(np.zeros(labels.shape[0]), _strata(labels, sites)):
        yield np.sort(train), np.sort(test)


def leave_one_site_out(sites: Sequence[Any]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One split per site (sorted by name): that site's scans are the test set, all others train."""
    sites = np.asarray([str(s) for s in sites])
    unique = np.unique(sites)
    if unique.size < 2:
        raise ValueError(f"leave-one-site-out needs at least two sites; got {unique.tolist()}.")
    for site in unique:
        yield np.flatnonzero(sites != site), np.flatnonzero(sites == site)


def few_shot_splits(
    labels: Sequence[Any], k: int, *, n_draws: int = 10, seed: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`n_draws` draws of exactly `k` training scans per class; every other scan is a test scan.

    Draw i uses `numpy.random.default_rng([seed, i])`. Raises ValueError when the smallest class
    has fewer than `k + 1` scans (one must remain for testing).
    """
    labels = _check_labels(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if k < 1:
        raise ValueError(f"k must be at least 1 labelled scan per class; got {k}.")
    if counts.min() < k + 1:
        raise ValueError(
            f"k={k} labelled scans per class needs at least k+1 = {k + 1} scans in every class; the "
            f"smallest class ({classes[np.argmin(counts)]}) has {counts.min()}."
        )
    for draw in range(n_draws):
        rng = np.random.default_rng([seed, draw])
        train = np.concatenate([rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c in classes])
        train = np.sort(train)
        yield train, np.setdiff1d(np.arange(labels.shape[0]), train)


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def classification_metrics(
    y_true: Sequence[Any], y_pred: Sequence[Any], scores: np.ndarray, labels: Sequence[Any] | None = None
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, AUC, sensitivity, specificity, F1 and the confusion matrix.

    Args:
        y_true, y_pred: `[N]` class values.
        scores: binary: `[N]` scores of the positive class (or `[N, 2]`, whose column difference is
            used); multi-class: `[N, K]`, one column per entry of `labels`.
        labels: the classes in order; binary positive class = `labels[1]`. Default: sorted union of
            `y_true` and `y_pred`.

    Binary sensitivity/specificity/F1 treat `labels[1]` as positive; with more classes they (and
    AUC) are macro averages of one-vs-rest values over the classes present in `y_true`. A metric
    that is undefined for this test set (e.g. AUC with one class present) is NaN.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    scores = np.asarray(scores, dtype=np.float64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must be 1D and of equal length.")
    if scores.shape[0] != y_true.shape[0]:
        raise ValueError(f"scores has {scores.shape[0]} rows for {y_true.shape[0]} labels.")
    if labels is None:
        labels = np.unique(np.concatenate([y_true, y_pred]))
        # The score matrix knows the class count even when a class is absent from this test set.
        if scores.ndim == 2 and scores.shape[1] > 2 and np.issubdtype(labels.dtype, np.integer):
            labels = np.arange(scores.shape[1])
        elif (scores.ndim == 1 or scores.shape[1] == 2) and set(labels.tolist()) <= {0, 1}:
            labels = np.array([0, 1])
    labels = np.asarray(labels)
    cm = _sk_confusion_matrix(y_true, y_pred, labels=labels)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)  # true members per class
    predicted = cm.sum(axis=0)
    negatives = cm.sum() - support
    tn = cm.sum() - support - predicted + tp
    present = support > 0
    recall = np.array([_ratio(t, s) for t, s in zip(tp, support)])
    specificity = np.array([_ratio(t, n) for t, n in zip(tn, negatives)])
    # F1 = 2TP / (2TP + FP + FN) = 2TP / (support + predicted); 0 when both are 0 (sklearn's zero_division=0).
    f1 = np.array([2 * t / (s + p) if s + p > 0 else 0.0 for t, s, p in zip(tp, support, predicted)])

    if labels.size == 2:
        if scores.ndim == 2:
            if scores.shape[1] != 2:
                raise ValueError(f"Binary scores must be [N] or [N, 2]; got {scores.shape}.")
            scores = scores[:, 1] - scores[:, 0]
        positive = y_true == labels[1]
        auc = float(roc_auc_score(positive, scores)) if 0 < positive.sum() < positive.size else float("nan")
        sensitivity, spec, f1_value = recall[1], specificity[1], float(f1[1])
    else:
        if scores.ndim != 2 or scores.shape[1] != labels.size:
            raise ValueError(
                f"Multi-class scores must be [N, {labels.size}] (one column per class); got {scores.shape}."
            )
        per_class_auc = [
            roc_auc_score(y_true == c, scores[:, i])
            for i, c in enumerate(labels)
            if 0 < np.sum(y_true == c) < y_true.size
        ]
        auc = float(np.mean(per_class_auc)) if per_class_auc else float("nan")
        sensitivity = float(np.mean(recall[present])) if present.any() else float("nan")
        spec = float(np.nanmean(specificity)) if np.isfinite(specificity).any() else float("nan")
        f1_value = float(np.mean(f1[present | (predicted > 0)]))
    return {
        "accuracy": _ratio(tp.sum(), cm.sum()),
        "balanced_accuracy": float(np.mean(recall[present])) if present.any() else float("nan"),
        "auc": auc,
        "sensitivity": float(sensitivity),
        "specificity": float(spec),
        "f1": float(f1_value),
        "confusion_matrix": cm.tolist(),
    }


def summarize(results: Sequence[dict[str, Any]], metrics: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Mean ± std per metric over splits: `{metric: {"mean", "std", "n"}}`.

    NaN values (undefined on a split) are left out; std is the sample std (ddof=1), 0 for one value.
    """
    if metrics is None:  # every numeric entry of the first record except split bookkeeping
        first = results[0] if results else {}
        metrics = [
            k for k, v in first.items()
            if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
            and k not in ("split", "train_size", "test_size")
        ]
    summary = {}
    for metric in metrics:
        values = np.array([r[metric] for r in results if metric in r], dtype=np.float64)
        values = values[np.isfinite(values)]
        summary[metric] = {
            "mean": float(values.mean()) if values.size else float("nan"),
            "std": float(values.std(ddof=1)) if values.size > 1 else (0.0 if values.size else float("nan")),
            "n": int(values.size),
        }
    return summary


def format_mean_std(stats: dict[str, float] | None, digits: int = 3) -> str:
    if not stats or not np.isfinite(stats.get("mean", float("nan"))):
        return "—"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


# ----------------------------------------------------------------------------------------------
# Protocols on features
# ----------------------------------------------------------------------------------------------


@dataclass
class ProtocolResult:
    """One method under one protocol (and one k / one site pair where that applies).

    `splits` holds, per split, the train/test indices, true labels, predictions, decision scores
    (the ROC data), every metric and the confusion matrix; `summary` is `summarize(splits)`.
    """

    protocol: str
    method: str
    splits: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """Protocol label for tables: e.g. `few_shot (k=5)`, `zero_shot (A → B)`."""
        if "k" in self.settings:
            return f"{self.protocol} (k={self.settings['k']})"
        if "source" in self.settings:
            return f"{self.protocol} ({self.settings['source']} → {self.settings['target']})"
        return self.protocol

    @property
    def skipped(self) -> bool:
        return not self.splits

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "name": self.name,
            "method": self.method,
            "settings": self.settings,
            "summary": self.summary,
            "notes": self.notes,
            "splits": self.splits,
        }


def _split_record(
    index: int, train: np.ndarray, test: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray,
    scores: np.ndarray, num_classes: int,
) -> dict[str, Any]:
    record = {"split": index, "train_size": int(train.size), "test_size": int(test.size)}
    record.update(classification_metrics(y_true, y_pred, scores, labels=np.arange(num_classes)))
    record.update(
        train_index=train.tolist(), test_index=test.tolist(), y_true=y_true.tolist(),
        y_pred=y_pred.tolist(), scores=scores.tolist(),
    )
    return record


def evaluate_features(
    train_features: np.ndarray,
    labels: Sequence[int],
    splits: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    test_features: np.ndarray | None = None,
    classifier: str = "svm",
    protocol: str = "paper",
    method: str = METHOD_MODEL,
    settings: dict[str, Any] | None = None,
    show_progress: bool = False,
) -> ProtocolResult:
    """Fit `classifier` on `train_features[train]`, score `test_features[test]`, for every split.

    Args:
        train_features: `[N, D]` features used for training rows (e.g. one pFC view per scan).
        labels: `[N]` integer class codes 0..K-1.
        splits: `(train_idx, test_idx)` pairs.
        test_features: `[N, D]` features used for test rows (e.g. full FC); default `train_features`.
        classifier: `"svm"` or `"logreg"` (see `make_classifier`).

    A split whose training rows miss a class is skipped and named in `notes`.
    """
    labels = _check_labels(labels)
    train_features = _check_features(train_features, labels, name="train_features")
    test_features = (
        train_features if test_features is None else _check_features(test_features, labels, name="test_features")
    )
    if test_features.shape[1] != train_features.shape[1]:
        raise ValueError(
            f"train_features have {train_features.shape[1]} columns and test_features {test_features.shape[1]}; "
            "both must come from the same encoder."
        )
    make_classifier(classifier)  # validates the name before any fitting
    num_classes = int(labels.max()) + 1
    result = ProtocolResult(protocol, method, settings={"classifier": classifier, **(settings or {})})
    for index, (train, test) in enumerate(
        tqdm(list(splits), desc=f"{protocol} · {method}", disable=not show_progress, leave=False)
    ):
        train, test = np.asarray(train, dtype=np.int64), np.asarray(test, dtype=np.int64)
        if np.unique(labels[train]).size < num_classes:
            result.notes.append(f"split {index} skipped: its training rows miss a class.")
            continue
        model = make_classifier(classifier).fit(train_features[train], labels[train])
        scores = decision_scores(model, test_features[test])
        result.splits.append(
            _split_record(index, train, test, labels[test], model.predict(test_features[test]), scores, num_classes)
        )
    tied = [r["split"] for r in result.splits if np.ptp(np.asarray(r["scores"])) == 0]
    if tied:
        result.notes.append(
            f"{len(tied)} of {len(result.splits)} splits gave every test scan the same decision score, so their AUC "
            "is 0.5 by construction (e.g. an RBF SVM fit on two standardised scans, k=1, whose kernel underflows)."
        )
    result.summary = summarize(result.splits, METRICS)
    return result


def run_paper_protocol(
    train_features: np.ndarray,
    labels: Sequence[int],
    *,
    test_features: np.ndarray | None = None,
    n_repeats: int = 10,
    test_size: float = 0.2,
    seed: int = 0,
    sites: Sequence[Any] | None = None,
    method: str = METHOD_MODEL,
    show_progress: bool = False,
) -> ProtocolResult:
    """The authors' protocol on precomputed features: StandardScaler → SVC(rbf, C=1) over
    `n_repeats` stratified splits. Pass pFC-view features as `train_features` and full-FC (or
    pFC / TTA) features as `test_features`."""
    splits = repeated_stratified_splits(labels, n_repeats=n_repeats, test_size=test_size, seed=seed, sites=sites)
    return evaluate_features(
        train_features, labels, splits, test_features=test_features, classifier="svm", protocol="paper",
        method=method, settings={"n_repeats": n_repeats, "test_size": test_size, "seed": seed},
        show_progress=show_progress,
    )


def run_linear_probe(
    train_features: np.ndarray,
    labels: Sequence[int],
    *,
    test_features: np.ndarray | None = None,
    n_repeats: int = 10,
    test_size: float = 0.2,
    seed: int = 0,
    sites: Sequence[Any] | None = None,
    method: str = METHOD_MODEL,
    show_progress: bool = False,
) -> ProtocolResult:
    """Same features and splits as the paper protocol, StandardScaler → LogisticRegression."""
    splits = repeated_stratified_splits(labels, n_repeats=n_repeats, test_size=test_size, seed=seed, sites=sites)
    return evaluate_features(
        train_features, labels, splits, test_features=test_features, classifier="logreg",
        protocol="linear_probe", method=method,
        settings={"n_repeats": n_repeats, "test_size": test_size, "seed": seed}, show_progress=show_progress,
    )


def run_few_shot(
    train_features: np.ndarray,
    labels: Sequence[int],
    *,
    test_features: np.ndarray | None = None,
    k_values: Sequence[int] = (1, 5, 10, 20),
    n_draws: int = 10,
    seed: int = 0,
    classifier: str = "svm",
    method: str = METHOD_MODEL,
    show_progress: bool = False,
) -> list[ProtocolResult]:
    """Few-shot: for each k, `n_draws` draws of k labelled scans per class, tested on all others.

    A k the smallest class cannot supply (needs k + 1 scans) gives a result with no splits and a
    note saying why.
    """
    labels = _check_labels(labels)
    if any(k < 1 for k in k_values):
        raise ValueError(f"Every few-shot k must be at least 1; got {list(k_values)}.")
    smallest = int(np.bincount(labels).min())
    results = []
    for k in k_values:
        settings = {"k": int(k), "n_draws": n_draws, "seed": seed}
        if smallest < k + 1:
            result = ProtocolResult("few_shot", method, settings={"classifier": classifier, **settings})
            result.notes.append(
                f"k={k} skipped: the smallest class has {smallest} scans; k labelled scans per class "
                "plus at least one test scan are needed."
            )
            results.append(result)
            continue
        results.append(
            evaluate_features(
                train_features, labels, few_shot_splits(labels, k, n_draws=n_draws, seed=seed),
                test_features=test_features, classifier=classifier, protocol="few_shot", method=method,
                settings=settings, show_progress=show_progress,
            )
        )
    return results


def site_pairs(sites: Sequence[Any], pairs: Sequence[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    """All ordered (source, target) pairs of distinct sites, or the given pairs after checking them."""
    unique = np.unique(np.asarray([str(s) for s in sites])).tolist()
    if pairs is None:
        if len(unique) < 2:
            raise ValueError(f"zero-shot transfer needs at least two sites/cohorts; got {unique}.")
        return [(a, b) for a in unique for b in unique if a != b]
    checked = []
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"Each zero-shot pair must be (source, target); got {pair!r}.")
        source, target = str(pair[0]), str(pair[1])
        for name in (source, target):
            if name not in unique:
                raise ValueError(f"Site {name!r} of pair {pair!r} is not in the data; sites are {unique}.")
        if source == target:
            raise ValueError(f"Zero-shot pair {pair!r} uses the same site twice; pick two different sites.")
        checked.append((source, target))
    return checked


def run_zero_shot(
    train_features: np.ndarray,
    labels: Sequence[int],
    sites: Sequence[Any],
    *,
    test_features: np.ndarray | None = None,
    pairs: Sequence[tuple[str, str]] | None = None,
    classifier: str = "svm",
    method: str = METHOD_MODEL,
    show_progress: bool = False,
) -> list[ProtocolResult]:
    """Zero-shot transfer: fit on every scan of the source site, test on every scan of the target
    site (no target labels used). One result per ordered (source, target) pair."""
    labels = _check_labels(labels)
    sites = _check_sites(sites, labels.shape[0])
    results = []
    for source, target in site_pairs(sites, pairs):
        split = (np.flatnonzero(sites == source), np.flatnonzero(sites == target))
        result = evaluate_features(
            train_features, labels, [split], test_features=test_features, classifier=classifier,
            protocol="zero_shot", method=method, settings={"source": source, "target": target},
            show_progress=show_progress,
        )
        if result.skipped:
            result.notes = [f"skipped: {source} lacks a class, so no classifier can be trained on it alone."]
        results.append(result)
    return results


# ----------------------------------------------------------------------------------------------
# Fine-tuning
# ----------------------------------------------------------------------------------------------


def _logits_of(predictions: Any) -> np.ndarray:
    if isinstance(predictions, (tuple, list)):
        predictions = predictions[0]
    return np.asarray(predictions, dtype=np.float64)


def run_finetune(
    model_name_or_path: str | os.PathLike,
    dataset: Any,
    splits: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    method: str = METHOD_MODEL,
    output_dir: str | os.PathLike | None = None,
    finetune_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    show_progress: bool = False,
) -> ProtocolResult:
    """Fine-tune the whole network on each split's training rows and score its test rows.

    Args:
        model_name_or_path: a saved BrainMass checkpoint.
        dataset: a `datasets.Dataset` whose `label` column is a ClassLabel (codes 0..K-1).
        splits: `(train_idx, test_idx)` pairs.
        output_dir: where each split's Trainer writes (`<output_dir>/split_<i>`); a temporary folder
            (removed afterwards) when None.
        finetune_kwargs: passed to `brainmass_hf.training.finetune` (e.g. `num_train_epochs`,
            `learning_rate`, `per_device_train_batch_size`).

    Metrics come from the logits `[N, K]` (binary AUC from the logit difference).
    """
    from .training import finetune

    labels = _check_labels(np.asarray(dataset["label"]))
    num_classes = int(labels.max()) + 1
    kwargs = {"seed": seed, "num_labels": num_classes, "disable_tqdm": not show_progress, **(finetune_kwargs or {})}
    result = ProtocolResult("finetune", method, settings={"classifier": "finetuned head", **kwargs})
    with tempfile.TemporaryDirectory(prefix="brainmass_finetune_") as scratch:
        root = Path(output_dir) if output_dir is not None else Path(scratch)
        for index, (train, test) in enumerate(
            tqdm(list(splits), desc=f"finetune · {method}", disable=not show_progress, leave=False)
        ):
            train, test = np.asarray(train, dtype=np.int64), np.asarray(test, dtype=np.int64)
            trainer = finetune(
                str(model_name_or_path), dataset.select(train.tolist()), None,
                output_dir=str(root / f"split_{index}"), **kwargs,
            )
            logits = _logits_of(trainer.predict(dataset.select(test.tolist())).predictions)
            scores = logits[:, 1] - logits[:, 0] if num_classes == 2 else logits
            result.splits.append(
                _split_record(index, train, test, labels[test], logits.argmax(axis=1), scores, num_classes)
            )
            del trainer
    result.summary = summarize(result.splits, METRICS)
    return result


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Plain JSON types; NaN/inf become null (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def roc_curve_data(result: ProtocolResult, num_points: int = 101) -> dict[str, Any] | None:
    """Mean ROC over the splits of `result` on a common FPR grid (multi-class: macro one-vs-rest).

    Returns `{"fpr", "tpr_mean", "tpr_std", "auc_mean", "auc_std"}` or None without usable splits.
    """
    grid = np.linspace(0.0, 1.0, num_points)
    curves = []
    for split in result.splits:
        y_true, scores = np.asarray(split["y_true"]), np.asarray(split["scores"], dtype=np.float64)
        if scores.ndim == 1:
            columns = [(y_true == 1, scores)]
        else:
            columns = [(y_true == c, scores[:, c]) for c in range(scores.shape[1])]
        per_class = []
        for positive, score in columns:
            if 0 < positive.sum() < positive.size:
                fpr, tpr, _ = roc_curve(positive, score)
                per_class.append(np.interp(grid, fpr, tpr))
        if per_class:
            curve = np.mean(per_class, axis=0)
            curve[0] = 0.0
            curves.append(curve)
    if not curves:
        return None
    curves = np.asarray(curves)
    return {
        "fpr": grid,
        "tpr_mean": curves.mean(axis=0),
        "tpr_std": curves.std(axis=0),
        "auc_mean": result.summary.get("auc", {}).get("mean", float("nan")),
        "auc_std": result.summary.get("auc", {}).get("std", float("nan")),
    }


_METHOD_ORDER = {METHOD_MODEL: 0, METHOD_RAW_FC: 1, METHOD_RANDOM: 2}
_METHOD_COLOR = {METHOD_MODEL: "tab:blue", METHOD_RAW_FC: "tab:orange", METHOD_RANDOM: "tab:gray"}


@dataclass
class EvaluationReport:
    """Every protocol × method result of one `evaluate` call.

    Attributes:
        results: one `ProtocolResult` per (protocol [, k or site pair], method).
        class_names: class names in code order.
        settings: the arguments and model facts the numbers depend on.
        notes: warnings worth reading next to the numbers (skipped k, skipped protocols).
    """

    results: list[ProtocolResult]
    class_names: list[str]
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def get(self, protocol: str, method: str = METHOD_MODEL) -> list[ProtocolResult]:
        """Results of one protocol (by `protocol` or by `name`, e.g. `few_shot (k=5)`) and method."""
        return [r for r in self.results if protocol in (r.protocol, r.name) and r.method == method]

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(
            {
                "class_names": self.class_names,
                "settings": self.settings,
                "notes": self.notes,
                "results": [r.to_dict() for r in self.results],
            }
        )

    def to_json(self, path: str | os.PathLike | None = None, *, indent: int | None = None) -> str:
        """The report as JSON text (NaN → null); also written to `path` when given."""
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            Path(path).write_text(text)
        return text

    def to_markdown(self, digits: int = 3) -> str:
        """A table: rows = protocol × method, columns = metrics as mean ± std over splits."""
        columns = ["protocol", "method", "splits", *METRICS]
        header = ["protocol", "method", "splits", "accuracy", "balanced accuracy", "AUC", "sensitivity",
                  "specificity", "F1"]
        lines = ["# BrainMass evaluation", ""]
        counts = self.settings.get("class_counts")
        if counts:
            lines.append(
                f"{self.settings.get('num_scans', sum(counts))} scans; classes: "
                + ", ".join(f"{name} ({n})" for name, n in zip(self.class_names, counts))
                + f". Test view: {self.settings.get('test_view', 'full')}; seed {self.settings.get('seed', 0)}."
            )
            lines.append("")
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(columns))
        order = {name: i for i, name in enumerate(dict.fromkeys(r.name for r in self.results))}
        for r in sorted(self.results, key=lambda r: (order[r.name], _METHOD_ORDER.get(r.method, 9))):
            cells = [r.name, r.method, str(len(r.splits))]
            cells += [format_mean_std(r.summary.get(m), digits) for m in METRICS]
            lines.append("| " + " | ".join(cells) + " |")
        notes = list(self.notes) + [f"{r.name} · {r.method}: {n}" for r in self.results for n in r.notes]
        if notes:
            lines += ["", "Notes:", ""] + [f"- {n}" for n in dict.fromkeys(notes)]
        lines.append("")
        return "\n".join(lines)

    def plot_roc(self, protocol: str, path: str | os.PathLike) -> Path | None:
        """ROC curves (mean over splits, ±1 std band) of every method for one protocol name."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        groups: dict[str, list[ProtocolResult]] = {}
        for r in self.results:
            if r.protocol == protocol and r.splits:
                groups.setdefault(r.name, []).append(r)
        if not groups:
            return None
        fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 4.5), squeeze=False)
        for ax, (name, results) in zip(axes[0], groups.items()):
            for r in sorted(results, key=lambda r: _METHOD_ORDER.get(r.method, 9)):
                curve = roc_curve_data(r)
                if curve is None:
                    continue
                color = _METHOD_COLOR.get(r.method)
                ax.plot(curve["fpr"], curve["tpr_mean"], color=color,
                        label=f"{r.method} (AUC {format_mean_std(r.summary.get('auc'), 2)})")
                ax.fill_between(curve["fpr"], np.clip(curve["tpr_mean"] - curve["tpr_std"], 0, 1),
                                np.clip(curve["tpr_mean"] + curve["tpr_std"], 0, 1), color=color, alpha=0.15)
            ax.plot([0, 1], [0, 1], ls="--", color="k", lw=0.8)
            ax.set(xlabel="false positive rate", ylabel="true positive rate", title=name, xlim=(0, 1), ylim=(0, 1))
            ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return Path(path)

    def plot_few_shot(self, path: str | os.PathLike, metric: str = "auc") -> Path | None:
        """`metric` (mean ± std over draws) against k, one line per method."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        by_method: dict[str, list[tuple[int, dict[str, float]]]] = {}
        for r in self.results:
            if r.protocol == "few_shot" and r.splits:
                by_method.setdefault(r.method, []).append((r.settings["k"], r.summary.get(metric, {})))
        if not by_method:
            return None
        fig, ax = plt.subplots(figsize=(5, 4))
        for method in sorted(by_method, key=lambda m: _METHOD_ORDER.get(m, 9)):
            points = sorted(by_method[method])
            ax.errorbar([k for k, _ in points], [s["mean"] for _, s in points], yerr=[s["std"] for _, s in points],
                        marker="o", capsize=3, label=method, color=_METHOD_COLOR.get(method))
        ax.set_xscale("log")
        ks = sorted({k for pts in by_method.values() for k, _ in pts})
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.axhline(0.5 if metric in ("auc", "balanced_accuracy") else np.nan, ls="--", color="k", lw=0.8)
        ax.set(xlabel="labelled scans per class (k)", ylabel=metric, title="few-shot")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return Path(path)

    def save(self, output_dir: str | os.PathLike) -> dict[str, Path]:
        """Write `results.json`, `results.md`, `roc_<protocol>.png` per protocol with ROC data, and
        `few_shot.png` when few-shot ran. Returns the written paths by name."""
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        written = {"results.json": output_dir / "results.json", "results.md": output_dir / "results.md"}
        self.to_json(written["results.json"])
        written["results.md"].write_text(self.to_markdown())
        for protocol in dict.fromkeys(r.protocol for r in self.results):
            if protocol == "few_shot":
                path = self.plot_few_shot(output_dir / "few_shot.png")
            else:
                path = self.plot_roc(protocol, output_dir / f"roc_{protocol}.png")
            if path is not None:
                written[path.name] = path
        return written


# ----------------------------------------------------------------------------------------------
# Top level
# ----------------------------------------------------------------------------------------------


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
    """Integer class codes `[N]` and class names from a dataset column.

    A ClassLabel keeps its names (classes without scans are dropped and the rest re-coded in
    order); any other column is encoded by its sorted distinct values.
    """
    if label_column not in dataset.column_names:
        raise ValueError(
            f"The dataset has no column {label_column!r}; pass label_column= naming the column that holds "
            f"each scan's class (columns: {dataset.column_names})."
        )
    values = list(dataset[label_column])
    missing = [i for i, v in enumerate(values) if v is None or (isinstance(v, float) and math.isnan(v))]
    if missing:
        raise ValueError(
            f"Column {label_column!r} has {len(missing)} missing labels (rows {missing[:5]}…); drop those rows."
        )
    feature = dataset.features[label_column]
    names_of_codes = getattr(feature, "names", None)
    values = np.asarray(values)
    if np.issubdtype(values.dtype, np.floating) and not np.all(values == np.round(values)):
        raise ValueError(
            f"Column {label_column!r} holds continuous values; evaluation is classification, so bin it into "
            "classes first (or pick a categorical column)."
        )
    classes, codes = np.unique(values, return_inverse=True)
    if names_of_codes is not None:
        names = [names_of_codes[int(c)] for c in classes]
    else:
        names = [str(c.item() if hasattr(c, "item") else c) for c in classes]
    codes = codes.astype(np.int64)
    counts = np.bincount(codes)
    if classes.size < 2:
        raise ValueError(f"Column {label_column!r} holds a single class ({names[0]}); evaluation needs two or more.")
    if counts.min() < 2:
        rare = [n for n, c in zip(names, counts) if c < 2]
        raise ValueError(
            f"Class(es) {rare} of column {label_column!r} have fewer than 2 scans; every class needs at least 2. "
            "Drop or merge those classes."
        )
    return codes, names


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


def evaluate(
    model_or_path: Any,
    dataset: Any,
    *,
    protocols: str | Sequence[str] = ("paper", "linear_probe"),
    label_column: str = "label",
    site_column: str | None = None,
    n_repeats: int = 10,
    test_size: float = 0.2,
    test_view: str = "full",
    num_tta_views: int = 8,
    few_shot_k: Sequence[int] = (1, 5, 10, 20),
    seed: int = 0,
    output_dir: str | os.PathLike | None = None,
    show_progress: bool = True,
    include_random_baseline: bool = True,
    finetune_kwargs: dict[str, Any] | None = None,
    cv: str = "repeated",
    zero_shot_pairs: Sequence[tuple[str, str]] | None = None,
    finetune_repeats: int | None = None,
    batch_size: int = 32,
    device: str | None = None,
) -> EvaluationReport:
    """Evaluate a BrainMass encoder on a labelled dataset, with the raw-FC and random-init baselines.

    Args:
        model_or_path: a BrainMass model (any model whose `base_model` is a `BrainMassModel`) or a
            checkpoint path / hub id.
        dataset: a `datasets.Dataset` with `time_series` (`[T, R]` per row) and `label_column`, or
            a string for `resolve_dataset` (`"devfmri"`, a `save_to_disk` folder, an npz bundle, a
            folder of per-scan files).
        protocols: names from `PROTOCOLS` (or a comma-separated string, or `"all"`).
        label_column: the class column (ClassLabel, int or str values).
        site_column: a column naming each scan's site/cohort: splits are stratified by label × site,
            and `zero_shot` transfers between its values. Required for `zero_shot` and
            `cv="leave_one_site_out"`.
        n_repeats: repeated splits (`cv="repeated"`) and few-shot draws per k.
        test_size: test fraction of each repeated split.
        test_view: features of test scans: `"full"` FC, one `"pfc"` view, or `"tta"`.
        num_tta_views: pFC views averaged for `test_view="tta"`.
        few_shot_k: labelled scans per class for `few_shot`.
        seed: seeds splits, pFC views, few-shot draws, random-init weights and fine-tuning.
        output_dir: when given, `report.save(output_dir)` is called (fine-tuning runs go in
            `<output_dir>/finetune`).
        include_random_baseline: also evaluate the same architecture with random weights.
        finetune_kwargs: passed to `brainmass_hf.training.finetune`.
        cv: `"repeated"` (n_repeats stratified shuffles), `"kfold"` (5 folds) or
            `"leave_one_site_out"`; used by paper, linear_probe and finetune.
        zero_shot_pairs: `(source, target)` site pairs; default every ordered pair.
        finetune_repeats: how many of the splits fine-tuning runs on (it is slow); default all.
        batch_size, device: for feature extraction.

    Training features are one pFC view per scan (seed `seed`); test features are `test_view`
    (a pFC view uses seed `seed + 1`, TTA seed `seed + 2`). The raw-FC baseline uses the same views.
    """
    protocols = parse_protocols(protocols)
    if cv not in CV_SCHEMES:
        raise ValueError(f"cv must be one of {CV_SCHEMES}; got {cv!r}.")
    _view_count(test_view, num_tta_views if test_view == "tta" else 1)
    dataset = resolve_dataset(dataset)
    labels, class_names = labels_from_dataset(dataset, label_column)
    sites = None
    if site_column is not None:
        if site_column not in dataset.column_names:
            raise ValueError(
                f"site_column={site_column!r} is not a column of the dataset (columns: {dataset.column_names})."
            )
        sites = _check_sites(dataset[site_column], labels.shape[0])
    if sites is None and ("zero_shot" in protocols or cv == "leave_one_site_out"):
        raise ValueError("zero_shot and cv='leave_one_site_out' need site_column= naming each scan's site/cohort.")
    if "zero_shot" in protocols:
        zero_shot_pairs = site_pairs(sites, zero_shot_pairs)
    if "few_shot" in protocols and (not few_shot_k or any(int(k) < 1 for k in few_shot_k)):
        raise ValueError(f"few_shot_k must list labelled scans per class, each at least 1; got {list(few_shot_k)}.")
    time_series = time_series_list(dataset)
    encoder = _load_encoder(model_or_path)
    config = encoder.config
    fc_kind = getattr(config, "fc_kind", "pearson")
    drop_ratio = getattr(config, "pfc_drop_ratio", 0.2)

    if cv == "repeated":
        splits = list(
            repeated_stratified_splits(labels, n_repeats=n_repeats, test_size=test_size, seed=seed, sites=sites)
        )
    elif cv == "kfold":
        splits = list(kfold_splits(labels, n_splits=5, seed=seed, sites=sites))
    else:
        splits = list(leave_one_site_out(sites))

    settings = {
        "protocols": list(protocols), "label_column": label_column, "site_column": site_column, "cv": cv,
        "n_repeats": n_repeats, "test_size": test_size, "train_view": "pfc", "test_view": test_view,
        "num_tta_views": num_tta_views, "few_shot_k": list(few_shot_k), "seed": seed, "fc_kind": fc_kind,
        "pfc_drop_ratio": drop_ratio, **_fc_options_of(config), "num_scans": int(labels.size),
        "class_counts": np.bincount(labels).tolist(), "num_rois": int(time_series[0].shape[1]),
        "model": str(getattr(config, "_name_or_path", "") or type(encoder).__name__),
        "include_random_baseline": include_random_baseline, "finetune_kwargs": dict(finetune_kwargs or {}),
    }
    models = {METHOD_MODEL: encoder}
    if include_random_baseline:
        models[METHOD_RANDOM] = random_init_like(encoder, seed=seed)

    # Features once per method: training rows use one pFC view, test rows `test_view`.
    test_seed = {"full": seed, "pfc": seed + 1, "tta": seed + 2}[test_view]
    test_views = num_tta_views if test_view == "tta" else 1
    features: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    common = {"batch_size": batch_size, "show_progress": show_progress}
    if any(p != "finetune" for p in protocols):  # frozen-feature protocols
        extract = dict(common, device=device, fc_kind=fc_kind, drop_ratio=drop_ratio)
        for method, model in models.items():
            features[method] = (
                extract_features(model, time_series, view="pfc", seed=seed, **extract),
                extract_features(model, time_series, view=test_view, num_views=test_views, seed=test_seed, **extract),
            )
    # Raw FC is computed for every protocol: it is reported beside fine-tuning too.
    raw = dict(common, kind=fc_kind, drop_ratio=drop_ratio, fc_options=_fc_options_of(config))
    features[METHOD_RAW_FC] = (
        raw_fc_features(time_series, view="pfc", seed=seed, **raw),
        raw_fc_features(time_series, view=test_view, num_views=test_views, seed=test_seed, **raw),
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
            if protocol in ("paper", "linear_probe"):
                results.append(
                    evaluate_features(
                        train_x, labels, splits, test_features=test_x, classifier=_PROTOCOL_CLASSIFIER[protocol],
                        protocol=protocol, method=method, settings={"cv": cv, "seed": seed},
                        show_progress=show_progress,
                    )
                )
            elif protocol == "few_shot":
                results += run_few_shot(
                    train_x, labels, test_features=test_x, k_values=few_shot_k, n_draws=n_repeats, seed=seed,
                    method=method, show_progress=show_progress,
                )
            elif protocol == "zero_shot":
                results += run_zero_shot(
                    train_x, labels, sites, test_features=test_x, pairs=zero_shot_pairs, method=method,
                    show_progress=show_progress,
                )
    report = EvaluationReport(results, class_names, settings, notes)
    if output_dir is not None:
        report.save(output_dir)
    return report


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
    results.append(
        evaluate_features(train_x, labels, splits, test_features=test_x, classifier="svm", protocol="finetune",
                          method=METHOD_RAW_FC, settings={"note": "raw FC + SVM on the fine-tuning splits"},
                          show_progress=show_progress)
    )
    return results


__all__ = [
    "CLASSIFIERS",
    "CV_SCHEMES",
    "EvaluationReport",
    "METRICS",
    "PROTOCOLS",
    "ProtocolResult",
    "VIEWS",
    "classification_metrics",
    "decision_scores",
    "evaluate",
    "evaluate_features",
    "extract_features",
    "few_shot_splits",
    "format_mean_std",
    "kfold_splits",
    "labels_from_dataset",
    "leave_one_site_out",
    "make_classifier",
    "parse_protocols",
    "random_init_like",
    "raw_fc_features",
    "repeated_stratified_splits",
    "resolve_dataset",
    "roc_curve_data",
    "run_few_shot",
    "run_finetune",
    "run_linear_probe",
    "run_paper_protocol",
    "run_zero_shot",
    "site_pairs",
    "summarize",
]
