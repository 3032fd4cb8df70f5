"""Group statistics per ROI: class difference, Hedges' g, permutation p-values, Benjamini–Hochberg FDR."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control

__all__ = ["group_difference", "hedges_g", "roi_fc_strength"]


def hedges_g(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hedges' g of ``mean(b) - mean(a)`` per column: Cohen's d with the pooled SD, times the small-sample
    correction ``1 - 3 / (4 (n_a + n_b) - 9)``. ``a`` ``(n_a, R)``, ``b`` ``(n_b, R)`` → ``(R,)``; 0 where
    both groups are constant."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    na, nb = a.shape[0], b.shape[0]
    pooled = np.sqrt(((na - 1) * a.var(axis=0, ddof=1) + (nb - 1) * b.var(axis=0, ddof=1)) / (na + nb - 2))
    diff = b.mean(axis=0) - a.mean(axis=0)
    d = np.divide(diff, pooled, out=np.zeros_like(diff), where=pooled > 0)
    return d * (1.0 - 3.0 / (4.0 * (na + nb) - 9.0))


def roi_fc_strength(connectivity: np.ndarray) -> np.ndarray:
    """Each ROI's FC strength: the mean ``|FC|`` to the other ROIs, ``(N, R, R)`` → ``(N, R)``."""
    fc = np.abs(np.asarray(connectivity, dtype=np.float64))
    r = fc.shape[-1]
    return (fc.sum(axis=-1) - np.diagonal(fc, axis1=-2, axis2=-1)) / (r - 1)


def group_difference(
    values: np.ndarray,
    labels: Sequence[Any],
    *,
    roi_names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    n_permutations: int = 5000,
    alpha: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-ROI class difference with a label-permutation test and FDR correction.

    The statistic is the difference of class means (class 1 − class 0); its two-sided p-value is
    ``(1 + #{|Δ_perm| ≥ |Δ_obs|}) / (1 + n_permutations)`` over random relabellings (exact under exchangeability,
    never 0), and ``q_value`` is the Benjamini–Hochberg adjustment over all ROIs. Note the smallest reachable p is
    ``1 / (n_permutations + 1)``: with R ROIs it must be below ``alpha / R`` for any ROI to survive, so keep
    ``n_permutations`` ≥ ``R / alpha``.

    Args:
        values: one value per scan and ROI ``(N, R)`` (ROI importance, FC strength, attention received, ...).
        labels: ``(N,)`` exactly two classes (sorted; the second is "class 1").
        roi_names: ``R`` names (default ``ROI_<i>``); class_names: names of the two sorted classes.
    Returns:
        A DataFrame, one row per ROI in column order: ``roi``, ``name``, ``mean_<class0>``, ``mean_<class1>``,
        ``difference``, ``hedges_g``, ``p_value``, ``q_value``, ``significant`` (``q_value < alpha``).
    """
    values = np.asarray(values, dtype=np.float64)
    labels = np.asarray(labels)
    if values.ndim != 2 or values.shape[0] != labels.shape[0]:
        raise ValueError(f"values must be (N, R) with N = len(labels) = {labels.shape[0]}; got {values.shape}.")
    if not np.isfinite(values).all():
        raise ValueError("values hold NaN or Inf; compute them from finite FC/attributions.")
    classes = np.unique(labels)
    if classes.size != 2:
        raise ValueError(f"group_difference compares two classes; got {classes.size} ({classes[:5].tolist()}).")
    counts = [(labels == c).sum() for c in classes]
    if min(counts) < 2:
        raise ValueError(f"Each class needs at least 2 scans; got {dict(zip(classes.tolist(), counts))}.")
    if roi_names is not None and len(roi_names) != values.shape[1]:
        raise ValueError(f"roi_names has {len(roi_names)} names but values has {values.shape[1]} ROIs.")
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be at least 1; got {n_permutations}.")
    names = list(class_names) if class_names is not None else [str(c) for c in classes]
    is_one = (labels == classes[1]).astype(np.float64)
    n1, n0 = is_one.sum(), len(is_one) - is_one.sum()
    observed = values[is_one == 1].mean(axis=0) - values[is_one == 0].mean(axis=0)
    rng = np.random.default_rng(seed)
    exceed = np.zeros(values.shape[1])
    # permutations in blocks: a (block, N) relabelling matrix times values gives every ROI's difference at once
    for start in range(0, n_permutations, 1000):
        block = min(1000, n_permutations - start)
        perm = np.stack([rng.permutation(is_one) for _ in range(block)])
        diffs = perm @ values / n1 - (1 - perm) @ values / n0
        exceed += (np.abs(diffs) >= np.abs(observed) - 1e-12).sum(axis=0)
    p = (1.0 + exceed) / (1.0 + n_permutations)
    q = false_discovery_control(p, method="bh")
    r = values.shape[1]
    return pd.DataFrame(
        {
            "roi": np.arange(r),
            "name": list(roi_names) if roi_names is not None else [f"ROI_{i}" for i in range(r)],
            f"mean_{names[0]}": values[is_one == 0].mean(axis=0),
            f"mean_{names[1]}": values[is_one == 1].mean(axis=0),
            "difference": observed,
            "hedges_g": hedges_g(values[is_one == 0], values[is_one == 1]),
            "p_value": p,
            "q_value": q,
            "significant": q < alpha,
        }
    )
