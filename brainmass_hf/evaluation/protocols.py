"""The evaluation protocols on frozen features (paper SVM, linear probe, few-shot, zero-shot) and the
fine-tuning protocol. Each returns `ProtocolResult`s holding every split's predictions and metrics."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from tqdm.auto import tqdm

from ..validation import describe_nonfinite
from ..metrics import METRICS, classification_metrics, summarize
from .splits import _check_labels, _check_per_scan, few_shot_splits, repeated_stratified_splits, site_pairs

__all__ = [
    "CLASSIFIERS",
    "METHOD_MODEL",
    "METHOD_RANDOM",
    "METHOD_RAW_FC",
    "METHOD_TANGENT",
    "PROTOCOLS",
    "ProtocolResult",
    "decision_scores",
    "evaluate_features",
    "make_classifier",
    "run_few_shot",
    "run_finetune",
    "run_linear_probe",
    "run_paper_protocol",
    "run_split_protocol",
    "run_zero_shot",
]

PROTOCOLS = ("paper", "linear_probe", "finetune", "few_shot", "zero_shot")
CLASSIFIERS = ("svm", "logreg", "tangent_logreg")

METHOD_MODEL = "BrainMass"
METHOD_RAW_FC = "raw FC"
METHOD_TANGENT = "tangent_fc"
METHOD_RANDOM = "random-init BrainMass"


def make_classifier(name: str = "svm", *, C: float = 1.0, max_iter: int = 5000) -> Pipeline:
    """`"svm"`: StandardScaler → SVC(rbf, C) (the paper's protocol); `"logreg"`: StandardScaler →
    LogisticRegression (linear probe, L2); `"tangent_logreg"`: `tangent.TangentSpace` (reference point fitted on
    the training rows) → StandardScaler → the same LogisticRegression (the `tangent_fc` baseline; its input rows are
    `tangent_fc_features`). C = 1 (sklearn's default) unless given; nothing is tuned on test scans."""
    if name == "svm":
        return make_pipeline(StandardScaler(), SVC(kernel="rbf", C=C))
    if name in ("logreg", "linear_probe"):
        return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    if name == "tangent_logreg":
        from .tangent import TangentSpace

        return make_pipeline(TangentSpace(), StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    raise ValueError(f"classifier must be one of {CLASSIFIERS}; got {name!r}.")


def decision_scores(classifier: Pipeline, features: np.ndarray) -> np.ndarray:
    """`decision_function` as AUC scores: `[N]` for two classes (higher = class 1), else `[N, K]`.

    sklearn 1.9 deprecates `SVC(probability=True)`; the decision values rank scans the same way."""
    return np.asarray(classifier.decision_function(features), dtype=np.float64)


def _tied(scores: Any) -> bool:
    """All test scans got the same decision score (to within underflow: an RBF kernel of far-away scans gives
    spreads like 1e-233), so the ROC is the diagonal and AUC is 0.5 by construction."""
    return bool(np.ptp(np.asarray(scores, dtype=np.float64)) < 1e-12)


@dataclass
class ProtocolResult:
    """One method under one protocol (and one k / one site pair where that applies).

    `splits` holds, per split, the train/test indices, true labels, predictions, decision scores (the ROC
    data), every metric and the confusion matrix; `summary` is `summarize(splits)`.
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

    @property
    def degenerate(self) -> bool:
        """Every split gave all its test scans one decision score, so AUC is 0.5 by construction."""
        return bool(self.splits) and all(_tied(s["scores"]) for s in self.splits)

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol, "name": self.name, "method": self.method, "settings": self.settings,
            "summary": self.summary, "notes": self.notes, "splits": self.splits,
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


def _check_features(features: np.ndarray, labels: np.ndarray, *, name: str = "features") -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"{name} must be a 2D [num_scans, num_features] array; got shape {features.shape}.")
    if features.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{name} has {features.shape[0]} rows but there are {labels.shape[0]} labels; pass one "
            "feature row per labelled scan, in the same order."
        )
    problem = describe_nonfinite(features, axes=("scan", "feature"))
    if problem is not None:
        raise ValueError(f"{name} hold {problem}; check that scan's input (constant ROIs?) or the encoder.")
    return features


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
        test_features: `[N, D]` features used for test rows (e.g. another pFC view); default `train_features`.
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
    tied = [r["split"] for r in result.splits if _tied(r["scores"])]
    if tied:
        result.notes.append(
            f"{len(tied)} of {len(result.splits)} splits gave every test scan the same decision score, so their AUC "
            "is 0.5 by construction (e.g. an RBF SVM fit on two standardised scans, k=1, whose kernel underflows)."
        )
    result.summary = summarize(result.splits, METRICS)
    return result


def run_split_protocol(
    protocol: str,
    train_features: np.ndarray,
    labels: Sequence[int],
    *,
    test_features: np.ndarray | None = None,
    splits: Iterable[tuple[np.ndarray, np.ndarray]] | None = None,
    n_repeats: int = 10,
    test_size: float = 0.2,
    seed: int = 0,
    sites: Sequence[Any] | None = None,
    groups: Sequence[Any] | None = None,
    method: str = METHOD_MODEL,
    show_progress: bool = False,
    classifier: str | None = None,
) -> ProtocolResult:
    """`"paper"` (StandardScaler → SVC(rbf, C=1)) or `"linear_probe"` (StandardScaler → LogisticRegression) on
    precomputed features over `splits`; `classifier` (from `CLASSIFIERS`) replaces the protocol's own (a baseline
    with a pipeline of its own, e.g. `"tangent_logreg"`).

    Args:
        train_features: `[N, D]`, one pFC view per scan in the authors' protocol.
        labels: `[N]` class codes 0..K-1.
        test_features: `[N, D]` features of the test view (the authors: another pFC view); default
            `train_features`.
        splits: `(train_idx, test_idx)` pairs; default `repeated_stratified_splits(labels, n_repeats=n_repeats,
            test_size=test_size, seed=seed, sites=sites, groups=groups)`.
    """
    classifiers = {"paper": "svm", "linear_probe": "logreg"}
    if protocol not in classifiers:
        raise ValueError(f"protocol must be one of {sorted(classifiers)}; got {protocol!r}.")
    settings = {"seed": seed}
    if splits is None:
        splits = repeated_stratified_splits(labels, n_repeats=n_repeats, test_size=test_size, seed=seed,
                                            sites=sites, groups=groups)
        settings.update(n_repeats=n_repeats, test_size=test_size)
    return evaluate_features(
        train_features, labels, splits, test_features=test_features, classifier=classifier or classifiers[protocol],
        protocol=protocol, method=method, settings=settings, show_progress=show_progress,
    )


def run_paper_protocol(train_features: np.ndarray, labels: Sequence[int], **options: Any) -> ProtocolResult:
    """The authors' protocol on precomputed features: StandardScaler → SVC(rbf, C=1) over repeated stratified
    splits (or `splits=`). `options` are those of `run_split_protocol`: `test_features`, `splits`,
    `n_repeats`, `test_size`, `seed`, `sites`, `groups`, `method`, `show_progress`."""
    return run_split_protocol("paper", train_features, labels, **options)


def run_linear_probe(train_features: np.ndarray, labels: Sequence[int], **options: Any) -> ProtocolResult:
    """Same features and splits as the paper protocol, StandardScaler → LogisticRegression; `options` as
    `run_split_protocol`."""
    return run_split_protocol("linear_probe", train_features, labels, **options)


def run_few_shot(
    train_features: np.ndarray,
    labels: Sequence[int],
    *,
    test_features: np.ndarray | None = None,
    k_values: Sequence[int] = (1, 5, 10, 20),
    n_draws: int = 10,
    seed: int = 0,
    groups: Sequence[Any] | None = None,
    classifier: str = "svm",
    method: str = METHOD_MODEL,
    show_progress: bool = False,
) -> list[ProtocolResult]:
    """Few-shot: for each k, `n_draws` draws of k labelled scans per class, tested on all others.

    A k the smallest class cannot supply (needs k + 1 scans) gives a result with no splits and a note
    saying why.
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
                train_features, labels, few_shot_splits(labels, k, n_draws=n_draws, seed=seed, groups=groups),
                test_features=test_features, classifier=classifier, protocol="few_shot", method=method,
                settings=settings, show_progress=show_progress,
            )
        )
    return results


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
    """Zero-shot transfer: fit on every scan of the source site, test on every scan of the target site (no
    target labels used). One result per ordered (source, target) pair."""
    labels = _check_labels(labels)
    sites = _check_per_scan(sites, labels.shape[0], "site")
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
        output_dir: where each split's Trainer writes (`<output_dir>/split_<i>`); a temporary folder (removed
            afterwards) when None.
        finetune_kwargs: passed to `brainmass_hf.training.finetune` (e.g. `num_train_epochs`,
            `learning_rate`, `per_device_train_batch_size`).

    Metrics come from the logits `[N, K]` (binary AUC from the logit difference).
    """
    import torch

    from ..training import finetune

    labels = _check_labels(np.asarray(dataset["label"]))
    num_classes = int(labels.max()) + 1
    kwargs = {
        "seed": seed, "num_labels": num_classes, "disable_tqdm": not show_progress,
        # pinned host memory only helps copies to a GPU; without one torch warns once per batch
        "dataloader_pin_memory": torch.cuda.is_available(), **(finetune_kwargs or {}),
    }
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
