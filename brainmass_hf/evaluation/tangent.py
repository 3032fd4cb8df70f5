"""The tangent-space baseline `tangent_fc` (Dadi et al., NeuroImage 192:115-134, 2019): the strongest classical
pipeline for connectome classification, reported beside every encoder.

A scan's Ledoit-Wolf FC (of the same views the encoder and raw FC see) is mapped to the tangent space at the
geometric mean of the **training** scans' FC, then `StandardScaler` → L2 `LogisticRegression(C=1)` (sklearn's
default C, not tuned). The reference point is fitted inside the classifier pipeline (:class:`TangentSpace`), so
each split fits it on its training rows only and test scans never shape it.

Ledoit-Wolf correlation, not covariance: nilearn's `ConnectivityMeasure(kind="tangent")` takes covariances; for
z-scored signals the Ledoit-Wolf covariance is the Ledoit-Wolf correlation times one number per scan, which adds
that number's logarithm to the diagonal of the tangent matrix and changes nothing else. The shrinkage keeps every
view positive definite, also a pFC view with fewer time points than ROIs.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin

from ..connectivity import spd_geometric_mean, sym_matrix_vector, tangent_space, vector_sym_matrix
from .features import FCSettings, _check_scans, _view_count, _views_per_batch

__all__ = ["TangentSpace", "tangent_fc_features"]


class TangentSpace(TransformerMixin, BaseEstimator):
    """sklearn step: rows of `sym_matrix_vector`-vectorised SPD matrices `[N, R(R+1)/2]` → their tangent vectors at
    the geometric mean of the rows `fit` saw (`[N, R(R+1)/2]` float64), nilearn's `kind="tangent"` numbers.

    Args:
        max_iter, tol: of :func:`brainmass_hf.connectivity.spd_geometric_mean` (nilearn's 30 and 1e-7).
    Attributes:
        reference_: `(R, R)` float64 geometric mean of the training matrices.
    """

    def __init__(self, max_iter: int = 30, tol: float = 1e-7):
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X: np.ndarray, y: Any = None) -> "TangentSpace":
        matrices = vector_sym_matrix(torch.as_tensor(np.asarray(X, dtype=np.float64)))
        self.reference_ = spd_geometric_mean(matrices, max_iter=self.max_iter, tol=self.tol)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        matrices = vector_sym_matrix(torch.as_tensor(np.asarray(X, dtype=np.float64)))
        return sym_matrix_vector(tangent_space(matrices, self.reference_)).numpy()


def tangent_fc_features(
    time_series: Sequence[np.ndarray],
    *,
    settings: Any = None,
    view: str = "full",
    num_views: int = 1,
    seed: int = 0,
    batch_size: int = 32,
    show_progress: bool = False,
) -> np.ndarray:
    """The input of `tangent_fc`: each scan's Ledoit-Wolf FC as `sym_matrix_vector`, `[N, R(R+1)/2]` float64.

    The views are those of `raw_fc_features` with the same `settings` (a checkpoint's config: its pFC drop ratio,
    mask way, crop length), `view`, `seed` and `batch_size` (the same dropped time points), with the FC kind set to
    `"ledoit_wolf"` and no Fisher z whatever the checkpoint uses: the tangent space needs positive definite
    matrices. `"tta"` averages `num_views` FC matrices (still positive definite).
    """
    num_views = _view_count(view, num_views)
    settings = FCSettings.of(settings, fc_kind="ledoit_wolf", fisher_z=False)
    scans = _check_scans(time_series, settings, view)
    features = []
    for views in _views_per_batch(
        scans, settings, view=view, num_views=num_views, seed=seed, batch_size=batch_size,
        show_progress=show_progress, desc=f"tangent FC ({view})",
    ):
        features.append(sym_matrix_vector(torch.stack(views).double().mean(dim=0)).numpy())
    return np.concatenate(features)
