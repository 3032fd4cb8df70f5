"""Classification metrics per split (thin over `sklearn.metrics`), their summary over splits, and paired
differences between two methods evaluated on the same splits."""

from __future__ import annotations

from typing import Any, Sequence

import warnings

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    recall_score,
    roc_auc_score,
)

__all__ = ["METRICS", "classification_metrics", "format_mean_std", "paired_difference", "summarize"]

METRICS = ("accuracy", "majority_rate", "balanced_accuracy", "auc", "sensitivity", "specificity", "f1")


def _class_order(y_true: np.ndarray, y_pred: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The classes in code order when the caller gives none: the score matrix knows the class count even
    when a class is absent from this test set."""
    labels = np.unique(np.concatenate([y_true, y_pred]))
    if scores.ndim == 2 and scores.shape[1] > 2 and np.issubdtype(labels.dtype, np.integer):
        return np.arange(scores.shape[1])
    if (scores.ndim == 1 or scores.shape[1] == 2) and set(labels.tolist()) <= {0, 1}:
        return np.array([0, 1])
    return labels


def _auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of one positive-vs-rest column; NaN when the test set holds one side only."""
    return float(roc_auc_score(positive, score)) if 0 < positive.sum() < positive.size else float("nan")


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in `y_true`. A small test set may lack a class the classifier
    predicts; sklearn then warns and leaves that class out, which is the definition we want."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(y_true, y_pred))


def classification_metrics(
    y_true: Sequence[Any], y_pred: Sequence[Any], scores: np.ndarray, labels: Sequence[Any] | None = None
) -> dict[str, Any]:
    """Accuracy, majority-class rate, balanced accuracy, AUC, sensitivity, specificity, F1, confusion matrix.

    Args:
        y_true, y_pred: `[N]` class values.
        scores: binary: `[N]` scores of the positive class (or `[N, 2]`, whose column difference is used);
            multi-class: `[N, K]`, one column per entry of `labels`.
        labels: the classes in order; binary positive class = `labels[1]`. Default: sorted union of `y_true`
            and `y_pred`.

    `majority_rate` is the accuracy of always answering the test set's most frequent class: accuracy means
    little without it. Binary sensitivity/specificity/F1 treat `labels[1]` as positive (they are the ROC
    operating point of the classifier's own threshold); with more classes they (and AUC) are macro averages
    of one-vs-rest values over the classes present in `y_true`. A metric undefined on this test set (AUC and
    balanced accuracy with one class present) is NaN.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    scores = np.asarray(scores, dtype=np.float64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must be 1D and of equal length.")
    if scores.shape[0] != y_true.shape[0]:
        raise ValueError(f"scores has {scores.shape[0]} rows for {y_true.shape[0]} labels.")
    labels = _class_order(y_true, y_pred, scores) if labels is None else np.asarray(labels)
    present = np.isin(labels, y_true)
    # Recall of each class, and of each class's complement (= its one-vs-rest specificity); NaN if undefined.
    recall = recall_score(y_true, y_pred, labels=labels, average=None, zero_division=np.nan)
    specificity = np.array(
        [recall_score(y_true != c, y_pred != c, zero_division=np.nan) if (y_true != c).any() else np.nan
         for c in labels]
    )
    if labels.size == 2:
        if scores.ndim == 2:
            if scores.shape[1] != 2:
                raise ValueError(f"Binary scores must be [N] or [N, 2]; got {scores.shape}.")
            scores = scores[:, 1] - scores[:, 0]
        auc = _auc(y_true == labels[1], scores)
        sensitivity, spec = recall[1], specificity[1]
        f1 = f1_score(y_true, y_pred, labels=labels, pos_label=labels[1], zero_division=0)
    else:
        if scores.ndim != 2 or scores.shape[1] != labels.size:
            raise ValueError(f"Multi-class scores must be [N, {labels.size}] (one column per class); got {scores.shape}.")
        per_class = [_auc(y_true == c, scores[:, i]) for i, c in enumerate(labels)]
        auc = float(np.nanmean(per_class)) if np.isfinite(per_class).any() else float("nan")
        sensitivity = np.mean(recall[present]) if present.any() else np.nan
        spec = np.nanmean(specificity) if np.isfinite(specificity).any() else np.nan
        f1 = f1_score(y_true, y_pred, average="macro", zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "majority_rate": float(np.unique(y_true, return_counts=True)[1].max() / y_true.size),
        # one class in the test set (a one-class held-out site): balanced accuracy would be plain accuracy, so it is
        # undefined like AUC, and left out of the mean over splits
        "balanced_accuracy": _balanced_accuracy(y_true, y_pred) if np.unique(y_true).size > 1 else float("nan"),
        "auc": auc,
        "sensitivity": float(sensitivity),
        "specificity": float(spec),
        "f1": float(f1),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def _mean_std(values: np.ndarray) -> dict[str, float]:
    """Mean and sample std (ddof=1; 0 for one value) of the finite values, with their count."""
    values = values[np.isfinite(values)]
    return {
        "mean": float(values.mean()) if values.size else float("nan"),
        "std": float(values.std(ddof=1)) if values.size > 1 else (0.0 if values.size else float("nan")),
        "n": int(values.size),
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
    return {m: _mean_std(np.array([r[m] for r in results if m in r], dtype=np.float64)) for m in metrics}


def paired_difference(
    splits_a: Sequence[dict[str, Any]], splits_b: Sequence[dict[str, Any]], metric: str = "auc"
) -> dict[str, float]:
    """`metric` of A minus B on the splits both evaluated (matched by split index), as mean ± std over splits.

    Pairing removes the split-to-split spread both methods share (an easy test set is easy for both), so
    the std here is the spread of the difference, not of either method.
    """
    b_by_split = {r["split"]: r[metric] for r in splits_b}
    differences = [r[metric] - b_by_split[r["split"]] for r in splits_a if r["split"] in b_by_split]
    return _mean_std(np.asarray(differences, dtype=np.float64))


def format_mean_std(stats: dict[str, float] | None, digits: int = 3, *, signed: bool = False) -> str:
    """`"0.812 ± 0.031"` (`"+0.012 ± 0.020"` when `signed`); `"—"` when there is no finite mean."""
    if not stats or not np.isfinite(stats.get("mean", float("nan"))):
        return "—"
    sign = "+" if signed else ""
    return f"{stats['mean']:{sign}.{digits}f} ± {stats['std']:.{digits}f}"
