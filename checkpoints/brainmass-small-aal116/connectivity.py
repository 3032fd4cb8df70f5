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

Tangent space (Varoquaux et al., MICCAI 2010; Dadi et al., NeuroImage 2019, the strongest classical connectome
pipeline): :func:`spd_geometric_mean` (the reference point of a group of SPD matrices), :func:`tangent_space` (each
matrix whitened at the reference and mapped by the matrix logarithm) and :func:`sym_matrix_vector` (a symmetric
matrix as a vector); the numbers of ``nilearn.connectome.ConnectivityMeasure(kind="tangent")``, batched in torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from .validation import CONSTANT_ROI_STD, MAX_ABS_SIGNAL

__all__ = [
    "FC_KINDS",
    "PFC_MASK_WAYS",
    "pad_time_series",
    "functional_connectivity",
    "pseudo_fc_time_mask",
    "pseudo_functional_connectivity",
    "connectivity_view",
    "scans_connectivity",
    "connectivity_views",
    "pseudo_fc_time_masks",
    "fc_upper_triangle",
    "num_timepoints_after_drop",
    "num_timepoints_kept",
    "min_scan_length",
    "spd_geometric_mean",
    "tangent_space",
    "spd_inverse_sqrt",
    "tangent_tokens",
    "sym_matrix_vector",
    "vector_sym_matrix",
]

FC_KINDS = ("pearson", "ledoit_wolf")
PFC_MASK_WAYS = ("drop", "crop", "window")
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64, torch.float16: np.float16}


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
    shapes = [tuple(ts.shape) for ts in time_series]
    if any(len(shape) != 2 for shape in shapes) or len({shape[1] for shape in shapes}) != 1:
        raise ValueError(f"All scans must be 2-D (time × ROI) with the same number of ROIs; got shapes "
                         f"{sorted(set(shapes))[:5]}.")
    lengths = torch.tensor([shape[0] for shape in shapes])
    num_timepoints, num_rois = int(lengths.max()), shapes[0][1]
    if all(isinstance(ts, np.ndarray) for ts in time_series) and dtype in _NUMPY_DTYPES:
        # numpy fills the batch with a fraction of torch's per-slice overhead (256 scans: ~1 ms, not ~7 ms)
        padded_np = np.zeros((len(shapes), num_timepoints, num_rois), dtype=_NUMPY_DTYPES[dtype])
        for i, ts in enumerate(time_series):
            padded_np[i, : ts.shape[0]] = ts
        padded = torch.from_numpy(padded_np)
    else:
        padded = torch.zeros(len(shapes), num_timepoints, num_rois, dtype=dtype)
        for i, ts in enumerate(time_series):
            # a read-only array (a dataset's numpy view) is copied first: torch warns on a non-writable view
            ts = ts if isinstance(ts, torch.Tensor) else torch.from_numpy(np.require(ts, requirements="W"))
            padded[i, : ts.shape[0]] = ts.to(dtype)
    time_mask = torch.arange(num_timepoints)[None, :] < lengths[:, None]
    return padded, time_mask


# On CPU a batch is processed in blocks of about this many (time × ROI) values per block, so that a block's
# intermediates stay in a core's L2 cache: every step here is memory-bound, and for 256 scans × 200 × 100 a
# whole-batch pass over DRAM is several times slower than the same passes over cache-sized blocks.
_CPU_BLOCK_VALUES = 1 << 19


def _batch_blocks(x: torch.Tensor) -> list[slice]:
    """The blocks of the batch processed together: cache-sized blocks on CPU in eager mode, else the whole batch
    (one kernel launch per step on accelerators; one graph under ``torch.compile``)."""
    batch = x.shape[0]
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return [slice(0, batch)]
    step = max(1, _CPU_BLOCK_VALUES // max(1, x.shape[1] * x.shape[2]))
    return [slice(i, min(batch, i + step)) for i in range(0, batch, step)]


def _in_blocks(x: torch.Tensor, out_shape: tuple[int, ...], batch_dim: int, compute) -> torch.Tensor:
    """``compute(block, out)`` over :func:`_batch_blocks` of ``x``: with one block ``compute(slice(None), None)``'s
    result; else each block writes into its slice (along ``batch_dim``) of a new ``out_shape`` tensor, returned."""
    blocks = _batch_blocks(x)
    if len(blocks) == 1:
        return compute(slice(None), None)
    out = x.new_empty(out_shape)
    for block in blocks:
        compute(block, out[(slice(None),) * batch_dim + (block,)])
    return out


def _centered(x: torch.Tensor, mask: torch.Tensor):
    """Masked centring. Returns ``(xc [B,T,R] zero at invalid points, n [B] valid counts)``.

    Invalid points are replaced by zeros with ``torch.where`` before any arithmetic: padding may hold anything
    (NaN included) and ``NaN * 0`` is NaN, so multiplying by the mask alone would leak it into the scan's FC."""
    n = mask.sum(dim=1)  # [B]
    if x.device.type == "cpu" and not torch.compiler.is_compiling() and bool(n.eq(mask.shape[1]).all()):
        # every point valid (scans of one length): nothing to clear. On a CPU this check costs no device sync.
        return x - x.mean(dim=1, keepdim=True), n
    valid = mask.unsqueeze(-1)
    x = torch.where(valid, x, torch.zeros((), dtype=x.dtype, device=x.device))
    mean = x.sum(dim=1, keepdim=True) / n.clamp_min(1).to(x.dtype)[:, None, None]
    return _inplace_unless_grad(x - mean, torch.Tensor.mul_, torch.mul, valid.to(x.dtype)), n


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
    Raises:
        ValueError: a scan with fewer than 2 valid time points, or whose valid points hold NaN, Inf or values above
            ``validation.MAX_ABS_SIGNAL`` (1e15) in size (their products overflow float32: the FC would be NaN).
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
    magnitude = torch.where(mask.unsqueeze(-1), x.abs(), torch.zeros((), dtype=x.dtype, device=x.device))
    unusable = ~(magnitude <= MAX_ABS_SIGNAL).all(dim=2).all(dim=1)  # NaN fails the comparison too
    if bool(unusable.any()):
        bad = torch.nonzero(unusable).flatten().tolist()
        raise ValueError(
            f"The scans at batch positions {bad} hold NaN, Inf or values above {MAX_ABS_SIGNAL:.0e} in size, whose "
            "products overflow float32 and make the FC NaN. Rescale them (e.g. z-score each ROI) or fix the "
            "extraction; brainmass_hf.validation.validate_time_series names the time point and ROI."
        )
    fc = _fc(x, mask, kind, fisher_z)
    return fc[0] if squeeze else fc


def _fc(x: torch.Tensor, mask: torch.Tensor, kind: str, fisher_z: bool) -> torch.Tensor:
    """FC of a batch ``x`` ``(B, T, R)`` float with ``mask`` ``(B, T)`` bool; no value checks, no host sync (the
    model's path: its inputs were validated where they entered). Returns ``(B, R, R)``."""
    return _in_blocks(x, (x.shape[0], x.shape[2], x.shape[2]), 0,
                      lambda block, out: _fc_block(x[block], mask[block], kind, fisher_z, out=out))


def _fc_block(x: torch.Tensor, mask: torch.Tensor, kind: str, fisher_z: bool, out=None) -> torch.Tensor:
    xc, n = _centered(x, mask)
    # One R × R product per scan, the centred cross-products; z-scoring each ROI (ddof=1, as nilearn's
    # "zscore_sample"), the shrinkage and the conversion to correlation are then rescalings of its rows and
    # columns by per-ROI factors (`_fc_from_cross`), so the (B, R, R) tensors are touched only a few times.
    cross = xc.transpose(1, 2) @ xc  # [B, R, R]
    return _fc_from_cross(cross, n, kind, fisher_z, lambda inv_var: (xc.pow(2) @ inv_var.unsqueeze(-1)).squeeze(-1),
                          out=out)


def _fc_from_cross(cross: torch.Tensor, n: torch.Tensor, kind: str, fisher_z: bool, row_energy_of,
                   out: torch.Tensor | None = None) -> torch.Tensor:
    """FC ``(B, R, R)`` from the centred cross-products ``cross`` ``(B, R, R)`` of ``n`` ``(B,)`` valid points.

    ``row_energy_of(inv_var)`` (Ledoit-Wolf only) gives ``Σ_i xc[t, i]² · inv_var[i]`` ``(B, T)`` for the valid
    points ``t`` (0 elsewhere), ``xc`` the points centred on their mean. Constant ROIs get all-zero rows and columns
    (and 1 on the diagonal). With ``out`` (any shape of ``B · R · R`` values ending in ``(R, R)``, e.g. a block of a
    larger output) the result is written there, saving a copy, and ``out`` is returned."""
    nf = n.to(cross.dtype)
    var = torch.diagonal(cross, dim1=1, dim2=2) / (nf - 1).unsqueeze(-1)  # [B, R]
    constant = var.clamp_min(0).sqrt() < CONSTANT_ROI_STD
    inv_var = torch.where(constant, torch.zeros_like(var), 1.0 / torch.where(constant, torch.ones_like(var), var))
    if kind == "pearson":
        scale = (inv_var / (nf - 1).unsqueeze(-1)).sqrt()  # 1 / (std · sqrt(n - 1)); 0 for constant ROIs
        fc = cross * (scale.unsqueeze(-1) * scale.unsqueeze(-2))
    else:
        inv_std_n = (inv_var / nf.unsqueeze(-1)).sqrt()
        fc = cross * (inv_std_n.unsqueeze(-1) * inv_std_n.unsqueeze(-2))  # standardised covariance, diag (n-1)/n
        emp_cov_trace = torch.diagonal(fc, dim1=1, dim2=2)
        delta_ = torch.linalg.vector_norm(fc, dim=(1, 2)).pow(2)
        shrinkage = _ledoit_wolf_shrinkage(emp_cov_trace, delta_, row_energy_of(inv_var), n)  # [B]
        mu = emp_cov_trace.sum(dim=-1) / cross.shape[-1]
        # The shrunk covariance (1 - s)·cov + s·mu·I has the same diagonal (n-1)/n·(1 - s) + s·mu for every
        # non-constant ROI (a standardised ROI has variance (n-1)/n), so its correlation is cov scaled by one number
        # per scan; constant ROIs have all-zero rows already.
        shrunk_diag = (nf - 1) / nf * (1.0 - shrinkage) + shrinkage * mu
        factor = (1.0 - shrinkage) / shrunk_diag.clamp_min(torch.finfo(cross.dtype).tiny)
        fc = _inplace_unless_grad(fc, torch.Tensor.mul_, torch.mul, factor[:, None, None])
    if out is not None and not fisher_z and not fc.requires_grad:
        fc = torch.clamp(fc.view(out.shape), -1.0, 1.0, out=out)
    else:
        fc = _inplace_unless_grad(fc, torch.Tensor.clamp_, torch.clamp, -1.0, 1.0)
    torch.diagonal(fc, dim1=-2, dim2=-1).fill_(1.0)  # in place on the diagonal only: R values, not R × R
    if fisher_z:
        fc = torch.atanh(fc.clamp(-1 + 1e-6, 1 - 1e-6))
        torch.diagonal(fc, dim1=-2, dim2=-1).fill_(0.0)
    if out is not None and fc is not out:
        out.copy_(fc.view(out.shape))
        return out
    return fc


def _inplace_unless_grad(tensor: torch.Tensor, inplace, out_of_place, *args) -> torch.Tensor:
    """``inplace(tensor, *args)`` (no new (B, R, R) allocation) unless autograd tracks ``tensor``, whose earlier
    value a backward pass may need."""
    if tensor.requires_grad:
        return out_of_place(tensor, *args)
    return inplace(tensor, *args)


def _dropped_points(mask: torch.Tensor, drop_ratio: float, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The time points one ``"drop"`` view drops: ``int(drop_ratio * T_valid)`` valid points per scan, uniformly
    without replacement (the lowest of one uniform score per point; invalid points score 2 and are never picked).

    Returns ``(order, dropped_slot)``: ``order`` ``(B, max_drop)`` the ``max_drop = int(drop_ratio * T)`` lowest-
    scoring points (a static size: no host sync), ``dropped_slot`` bool ``(B, max_drop)``, which of them are dropped
    (the first ``int(drop_ratio * T_valid)``). The one draw behind every drop view."""
    scores = torch.rand(mask.shape, generator=generator, device=mask.device).masked_fill(~mask, 2.0)
    num_drop = (mask.sum(dim=1).double() * drop_ratio).floor().long()  # int(ratio * T) as the authors
    max_drop = int(drop_ratio * mask.shape[1])
    order = scores.topk(max_drop, dim=1, largest=False, sorted=True).indices
    dropped_slot = torch.arange(max_drop, device=mask.device)[None, :] < num_drop[:, None]
    return order, dropped_slot


def _kept_after_drop(mask: torch.Tensor, order: torch.Tensor, dropped_slot: torch.Tensor) -> torch.Tensor:
    """``mask`` with the dropped points of ``_dropped_points`` set to False."""
    return mask.scatter(1, order, mask.gather(1, order) & ~dropped_slot)


def _fc_drop_views(x: torch.Tensor, mask: torch.Tensor, kept: torch.Tensor, kind: str, fisher_z: bool,
                   drop_ratio: float) -> list[torch.Tensor]:
    """The ``"drop"`` pFC views ``(B, R, R)`` that keep the points ``kept`` ``(V, B, T)`` (subsets of ``mask``): the
    numbers of ``_fc(x, kept[v])`` for each view, at a fraction of the cost. Each view may drop at most
    ``int(drop_ratio * T)`` of the valid points (what :func:`pseudo_fc_time_mask` draws with that ratio): that
    bound is the static size of the dropped-point index, so no host sync. See :func:`_fc_drop_views_block`."""
    dropped = mask.unsqueeze(0) & ~kept  # [V, B, T]
    max_drop = int(drop_ratio * mask.shape[1])
    # the dropped points first (True sorts above False); a scan that drops fewer fills its slots with kept points
    order = dropped.float().topk(max_drop, dim=-1).indices  # [V, B, max_drop]
    dropped_slot = dropped.gather(-1, order)
    shape = (kept.shape[0], x.shape[0], x.shape[2], x.shape[2])
    views = _in_blocks(x, shape, 1, lambda block, out: _fc_drop_views_block(
        x[block], mask[block], kind, fisher_z, kept[:, block], order[:, block], dropped_slot[:, block], out=out))
    return list(views.unbind(0))


def _fc_drop_views_block(x, mask, kind, fisher_z, kept, order, dropped_slot, out=None) -> torch.Tensor:
    """The views ``(V, b, R, R)`` of one block, all views at once. The cross-products of all valid points, ``Σ_t xc_t xc_tᵀ``
    (``xc`` centred on the scan's mean ``m``), are computed once per scan; a view that drops the points ``D``
    (``order[v]`` where ``dropped_slot[v]``) and keeps ``K`` has
    ``Σ_{t∈K} (x_t − m_K)(x_t − m_K)ᵀ = Σ_t xc_t xc_tᵀ − Σ_{t∈D} xc_t xc_tᵀ − n_K (m_K − m)(m_K − m)ᵀ``: one small
    product over the dropped points, the mean term as an extra row. Ledoit-Wolf's per-point energies are expanded
    the same way, so no ``(B, T, R)`` tensor is made per view."""
    (num_views, batch, _), num_rois = order.shape, x.shape[-1]
    xc, n = _centered(x, mask)  # zero at invalid points
    total = xc.sum(dim=1)  # [B, R]: 0 up to rounding, kept so that the view means are exact
    gram = xc.transpose(1, 2) @ xc  # [B, R, R], shared by every view
    num_kept = n - dropped_slot.sum(dim=-1)  # [V, B]
    kept_f = num_kept.to(x.dtype).clamp_min(1)
    index = order.unsqueeze(-1).expand(-1, -1, -1, num_rois)
    dropped = xc.unsqueeze(0).expand(num_views, -1, -1, -1).gather(2, index)
    dropped = dropped * dropped_slot.unsqueeze(-1).to(x.dtype)  # [V, B, max_drop, R]
    shift = (total - dropped.sum(dim=2)) / kept_f.unsqueeze(-1)  # [V, B, R]: view mean − scan mean
    rows = torch.cat([dropped, (shift * kept_f.sqrt().unsqueeze(-1)).unsqueeze(2)], dim=2).flatten(0, 1)
    cross = (gram - (rows.transpose(1, 2) @ rows).view(num_views, batch, num_rois, num_rois)).flatten(0, 1)

    def row_energy_of(inv_var):  # [V·B, R] → [V·B, T]
        # Σ_i (xc_ti − shift_i)² iv_i = xc²·iv − 2 xc·(shift ∘ iv) + Σ shift² iv, on each view's kept points only
        iv = inv_var.view(num_views, batch, num_rois)
        energy = xc.pow(2) @ iv.permute(1, 2, 0) - 2.0 * (xc @ (shift * iv).permute(1, 2, 0))  # [B, T, V]
        energy = energy.permute(2, 0, 1) + (shift.pow(2) * iv).sum(dim=-1, keepdim=True)  # [V, B, T]
        return (energy * kept.to(energy.dtype)).flatten(0, 1)

    fc = _fc_from_cross(cross, num_kept.flatten(), kind, fisher_z, row_energy_of, out=out)
    return fc.view(num_views, batch, num_rois, num_rois)  # `out` itself when given


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
        return _kept_after_drop(time_mask, *_dropped_points(time_mask, drop_ratio, generator))
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


def scans_connectivity(scans: Sequence[np.ndarray], *, settings, batch_size: int = 64) -> torch.Tensor:
    """The full FC (every valid time point) of a list of scans ``(T_i, R)`` of any lengths, with the FC settings of
    ``settings``: ``(num_scans, R, R)`` float32, computed on padded batches of ``batch_size`` scans. The model's
    path (:func:`connectivity_view`): the scans must already be validated."""
    return torch.cat([
        connectivity_view(*pad_time_series(scans[start:start + batch_size]), settings=settings, pfc=False)
        for start in range(0, len(scans), batch_size)
    ])


def pseudo_fc_time_masks(time_mask: torch.Tensor, *, settings, num_views: int = 2,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """The time points each of ``num_views`` independent pFC views keeps, with the pFC settings of ``settings`` (a
    ``BrainMassConfig`` or a ``BrainMassFeatureExtractor``): ``num_views`` calls of :func:`pseudo_fc_time_mask` with
    ``generator``, in view order (the draws of ``num_views`` ``connectivity_view(..., pfc=True)`` calls).

    Args:
        time_mask: bool ``(batch_size, num_timepoints)``, the valid points of each scan.
    Returns:
        bool ``(batch_size, num_views, num_timepoints)``, each view a subset of ``time_mask``.
    """
    time_mask = torch.as_tensor(time_mask).bool()
    views = [pseudo_fc_time_mask(time_mask, settings.pfc_drop_ratio, settings.pfc_mask_way, settings.pfc_crop_length,
                                 generator) for _ in range(num_views)]
    return torch.stack(views, dim=1)


def connectivity_views(time_series, time_mask=None, *, settings, view_time_masks=None, num_views: int = 2,
                       generator=None) -> list[torch.Tensor]:
    """pFC views of each scan, the pretraining inputs: the FC of the time points each view keeps.

    Args:
        time_series: ``(batch_size, num_timepoints, num_rois)`` (or one scan ``(num_timepoints, num_rois)``).
        time_mask: bool ``(batch_size, num_timepoints)``, the valid points; default all.
        settings: a ``BrainMassConfig`` or ``BrainMassFeatureExtractor`` (``fc_kind``, ``fisher_z``, ``pfc_*``).
        view_time_masks: bool ``(batch_size, num_views, num_timepoints)``, the points each view keeps (subsets of
            ``time_mask``; what :func:`pseudo_fc_time_masks` draws). When None, ``num_views`` views are drawn here
            with ``generator`` (the same draws and numbers as ``num_views`` ``connectivity_view(..., pfc=True)``
            calls). With ``settings.pfc_mask_way == "drop"`` a view may drop at most ``int(pfc_drop_ratio *
            num_timepoints)`` valid points (true of every draw with those settings).

    For ``"drop"`` views (the default) the views share one ``R × R`` product of all valid points per scan and each
    view subtracts that of its dropped points, so two views cost about as much as one full FC. Same contract as
    :func:`connectivity_view`: shapes checked, values not (no host sync).

    Returns:
        a list of ``num_views`` tensors ``(batch_size, num_rois, num_rois)`` (``(num_rois, num_rois)`` for one scan).
    """
    x = torch.as_tensor(time_series)
    with torch.autocast(device_type=x.device.type, enabled=False):
        x, mask, squeeze = _as_batch(x.float(), time_mask)
        if view_time_masks is None:
            view_time_masks = pseudo_fc_time_masks(mask, settings=settings, num_views=num_views, generator=generator)
        kept = torch.as_tensor(view_time_masks, device=x.device).bool()
        kept = kept.unsqueeze(0) if squeeze and kept.dim() == 2 else kept
        if kept.dim() != 3 or kept.shape[0] != x.shape[0] or kept.shape[2] != x.shape[1]:
            raise ValueError(
                f"view_time_masks must have shape (batch_size, num_views, num_timepoints) = ({x.shape[0]}, V, "
                f"{x.shape[1]}) to match time_series; got {tuple(kept.shape)}."
            )
        kept = kept.transpose(0, 1) & mask.unsqueeze(0)  # [V, B, T]
        if settings.pfc_mask_way == "drop":
            views = _fc_drop_views(x, mask, kept, settings.fc_kind, settings.fisher_z, settings.pfc_drop_ratio)
        else:
            views = [_fc(x, view, settings.fc_kind, settings.fisher_z) for view in kept.unbind(0)]
    return [v[0] for v in views] if squeeze else views


def fc_upper_triangle(fc) -> torch.Tensor:
    """The strict upper triangle of FC matrices ``(batch_size, R, R)`` → ``(batch_size, R * (R - 1) / 2)``."""
    fc = torch.as_tensor(fc)
    rows, cols = torch.triu_indices(fc.shape[-1], fc.shape[-1], offset=1, device=fc.device)
    return fc[..., rows, cols]


def _eigen_map(matrices: torch.Tensor, function) -> torch.Tensor:
    """``V f(Λ) Vᵀ`` for symmetric ``matrices`` ``(..., R, R)`` with eigen-decomposition ``V Λ Vᵀ`` (batched)."""
    values, vectors = torch.linalg.eigh(matrices)
    return (vectors * function(values).unsqueeze(-2)) @ vectors.transpose(-1, -2)


def _check_spd(matrices: torch.Tensor, what: str) -> torch.Tensor:
    """``matrices`` as float64 ``(N, R, R)``, symmetrised; a clear error when one is not positive definite."""
    matrices = torch.as_tensor(matrices).to(torch.float64)
    if matrices.dim() != 3 or matrices.shape[-1] != matrices.shape[-2]:
        raise ValueError(f"{what} must be (num_matrices, R, R); got shape {tuple(matrices.shape)}.")
    matrices = 0.5 * (matrices + matrices.transpose(-1, -2))
    smallest = torch.linalg.eigvalsh(matrices)[:, 0]
    bad = torch.nonzero(~(smallest > 0)).flatten().tolist()
    if bad:
        raise ValueError(
            f"{what} at positions {bad[:10]} are not positive definite (smallest eigenvalue "
            f"{smallest[bad[0]].item():.3g}); use a shrunk estimator (fc_kind='ledoit_wolf'), which is always positive "
            "definite, instead of the plain correlation of scans with fewer time points than ROIs."
        )
    return matrices


def spd_geometric_mean(matrices, *, max_iter: int = 30, tol: float = 1e-7) -> torch.Tensor:
    """The geometric (affine-invariant Riemannian) mean of symmetric positive definite matrices.

    The minimiser ``G`` of ``Σ_k ‖log(G^-1/2 M_k G^-1/2)‖²_F``, by gradient descent along geodesics from the
    arithmetic mean with step halving (Fletcher and Joshi 2007, Algorithm 3), exactly as nilearn's
    ``ConnectivityMeasure(kind="tangent")`` fits its ``mean_`` (``max_iter=30``, stop when ``‖gradient‖_F / R²`` is
    below ``tol``). Batched in torch float64: one ``eigh`` of all ``N`` matrices per iteration.

    Args:
        matrices: ``(N, R, R)`` SPD matrices (tensor or array), e.g. Ledoit-Wolf FC.
    Returns:
        ``(R, R)`` float64.
    """
    matrices = _check_spd(matrices, "matrices")
    mean = matrices.mean(dim=0)
    best_norm, step = float("inf"), 1.0
    for _ in range(max_iter):
        values, vectors = torch.linalg.eigh(mean)
        inv_sqrt = (vectors * values.rsqrt()) @ vectors.T
        sqrt = (vectors * values.sqrt()) @ vectors.T
        gradient = _eigen_map(inv_sqrt @ matrices @ inv_sqrt, torch.log).mean(dim=0)
        if not bool(torch.isfinite(gradient).all()):
            raise FloatingPointError("Non-finite matrix logarithm while averaging; are the matrices well conditioned?")
        norm = float(torch.linalg.matrix_norm(gradient))
        mean = sqrt @ _eigen_map(gradient * step, torch.exp) @ sqrt
        if norm < best_norm:
            best_norm = norm
        elif norm > best_norm:
            step, norm = step / 2.0, best_norm
        if norm / mean.numel() < tol:
            break
    return 0.5 * (mean + mean.T)


def tangent_space(matrices, reference) -> torch.Tensor:
    """Each SPD matrix ``M`` in the tangent space at ``reference`` ``G``: ``log(G^-1/2 M G^-1/2)``.

    Args:
        matrices: ``(N, R, R)`` SPD matrices.
        reference: ``(R, R)`` SPD, usually :func:`spd_geometric_mean` of a training group (never of test scans).
    Returns:
        ``(N, R, R)`` float64 symmetric matrices (nilearn's tangent connectivities before vectorising).
    """
    matrices = _check_spd(matrices, "matrices")
    whitening = spd_inverse_sqrt(reference)
    return _eigen_map(whitening @ matrices @ whitening, torch.log)


def spd_inverse_sqrt(reference) -> torch.Tensor:
    """``G^-1/2`` of one SPD matrix ``reference`` ``(R, R)``: the whitening :func:`tangent_tokens` applies. Float64,
    symmetric; a clear error when ``reference`` is not positive definite."""
    reference = _check_spd(torch.as_tensor(reference)[None], "reference")[0]
    whitening = _eigen_map(reference, torch.rsqrt)
    return 0.5 * (whitening + whitening.T)


# Whitened FC eigenvalues below this (relative to 1) are floored before the logarithm: the model's forward checks no
# values (no host sync), so a singular matrix that slipped past the entry-point checks gives a finite token, not -inf.
TANGENT_EIGENVALUE_FLOOR = 1e-6


def tangent_tokens(connectivity: torch.Tensor, whitening: torch.Tensor) -> torch.Tensor:
    """The model's tangent-space input (``config.input_space="tangent"``): ``log(W C W)`` for each FC matrix ``C``.

    The same numbers as :func:`tangent_space` with ``W = spd_inverse_sqrt(reference)``, batched in float32 (one
    ``eigh`` per matrix, autocast off) and differentiable (gradient × input attributions go through it).
    Eigenvalues of ``W C W`` are floored at :data:`TANGENT_EIGENVALUE_FLOOR`, so the map never gives NaN or Inf;
    positive definiteness of given FC is checked at the entry points (``validation.validate_connectivity``).

    Args:
        connectivity: ``(batch_size, R, R)`` symmetric positive definite FC (Ledoit-Wolf).
        whitening: ``(R, R)`` symmetric ``W``.
    Returns:
        ``(batch_size, R, R)`` symmetric, in ``connectivity``'s dtype.
    """
    with torch.autocast(device_type=connectivity.device.type, enabled=False):
        w = whitening.to(device=connectivity.device, dtype=torch.float32)
        whitened = w @ connectivity.float() @ w
        whitened = 0.5 * (whitened + whitened.transpose(-1, -2))
        tokens = _eigen_map(whitened, lambda values: values.clamp_min(TANGENT_EIGENVALUE_FLOOR).log())
    return tokens.to(connectivity.dtype)


def sym_matrix_vector(matrices) -> torch.Tensor:
    """Symmetric ``(..., R, R)`` → ``(..., R(R+1)/2)``: the lower triangle row by row, the diagonal divided by √2 (so
    the Euclidean norm of the vector is the Frobenius norm of the matrix over √2), as
    ``nilearn.connectome.sym_matrix_to_vec``."""
    matrices = torch.as_tensor(matrices)
    rows, cols = torch.tril_indices(matrices.shape[-1], matrices.shape[-1], device=matrices.device)
    diagonal = (rows == cols).to(matrices.dtype)
    return matrices[..., rows, cols] * (1.0 + diagonal * (2.0 ** -0.5 - 1.0))


def vector_sym_matrix(vectors) -> torch.Tensor:
    """The inverse of :func:`sym_matrix_vector`: ``(..., R(R+1)/2)`` → symmetric ``(..., R, R)``."""
    vectors = torch.as_tensor(vectors)
    size = int(round((math.sqrt(8 * vectors.shape[-1] + 1) - 1) / 2))
    if size * (size + 1) // 2 != vectors.shape[-1]:
        raise ValueError(f"A vector of {vectors.shape[-1]} values is not the lower triangle of a symmetric matrix.")
    rows, cols = torch.tril_indices(size, size, device=vectors.device)
    scale = 1.0 + (rows == cols).to(vectors.dtype) * (2.0 ** 0.5 - 1.0)
    out = vectors.new_zeros(*vectors.shape[:-1], size, size)
    out[..., rows, cols] = vectors * scale
    out[..., cols, rows] = vectors * scale
    return out
