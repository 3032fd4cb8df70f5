"""Which ROIs and edges a model's decision rests on.

* Fine-tuned ``BrainMassForConnectomeClassification``: gradient × input and integrated gradients (Sundararajan et
  al. 2017) on the input FC. An FC entry ``(i, j)`` and its mirror ``(j, i)`` are one edge, so attributions are
  symmetrised (``E = A + Aᵀ``, diagonal dropped: it is 1 in every FC and carries no connectivity); an ROI's
  importance is the sum of ``|E|`` over its edges.
* Any feature function + classifier (frozen BrainMass features + SVM, raw FC + SVM, ...): permutation importance
  of ROIs. For ROI ``r``, the row and column ``r`` of the held-out scans' FC are swapped between scans (a random
  permutation), which breaks everything the classifier could read from ``r``'s connections while keeping their
  distribution; importance is the drop in held-out AUC, averaged over permutations, per split. Exact for any
  model, but it runs the feature function ``R × n_permutations × n_splits`` times on the held-out scans.
* Frozen BrainMass features + a classifier fitted on them (the probe): gradient × input of the probe's decision
  score with respect to the FC, on the held-out scans of each split (:func:`probe_gradient_importance`). The fitted
  scikit-learn pipeline (StandardScaler + RBF SVM, or + logistic regression) is rewritten as a torch function of
  the features (:func:`probe_score_function`), so the score is differentiated through the encoder: one forward pass
  of every scan for the features and one forward + backward pass per held-out scan and split, whatever ``R``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

__all__ = [
    "PermutationImportance",
    "ProbeAttribution",
    "edge_attributions",
    "edge_permutation_importance",
    "encoder_feature_function",
    "gradient_x_input",
    "integrated_gradients",
    "permutation_importance",
    "probe_gradient_importance",
    "probe_score_function",
    "raw_fc_feature_function",
    "roi_importance",
    "top_edges",
]


def _target_score(logits: torch.Tensor, target: int | None) -> torch.Tensor:
    """The scalar per scan being explained: ``logit[1] - logit[0]`` for two classes (evidence for class 1), the
    single output for one logit, else ``logit[target]``."""
    if target is not None:
        return logits[:, target]
    if logits.shape[-1] == 1:
        return logits[:, 0]
    if logits.shape[-1] == 2:
        return logits[:, 1] - logits[:, 0]
    raise ValueError(f"The model has {logits.shape[-1]} classes; pass target= (the class index to explain).")


def _input_gradient(score: Callable[[torch.Tensor], torch.Tensor], fc: torch.Tensor) -> torch.Tensor:
    """``∂ score(fc)[n] / ∂ fc[n]`` for every scan ``n`` of ``fc`` ``(B, R, R)`` (scores are per scan, so the
    gradient of their sum is each scan's own gradient). Only the input's gradient is computed, no weight's."""
    fc = fc.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(score(fc).sum(), fc)
    return grad


@contextlib.contextmanager
def _weights_frozen(model: torch.nn.Module):
    """No parameter of ``model`` requires grad inside (the backward then builds no weight-gradient work: about
    12 % faster per input gradient on the CPU); the flags are restored on exit."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _classifier_score(model: torch.nn.Module, target: int | None) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda fc: _target_score(model(connectivity=fc).logits, target)


def _prepared(model: torch.nn.Module, connectivity: Any) -> tuple[torch.Tensor, bool]:
    if not hasattr(model, "classifier"):
        raise ValueError(
            "Gradient attributions need a fine-tuned BrainMassForConnectomeClassification (it has a classifier); "
            f"got {type(model).__name__}. For an encoder, use permutation_importance with encoder_feature_function."
        )
    parameter = next(model.parameters())
    fc = torch.as_tensor(connectivity).to(device=parameter.device, dtype=parameter.dtype)
    if fc.dim() == 2:
        fc = fc.unsqueeze(0)
    was_training = model.training
    model.eval()  # BatchNorm running statistics and no dropout: the attribution of the deployed model
    return fc, was_training


def gradient_x_input(
    model: torch.nn.Module, connectivity: Any, target: int | None = None, batch_size: int = 32
) -> np.ndarray:
    """Gradient × input on the FC.

    Args:
        model: a ``BrainMassForConnectomeClassification``.
        connectivity: FC ``(N, R, R)``.
        target: class whose logit is explained; default ``logit[1] - logit[0]`` for two classes.
    Returns:
        float32 ``(N, R, R)`` (not yet symmetrised; see :func:`edge_attributions`).
    """
    fc, was_training = _prepared(model, connectivity)
    out = []
    try:
        with _weights_frozen(model):
            for start in range(0, fc.shape[0], batch_size):
                chunk = fc[start:start + batch_size]
                out.append((_input_gradient(_classifier_score(model, target), chunk) * chunk).float().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out)


def integrated_gradients(
    model: torch.nn.Module,
    connectivity: Any,
    baseline: str | Any = "identity",
    steps: int = 32,
    target: int | None = None,
    batch_size: int = 32,
) -> np.ndarray:
    """Integrated gradients on the FC: ``(x - x') · mean_k ∇f(x' + α_k (x - x'))`` with midpoints ``α_k``.

    Args:
        model: a ``BrainMassForConnectomeClassification``.
        connectivity: FC ``(N, R, R)``.
        baseline: ``"identity"`` (default): the identity matrix, an FC with no connectivity between any two ROIs
            (every ROI correlates only with itself), so attributions say how the observed connections move the
            score away from "no network"; ``"zeros"``; or an array ``(R, R)`` / ``(N, R, R)``.
        steps: points of the midpoint Riemann sum (completeness error shrinks as ``1/steps²``).
        target: as in :func:`gradient_x_input`.
    Returns:
        float32 ``(N, R, R)``; per scan the entries sum to ≈ ``f(x) - f(x')`` (completeness).
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1; got {steps}.")
    fc, was_training = _prepared(model, connectivity)
    num_rois = fc.shape[-1]
    if isinstance(baseline, str):
        if baseline not in ("identity", "zeros"):
            raise ValueError(f"baseline must be 'identity', 'zeros' or an array; got {baseline!r}.")
        base = torch.eye(num_rois) if baseline == "identity" else torch.zeros(num_rois, num_rois)
    else:
        base = torch.as_tensor(np.asarray(baseline))
        if base.shape[-2:] != (num_rois, num_rois):
            raise ValueError(f"baseline must be ({num_rois}, {num_rois}); got {tuple(base.shape)}.")
    base = base.to(fc).expand_as(fc)
    alphas = (torch.arange(steps, dtype=fc.dtype, device=fc.device) + 0.5) / steps
    score = _classifier_score(model, target)
    out = []
    try:
        with _weights_frozen(model):
            for start in range(0, fc.shape[0], batch_size):
                x, x0 = fc[start:start + batch_size], base[start:start + batch_size]
                total = torch.zeros_like(x)
                for alpha in alphas:
                    total += _input_gradient(score, x0 + alpha * (x - x0))
                out.append(((x - x0) * total / steps).float().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out)


def edge_attributions(attributions: np.ndarray) -> np.ndarray:
    """``(..., R, R)`` entry attributions → symmetric edge attributions ``A + Aᵀ`` with a zero diagonal."""
    a = np.asarray(attributions, dtype=np.float64)
    edges = a + np.swapaxes(a, -1, -2)
    idx = np.arange(a.shape[-1])
    edges[..., idx, idx] = 0.0
    return edges


def roi_importance(edges: np.ndarray) -> np.ndarray:
    """ROI importance: sum of ``|edge attribution|`` over each ROI's edges, ``(..., R, R)`` → ``(..., R)``."""
    return np.abs(np.asarray(edges)).sum(axis=-1)


def top_edges(edge_scores: np.ndarray, k: int = 10) -> list[tuple[int, int, float]]:
    """The ``k`` edges ``(i, j, score)`` with ``i < j`` of largest ``|score|`` in a symmetric ``(R, R)`` matrix."""
    scores = np.asarray(edge_scores, dtype=np.float64)
    rows, cols = np.triu_indices(scores.shape[-1], k=1)
    values = scores[rows, cols]
    order = np.argsort(-np.abs(values), kind="stable")[:k]
    return [(int(rows[o]), int(cols[o]), float(values[o])) for o in order]


# ----------------------------------------------------------------------------------------------------------------
# Permutation importance (any features, any classifier)
# ----------------------------------------------------------------------------------------------------------------
FeatureFunction = Callable[[np.ndarray], np.ndarray]


def raw_fc_feature_function(connectivity: np.ndarray) -> np.ndarray:
    """Raw-FC features: the strict upper triangle, ``(N, R, R)`` → ``(N, R(R-1)/2)``."""
    rows, cols = np.triu_indices(connectivity.shape[-1], k=1)
    return np.asarray(connectivity)[:, rows, cols]


def encoder_feature_function(model: torch.nn.Module, batch_size: int = 64) -> FeatureFunction:
    """Frozen BrainMass features: FC ``(N, R, R)`` → ``pooler_output`` ``(N, R * readout_dim)``."""
    encoder = model.base_model.eval()  # the BrainMassModel inside any BrainMass model
    parameter = next(encoder.parameters())

    def features(connectivity: np.ndarray) -> np.ndarray:
        fc = torch.as_tensor(np.asarray(connectivity))
        out = []
        with torch.inference_mode():
            for start in range(0, fc.shape[0], batch_size):
                chunk = fc[start:start + batch_size].to(parameter.device, parameter.dtype)
                out.append(encoder(connectivity=chunk).pooler_output.float().cpu().numpy())
        return np.concatenate(out)

    return features


@dataclass
class PermutationImportance:
    """``importance`` ``(n_splits, U)``: mean drop in held-out AUC when unit ``u`` (an ROI, or an edge) is permuted,
    per split; ``baseline_auc`` ``(n_splits,)``: the unpermuted held-out AUC of each split; ``units``: the ROI
    indices or ``(i, j)`` edges, in column order."""

    importance: np.ndarray
    baseline_auc: np.ndarray
    units: list = field(default_factory=list)

    @property
    def mean(self) -> np.ndarray:
        return self.importance.mean(axis=0)

    @property
    def std(self) -> np.ndarray:
        return self.importance.std(axis=0, ddof=1) if self.importance.shape[0] > 1 else np.zeros_like(self.mean)


def _permute_roi(fc: np.ndarray, roi: int, permutation: np.ndarray) -> np.ndarray:
    """FC ``(M, R, R)`` with row and column ``roi`` of scan ``m`` taken from scan ``permutation[m]``."""
    out = fc.copy()
    out[:, roi, :] = fc[permutation, roi, :]
    out[:, :, roi] = fc[permutation, :, roi]
    return out


def _permute_edge(fc: np.ndarray, edge: tuple[int, int], permutation: np.ndarray) -> np.ndarray:
    """FC ``(M, R, R)`` with entries ``(i, j)`` and ``(j, i)`` of scan ``m`` taken from scan ``permutation[m]``."""
    i, j = edge
    out = fc.copy()
    out[:, i, j] = out[:, j, i] = fc[permutation, i, j]
    return out


def _two_class_splits(
    connectivity: np.ndarray, labels: Sequence[Any], n_splits: int, test_size: float,
    splits: Sequence[tuple[np.ndarray, np.ndarray]] | None, seed: int,
) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Checked FC ``(N, R, R)`` float32, labels as 0/1 ``(N,)`` (1 = the second sorted class) and the train/test
    splits (``splits`` as given, else ``n_splits`` repeated stratified splits)."""
    from ..evaluation import repeated_stratified_splits

    fc = np.asarray(connectivity, dtype=np.float32)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if fc.ndim != 3 or fc.shape[1] != fc.shape[2] or fc.shape[0] != labels.shape[0]:
        raise ValueError(f"connectivity must be (N, R, R) with N = len(labels) = {labels.shape[0]}; got {fc.shape}.")
    if classes.size != 2:
        raise ValueError(
            f"ROI importance here is read from a held-out AUC and needs exactly two classes; got {classes.size} "
            f"({classes[:5].tolist()}). Select two classes first (e.g. dataset.filter)."
        )
    y = (labels == classes[1]).astype(int)
    if splits is None:
        splits = list(repeated_stratified_splits(y, n_repeats=n_splits, test_size=test_size, seed=seed))
    return fc, y, list(splits)


def _drop_in_auc(
    connectivity: np.ndarray,
    labels: Sequence[Any],
    feature_function: FeatureFunction,
    units: list,
    permute: Callable[[np.ndarray, Any, np.ndarray], np.ndarray],
    *,
    classifier: str,
    n_splits: int,
    test_size: float,
    n_permutations: int,
    splits: Sequence[tuple[np.ndarray, np.ndarray]] | None,
    seed: int,
) -> PermutationImportance:
    """The split loop shared by ROI and edge permutation importance: fit on the training scans, then for each
    unit permute it across the held-out scans ``n_permutations`` times and record the mean drop in AUC."""
    from ..evaluation import decision_scores, make_classifier

    if n_permutations < 1:
        raise ValueError(f"n_permutations must be at least 1; got {n_permutations}.")
    fc, y, splits = _two_class_splits(connectivity, labels, n_splits, test_size, splits, seed)
    rng = np.random.default_rng(seed)
    features = feature_function(fc)
    importance, baseline = [], []
    for train, test in splits:
        model = make_classifier(classifier).fit(features[train], y[train])
        base_auc = roc_auc_score(y[test], decision_scores(model, features[test]))
        held_out = fc[test]
        drops = np.zeros(len(units))
        for u, unit in enumerate(units):
            # all permutations of one unit in one feature call: the encoder sees one larger batch
            permuted = np.concatenate(
                [permute(held_out, unit, rng.permutation(len(test))) for _ in range(n_permutations)]
            )
            scores = decision_scores(model, feature_function(permuted)).reshape(n_permutations, len(test))
            drops[u] = base_auc - np.mean([roc_auc_score(y[test], s) for s in scores])
        importance.append(drops)
        baseline.append(base_auc)
    return PermutationImportance(importance=np.asarray(importance), baseline_auc=np.asarray(baseline), units=units)


_PERMUTATION_ARGS = """
        connectivity: FC ``(N, R, R)`` of all scans.
        labels: ``(N,)`` two classes.
        feature_function: FC ``(M, R, R)`` → features ``(M, F)``: :func:`raw_fc_feature_function` (default) or
            :func:`encoder_feature_function` (frozen BrainMass).
        classifier: ``"svm"`` (the paper's protocol) or ``"logreg"``
            (:func:`brainmass_hf.evaluation.make_classifier`).
        n_splits, test_size, seed: repeated stratified splits (ignored when ``splits`` is given).
        n_permutations: permutations of the held-out scans per unit and split."""


def permutation_importance(
    connectivity: np.ndarray,
    labels: Sequence[Any],
    feature_function: FeatureFunction = raw_fc_feature_function,
    *,
    classifier: str = "svm",
    n_splits: int = 5,
    test_size: float = 0.25,
    n_permutations: int = 5,
    splits: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    seed: int = 0,
) -> PermutationImportance:
    """Permutation importance of every ROI (its FC row and column) for features + classifier (module docstring).

    Args:{args}
    Returns:
        :class:`PermutationImportance` with ``units`` = ROI indices ``0 … R-1``.
    """
    return _drop_in_auc(
        connectivity, labels, feature_function, list(range(np.shape(connectivity)[-1])), _permute_roi,
        classifier=classifier, n_splits=n_splits, test_size=test_size, n_permutations=n_permutations,
        splits=splits, seed=seed,
    )


def edge_permutation_importance(
    connectivity: np.ndarray,
    labels: Sequence[Any],
    feature_function: FeatureFunction = raw_fc_feature_function,
    *,
    edges: Sequence[tuple[int, int]] | None = None,
    classifier: str = "svm",
    n_splits: int = 5,
    test_size: float = 0.25,
    n_permutations: int = 5,
    splits: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    seed: int = 0,
) -> PermutationImportance:
    """Permutation importance of single edges: entry ``(i, j)`` (and its mirror) permuted across held-out scans.

    Args:{args}
        edges: ``(i, j)`` pairs to test; default every ``i < j`` (``R(R-1)/2`` of them: for large atlases pass the
            candidates, e.g. the edges of the top ROIs).
    Returns:
        :class:`PermutationImportance` with ``units`` = the edges.
    """
    r = np.shape(connectivity)[-1]
    units = [tuple(map(int, e)) for e in edges] if edges is not None else list(zip(*map(list, np.triu_indices(r, 1))))
    return _drop_in_auc(
        connectivity, labels, feature_function, units, _permute_edge, classifier=classifier, n_splits=n_splits,
        test_size=test_size, n_permutations=n_permutations, splits=splits, seed=seed,
    )


# ----------------------------------------------------------------------------------------------------------------
# Gradient × input through frozen features + a fitted classifier (the probe)
# ----------------------------------------------------------------------------------------------------------------
def probe_score_function(classifier: Any, dtype: torch.dtype = torch.float32) -> Callable[[torch.Tensor], torch.Tensor]:
    """A fitted two-class scikit-learn classifier's ``decision_function`` as a differentiable torch function of the
    features ``(B, F)`` → ``(B,)`` (positive = the second class), equal to ``decision_function`` to float precision.

    Takes a pipeline of optional ``StandardScaler`` steps ending in ``SVC`` (any of its kernels: rbf, linear, poly,
    sigmoid) or a linear model with ``coef_`` (``LogisticRegression``, ``LinearSVC``, ...): the two
    :func:`brainmass_hf.evaluation.make_classifier` builds, and most others.
    """
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    steps = [s for _, s in classifier.steps] if isinstance(classifier, Pipeline) else [classifier]
    *scalers, last = steps

    def tensor(x):
        return torch.as_tensor(np.asarray(x, dtype=np.float64)).to(dtype)

    shift, scale = [], []
    for step in scalers:
        if not isinstance(step, StandardScaler):
            raise ValueError(f"probe_score_function takes StandardScaler steps before the classifier; got {step!r}.")
        shift.append(tensor(step.mean_ if step.with_mean else 0.0))
        scale.append(tensor(step.scale_ if step.with_std else 1.0))
    if isinstance(last, SVC):
        vectors, coef, bias = tensor(last.support_vectors_), tensor(last.dual_coef_[0]), float(last.intercept_[0])
        kernel, gamma = last.kernel, float(last._gamma)
        if kernel not in ("rbf", "linear", "poly", "sigmoid"):
            raise ValueError(f"probe_score_function supports SVC kernels rbf/linear/poly/sigmoid; got {kernel!r}.")
    elif hasattr(last, "coef_") and np.asarray(last.coef_).shape[0] == 1:
        kernel, weight, bias = "primal", tensor(np.asarray(last.coef_)[0]), float(np.ravel(last.intercept_)[0])
    else:
        raise ValueError(f"probe_score_function needs a fitted two-class SVC or linear model; got {last!r}.")

    def score(features: torch.Tensor) -> torch.Tensor:
        z = features.to(dtype)
        for m, s in zip(shift, scale):
            z = (z - m.to(z.device)) / s.to(z.device)
        if kernel == "primal":
            return z @ weight.to(z.device) + bias
        sv = vectors.to(z.device)
        if kernel == "rbf":
            k = torch.exp(-gamma * torch.cdist(z, sv).square())
        elif kernel == "linear":
            k = z @ sv.T
        elif kernel == "poly":
            k = (gamma * z @ sv.T + last.coef0) ** last.degree
        else:
            k = torch.tanh(gamma * z @ sv.T + last.coef0)
        return k @ coef.to(z.device) + bias

    return score


@dataclass
class ProbeAttribution:
    """:func:`probe_gradient_importance`'s result. ``importance`` ``(n_splits, R)``: per split, the mean over its
    held-out scans of each ROI's summed ``|edge attribution|``; ``edges`` ``(R, R)``: mean ``|edge attribution|``
    over every held-out scan of every split; ``baseline_auc`` ``(n_splits,)``: the probe's held-out AUC."""

    importance: np.ndarray
    edges: np.ndarray
    baseline_auc: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        return self.importance.mean(axis=0)


def _encoder_probe_score(encoder: torch.nn.Module, probe: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """FC ``(B, R, R)`` → the probe's decision score ``(B,)`` on the encoder's ``pooler_output``."""
    score = probe_score_function(probe)
    return lambda fc: score(encoder(connectivity=fc).pooler_output)


def _held_out_attributions(encoder, probe, fc: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Gradient × input of the probe's score for the held-out scans ``fc`` ``(M, R, R)``: the ROI importance of each
    scan ``(M, R)`` and the sum over scans of ``|edge attribution|`` ``(R, R)``."""
    parameter = next(encoder.parameters())
    score = _encoder_probe_score(encoder, probe)
    per_scan, edges = [], np.zeros(fc.shape[1:])
    with _weights_frozen(encoder):
        for start in range(0, len(fc), batch_size):
            chunk = torch.from_numpy(fc[start:start + batch_size]).to(parameter.device, parameter.dtype)
            attribution = edge_attributions((_input_gradient(score, chunk) * chunk).float().cpu().numpy())
            edges += np.abs(attribution).sum(axis=0)
            per_scan.append(roi_importance(attribution))
    return np.concatenate(per_scan), edges


def probe_gradient_importance(
    model: torch.nn.Module,
    connectivity: np.ndarray,
    labels: Sequence[Any],
    *,
    classifier: str = "svm",
    n_splits: int = 5,
    test_size: float = 0.25,
    splits: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    seed: int = 0,
    batch_size: int = 32,
    features: np.ndarray | None = None,
    show_progress: bool = False,
) -> ProbeAttribution:
    """ROI and edge importance of frozen BrainMass features + a classifier: gradient × input of the classifier's
    decision score with respect to the FC of each held-out scan, per split (module docstring).

    Args:
        model: any BrainMass model; its encoder (``base_model``) gives the features (``pooler_output``).
        connectivity: FC ``(N, R, R)`` of all scans; labels: ``(N,)`` two classes.
        classifier: ``"svm"`` (StandardScaler + RBF SVM, the paper's protocol) or ``"logreg"``
            (:func:`brainmass_hf.evaluation.make_classifier`), fitted on each split's training features.
        n_splits, test_size, seed: repeated stratified splits (ignored when ``splits`` is given).
        batch_size: scans per encoder pass. show_progress: a progress bar over the splits.
        features: the encoder's ``pooler_output`` of every scan ``(N, F)`` when the caller has it already.
    Cost: one no-grad forward pass of the N scans, then one forward + backward pass per held-out scan and split.
    """
    from tqdm.auto import tqdm

    from ..evaluation import decision_scores, make_classifier

    fc, y, splits = _two_class_splits(connectivity, labels, n_splits, test_size, splits, seed)
    encoder = model.base_model.eval()
    if features is None:
        features = encoder_feature_function(model, batch_size=batch_size)(fc)
    importance, edges, baseline = [], np.zeros(fc.shape[1:]), []
    for train, test in tqdm(splits, desc="gradient x input per split", disable=not show_progress, leave=False):
        probe = make_classifier(classifier).fit(features[train], y[train])
        baseline.append(roc_auc_score(y[test], decision_scores(probe, features[test])))
        per_scan, edge_sum = _held_out_attributions(encoder, probe, fc[test], batch_size)
        importance.append(per_scan.mean(axis=0))
        edges += edge_sum
    count = sum(len(test) for _, test in splits)
    return ProbeAttribution(importance=np.asarray(importance), edges=edges / count, baseline_auc=np.asarray(baseline))


permutation_importance.__doc__ = permutation_importance.__doc__.format(args=_PERMUTATION_ARGS)
edge_permutation_importance.__doc__ = edge_permutation_importance.__doc__.format(args=_PERMUTATION_ARGS)
