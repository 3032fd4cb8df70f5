"""Functional connectivity (FC) and pseudo functional connectivity (pFC), batched in torch.

Every function here works on a padded batch of ROI time series ``time_series`` of shape
``(batch_size, num_timepoints, num_rois)`` with an optional boolean ``time_mask`` of shape
``(batch_size, num_timepoints)`` (``True`` = a valid time point), so scans of different lengths share one
batch and one kernel launch. A single scan ``(num_timepoints, num_rois)`` is accepted too and gives a single
``(num_rois, num_rois)`` matrix.

FC kinds
--------
* ``"pearson"``: the plain empirical correlation of the valid time points.
* ``"ledoit_wolf"``: what the BrainMass authors used, ``nilearn.connectome.ConnectivityMeasure(kind="correlation")``
  with its defaults: each ROI z-scored over time (``ddof=1``), covariance by Ledoit-Wolf shrinkage (as
  ``sklearn.covariance.LedoitWolf``), then converted to a correlation (unit diagonal). For standardised
  signals this is the Pearson matrix with its off-diagonal scaled by ``1 - shrinkage``.

Constant ROIs (standard deviation below :data:`brainmass_hf.validation.CONSTANT_ROI_STD` over the valid time
points, the one constant-ROI rule) get zero correlation with every other ROI and 1 on the diagonal, as nilearn
gives; they are never NaN. ``brainmass_hf.validation.count_constant_rois`` counts them.

pFC (BrainMass, Yang et al., IEEE TMI 2024): drop a random, non-contiguous ``int(drop_ratio * T)`` of a
scan's ``T`` valid time points and compute FC on the rest (``mask_way="drop"``, the paper's choice), or keep a
random contiguous crop of ``crop_length`` points (``mask_way="crop"``, the authors' ``random`` option).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .validation import CONSTANT_ROI_STD

__all__ = [
    "FC_KINDS",
    "PFC_MASK_WAYS",
    "pad_time_series",
    "functional_connectivity",
    "pseudo_fc_time_mask",
    "pseudo_functional_connectivity",
    "connectivity_view",
    "fc_upper_triangle",
    "num_timepoints_after_drop",
    "num_timepoints_kept",
    "min_scan_length",
]

FC_KINDS = ("pearson", "ledoit_wolf")
PFC_MASK_WAYS = ("drop", "crop", "window")


def _as_batch(time_series, time_mask):
    """Returns ``(x [B, T, R] float, mask [B, T] bool, squeeze)`` from tensors or arrays."""
    x = torch.as_tensor(time_series)
    if not torch.is_floating_point(x):
        x = x.float()
    squeeze = x.dim() == 2
    if squeeze:
        x = x.unsqueeze(0)
    if x.dim() != 3:
        raise ValueError(
            f"time_series must have shape (batch_size, num_timepoints, num_rois) or (num_timepoints, num_rois); "
            f"got shape {tuple(x.shape)}."
        )
    if time_mask is None:
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    else:
        mask = torch.as_tensor(time_mask, device=x.device).bool()
        if squeeze and mask.dim() == 1:
            mask = mask.unsqueeze(0)
        if mask.shape != x.shape[:2]:
            raise ValueError(
                f"time_mask has shape {tuple(mask.shape)} but time_series has (batch, time) = {tuple(x.shape[:2])}."
            )
    return x, mask, squeeze


def pad_time_series(
    time_series: Sequence[np.ndarray | torch.Tensor], dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacks scans of different lengths into one padded batch.

    Args:
        time_series: ``N`` arrays of shape ``(T_i, R)`` (time × ROI), the same ``R`` for all.
    Returns:
        ``(padded, time_mask)``: ``padded`` of shape ``(N, max_i T_i, R)`` with zeros after each scan's end, and
        the boolean ``time_mask`` of shape ``(N, max_i T_i)``.
    """
    if len(time_series) == 0:
        raise ValueError("pad_time_series got no scans.")
    # read-only arrays (e.g. a dataset's numpy view) are copied: they are copied into `padded` below anyway, and
    # torch warns on a tensor that views a non-writable array
    arrays = [ts if isinstance(ts, torch.Tensor) else torch.from_numpy(np.require(ts, requirements="W"))
              for ts in time_series]
    num_rois = {a.shape[-1] for a in arrays}
    if any(a.dim() != 2 for a in arrays) or len(num_rois) != 1:
        shapes = sorted({tuple(a.shape) for a in arrays})[:5]
        raise ValueError(f"All scans must be 2-D (time × ROI) with the same number of ROIs; got shapes {shapes}.")
    lengths = torch.tensor([a.shape[0] for a in arrays])
    padded = torch.zeros(len(arrays), int(lengths.max()), num_rois.pop(), dtype=dtype)
    for i, a in enumerate(arrays):
        padded[i, : a.shape[0]] = a.to(dtype)
    time_mask = torch.arange(padded.shape[1])[None, :] < lengths[:, None]
    return padded, time_mask


def _centered(x: torch.Tensor, mask: torch.Tensor):
    """Masked centring. Returns ``(xc [B,T,R] zero at invalid points, n [B] valid counts)``.

    Invalid points are replaced by zeros with ``torch.where`` before any arithmetic: padding may hold anything
    (NaN included) and ``NaN * 0`` is NaN, so multiplying by the mask alone would leak it into the scan's FC."""
    valid = mask.unsqueeze(-1)
    x = torch.where(valid, x, torch.zeros((), dtype=x.dtype, device=x.device))
    w = valid.to(x.dtype)
    n = w.sum(dim=1)  # [B, 1]
    mean = x.sum(dim=1, keepdim=True) / n.clamp_min(1).unsqueeze(1)
    return (x - mean) * w, n.squeeze(-1)


def _ledoit_wolf_shrinkage(
    emp_cov_trace: torch.Tensor, delta_: torch.Tensor, row_energy: torch.Tensor, n: torch.Tensor
) -> torch.Tensor:
    """Ledoit-Wolf shrinkage coefficient per scan, as ``sklearn.covariance.ledoit_wolf_shrinkage``, for the
    standardised scans ``xs`` (zero at invalid points) with empirical covariance ``cov = xsᵀ xs / n``.

    Args:
        emp_cov_trace: ``(B, R)`` the diagonal of ``cov``.
        delta_: ``(B,)`` ``‖cov‖²`` (sklearn's ``Σ_ij (xsᵀ xs)_ij² / n²``).
        row_energy: ``(B, T)`` ``Σ_i xs[t, i]²`` per time point: sklearn's ``Σ_ij Σ_t xs_ti² xs_tj²`` is
            ``Σ_t row_energy_t²``, so no second ``R × R`` product is needed.
        n: ``(B,)`` valid counts.
    Returns ``(batch_size,)`` in ``[0, 1]``.
    """
    num_rois = emp_cov_trace.shape[-1]
    n = n.to(emp_cov_trace.dtype)
    mu = emp_cov_trace.sum(dim=-1) / num_rois  # [B]
    beta_ = row_energy.pow(2).sum(dim=1)
    beta = (beta_ / n - delta_) / (num_rois * n)
    delta = (delta_ - 2.0 * mu * emp_cov_trace.sum(dim=-1) + num_rois * mu.pow(2)) / num_rois
    beta = torch.minimum(beta, delta)
    return torch.where(beta == 0, torch.zeros_like(beta), beta / delta.clamp_min(torch.finfo(delta.dtype).tiny))


def functional_connectivity(
    time_series,
    time_mask=None,
    kind: str = "pearson",
    fisher_z: bool = False,
) -> torch.Tensor:
    """FC matrices of a padded batch of ROI time series.

    Args:
        time_series: ``(batch_size, num_timepoints, num_rois)`` or ``(num_timepoints, num_rois)``, tensor or array.
        time_mask: optional bool ``(batch_size, num_timepoints)``; ``True`` marks valid time points. Default: all.
        kind: ``"pearson"`` or ``"ledoit_wolf"`` (nilearn's ``ConnectivityMeasure(kind="correlation")`` default).
        fisher_z: apply ``arctanh`` to the off-diagonal (clamped to ±(1 − 1e-6)); the diagonal is then 0.
    Returns:
        ``(batch_size, num_rois, num_rois)`` (or ``(num_rois, num_rois)``), symmetric, in the input's float dtype.
    """
    if kind not in FC_KINDS:
        raise ValueError(f"Unknown FC kind {kind!r}; choose one of {FC_KINDS}.")
    x, mask, squeeze = _as_batch(time_series, time_mask)
    lengths = mask.sum(dim=1)
    if bool((lengths < 2).any()):  # a host sync, acceptable here: this is the public door, not the model's step
        bad = torch.nonzero(lengths < 2).flatten().tolist()
        raise ValueError(f"FC needs at least 2 valid time points per scan; scans at batch positions {bad} have fewer.")
    fc = _fc(x, mask, kind, fisher_z)
    return fc[0] if squeeze else fc


def _fc(x: torch.Tensor, mask: torch.Tensor, kind: str, fisher_z: bool) -> torch.Tensor:
    """FC of a batch ``x`` ``(B, T, R)`` float with ``mask`` ``(B, T)`` bool; no value checks, no host sync (the
    model's path: its inputs were validated where they entered). Returns ``(B, R, R)``."""
    xc, n = _centered(x, mask)
    # One R × R product per scan, the centred cross-products; z-scoring each ROI (ddof=1, as nilearn's
    # "zscore_sample"), the shrinkage and the conversion to correlation are then rescalings of its rows and
    # columns by per-ROI factors, so the (B, R, R) tensors are touched only a few times. Constant ROIs get
    # all-zero rows and columns (and 1 on the diagonal below).
    cross = xc.transpose(1, 2) @ xc  # [B, R, R]
    nf = n.to(x.dtype)
    var = torch.diagonal(cross, dim1=1, dim2=2) / (nf - 1).unsqueeze(-1)  # [B, R]
    constant = var.clamp_min(0).sqrt() < CONSTANT_ROI_STD
    inv_var = torch.where(constant, torch.zeros_like(var), 1.0 / torch.where(constant, torch.ones_like(var), var))
    if kind == "pearson":
        base = cross
        scale = (inv_var / (nf - 1).unsqueeze(-1)).sqrt()  # 1 / (std · sqrt(n - 1)); 0 for constant ROIs
    else:
        inv_std_n = (inv_var / nf.unsqueeze(-1)).sqrt()
        cov = cross * (inv_std_n.unsqueeze(-1) * inv_std_n.unsqueeze(-2))  # standardised covariance, diag (n-1)/n
        emp_cov_trace = torch.diagonal(cov, dim1=1, dim2=2)
        delta_ = torch.linalg.vector_norm(cov, dim=(1, 2)).pow(2)
        row_energy = (xc.pow(2) @ inv_var.unsqueeze(-1)).squeeze(-1)  # [B, T]
        shrinkage = _ledoit_wolf_shrinkage(emp_cov_trace, delta_, row_energy, n).unsqueeze(-1)  # [B, 1]
        mu = emp_cov_trace.sum(dim=-1, keepdim=True) / x.shape[-1]
        shrunk_diag = emp_cov_trace * (1.0 - shrinkage) + shrinkage * mu
        base = cov
        scale = ((1.0 - shrinkage) / shrunk_diag.clamp_min(torch.finfo(x.dtype).tiny)).sqrt()
        scale = torch.where(constant, torch.zeros_like(scale), scale)
    fc = base * (scale.unsqueeze(-1) * scale.unsqueeze(-2))
    fc = fc.clamp(-1.0, 1.0)
    torch.diagonal(fc, dim1=1, dim2=2).fill_(1.0)  # in place on the diagonal only: R values, not R × R
    if fisher_z:
        fc = torch.atanh(fc.clamp(-1 + 1e-6, 1 - 1e-6))
        torch.diagonal(fc, dim1=1, dim2=2).fill_(0.0)
    return fc


def num_timepoints_after_drop(num_timepoints: int, drop_ratio: float) -> int:
    """How many of ``num_timepoints`` valid points a pFC view keeps: ``T - int(drop_ratio * T)``."""
    return int(num_timepoints) - int(drop_ratio * int(num_timepoints))


def num_timepoints_kept(num_timepoints: int, settings) -> int:
    """How many of a scan's ``num_timepoints`` valid points one pFC view keeps under ``settings`` (anything with
    ``pfc_mask_way``, ``pfc_drop_ratio`` and ``pfc_crop_length``: a config or a feature extractor).

    ``"drop"`` and ``"window"``: ``T - int(drop_ratio * T)``; ``"crop"``: ``min(T, crop_length)``. The one rule for
    view lengths."""
    if settings.pfc_mask_way == "crop":
        return min(int(num_timepoints), int(settings.pfc_crop_length))
    return num_timepoints_after_drop(num_timepoints, settings.pfc_drop_ratio)


def min_scan_length(settings, pfc: bool = True) -> int:
    """The fewest valid time points a scan needs so that its view keeps ``settings.min_timepoints`` points:
    for a pFC view (``pfc=True``) the shortest ``T`` with ``num_timepoints_kept(T) >= min_timepoints``; for the
    full FC just ``min_timepoints``. Loaders, the feature extractor and pretraining all ask this one function."""
    needed = int(settings.min_timepoints)
    if not pfc:
        return needed
    if settings.pfc_mask_way == "crop" and int(settings.pfc_crop_length) < needed:
        raise ValueError(
            f"pfc_crop_length={settings.pfc_crop_length} is shorter than min_timepoints={needed}: no scan can give "
            "a long enough pFC view; raise pfc_crop_length or lower min_timepoints."
        )
    length = needed
    while num_timepoints_kept(length, settings) < needed:
        length += 1
    return length


def pseudo_fc_time_mask(
    time_mask: torch.Tensor,
    drop_ratio: float = 0.2,
    mask_way: str = "drop",
    crop_length: int = 30,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The time points a pFC view keeps, drawn independently per scan.

    Args:
        time_mask: bool ``(batch_size, num_timepoints)``, the valid points of each scan.
        drop_ratio: ``mask_way="drop"``: drop ``int(drop_ratio * T_valid)`` valid points, uniformly without
            replacement (not contiguous).
        mask_way: ``"drop"``, ``"crop"`` (a random contiguous window of ``crop_length`` valid points; scans
            shorter than that keep all their points) or ``"window"`` (a random contiguous window of as many points
            as ``"drop"`` keeps, so two views of a scan cover different, overlapping time spans).
        generator: a ``torch.Generator`` on ``time_mask``'s device, for reproducible views.
    Returns:
        bool ``(batch_size, num_timepoints)``, a subset of ``time_mask``.
    """
    if mask_way not in PFC_MASK_WAYS:
        raise ValueError(f"Unknown pFC mask_way {mask_way!r}; choose one of {PFC_MASK_WAYS}.")
    if not 0.0 <= drop_ratio < 1.0:
        raise ValueError(f"drop_ratio must be in [0, 1); got {drop_ratio}.")
    time_mask = time_mask.bool()
    lengths = time_mask.sum(dim=1)
    if mask_way == "drop":
        num_drop = (lengths.double() * drop_ratio).floor().long()  # int(ratio * T) as the authors
        scores = torch.rand(time_mask.shape, generator=generator, device=time_mask.device)
        scores = scores.masked_fill(~time_mask, 2.0)  # invalid points sort last and are never "dropped"
        ranks = scores.argsort(dim=1).argsort(dim=1)
        return time_mask & (ranks >= num_drop[:, None])
    # crop / window: valid points are a prefix of each row after padding, so a window on the valid index suffices
    if mask_way == "window":
        window = lengths - (lengths.double() * drop_ratio).floor().long()
    else:
        window = torch.minimum(lengths, torch.full_like(lengths, crop_length))
    max_start = (lengths - window).double()
    start = (torch.rand(lengths.shape, generator=generator, device=time_mask.device).double() * (max_start + 1)).floor()
    start = start.long().clamp_max((lengths - window).clamp_min(0))
    valid_index = time_mask.long().cumsum(dim=1) - 1
    return time_mask & (valid_index >= start[:, None]) & (valid_index < (start + window)[:, None])


def pseudo_functional_connectivity(
    time_series,
    time_mask=None,
    drop_ratio: float = 0.2,
    kind: str = "pearson",
    mask_way: str = "drop",
    crop_length: int = 30,
    fisher_z: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One pFC view per scan: FC of the time points that :func:`pseudo_fc_time_mask` keeps.

    Shapes as :func:`functional_connectivity`: ``(batch_size, num_timepoints, num_rois)`` in,
    ``(batch_size, num_rois, num_rois)`` out. Call twice for two independent views.
    """
    x, mask, squeeze = _as_batch(time_series, time_mask)
    kept = pseudo_fc_time_mask(mask, drop_ratio, mask_way, crop_length, generator)
    fc = functional_connectivity(x, kept, kind=kind, fisher_z=fisher_z)
    return fc[0] if squeeze else fc


def connectivity_view(time_series, time_mask=None, *, settings, pfc: bool, generator=None) -> torch.Tensor:
    """Full FC (``pfc=False``) or one pFC view (``pfc=True``) with the preprocessing of ``settings``: anything with
    ``fc_kind``, ``fisher_z``, ``pfc_drop_ratio``, ``pfc_mask_way`` and ``pfc_crop_length`` (a ``BrainMassConfig``
    or a ``BrainMassFeatureExtractor``), so a checkpoint's FC is computed one way everywhere.

    Shapes as :func:`functional_connectivity`. This is the model's path: it checks shapes but not values (no host
    synchronisation, nothing that breaks ``torch.compile``), so every scan must already have passed the entry-point
    checks (:mod:`brainmass_hf.validation`, the feature extractor, the collators): finite values and enough valid
    time points. Values at padded time points (``time_mask`` False) are ignored, whatever they are.

    Always computed in float32 with autocast off: under fp16 autocast the Ledoit-Wolf sums overflow, and under bf16
    the FC would be off by ~2e-3 from nilearn's."""
    x = torch.as_tensor(time_series)
    with torch.autocast(device_type=x.device.type, enabled=False):
        x, mask, squeeze = _as_batch(x.float(), time_mask)
        if pfc:
            mask = pseudo_fc_time_mask(
                mask, settings.pfc_drop_ratio, settings.pfc_mask_way, settings.pfc_crop_length, generator
            )
        fc = _fc(x, mask, settings.fc_kind, settings.fisher_z)
    return fc[0] if squeeze else fc


def fc_upper_triangle(fc) -> torch.Tensor:
    """The strict upper triangle of FC matrices ``(batch_size, R, R)`` → ``(batch_size, R * (R - 1) / 2)``."""
    fc = torch.as_tensor(fc)
    rows, cols = torch.triu_indices(fc.shape[-1], fc.shape[-1], offset=1, device=fc.device)
    return fc[..., rows, cols]
