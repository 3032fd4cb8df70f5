"""Frozen features of scans: the BrainMass readout, the raw-FC baseline, and the random-init twin.

Every view goes through :func:`brainmass_hf.connectivity.connectivity_view` with the checkpoint's FC
settings, so the encoder, its random-init twin and the raw-FC baseline see exactly the same matrices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..connectivity import connectivity_view, fc_upper_triangle, min_scan_length, pad_time_series
from ..validation import BrainMassDataError, validate_time_series

__all__ = ["VIEWS", "FEATURES", "FCSettings", "extract_features", "random_init_like", "raw_fc_features"]

# How a scan is turned into the matrix a classifier sees at test time.
VIEWS = ("full", "pfc", "tta")
# Which encoder output a scan's feature is: the 8R readout (`pooler_output`, the paper's) or the mean over ROI tokens
# of the last hidden state (R values).
FEATURES = ("readout", "mean_hidden")


@dataclass(frozen=True)
class FCSettings:
    """The FC preprocessing of a checkpoint, in the attribute names `connectivity_view` reads."""

    fc_kind: str = "pearson"
    fisher_z: bool = False
    pfc_drop_ratio: float = 0.2
    pfc_mask_way: str = "drop"
    pfc_crop_length: int = 30
    # the fewest time points a view may keep; FC needs 2, and 3 keeps a 20 % pFC drop above that
    min_timepoints: int = 3

    @classmethod
    def of(cls, config: Any = None, **overrides: Any) -> "FCSettings":
        """The settings of `config` (a `BrainMassConfig` or feature extractor; defaults for missing fields),
        with `overrides` (None values ignored) on top."""
        values = {name: getattr(config, name) for name in cls.__dataclass_fields__ if hasattr(config, name)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _encoder_of(model: torch.nn.Module) -> torch.nn.Module:
    """The bare encoder (`BrainMassModel`) inside a task or pretraining model (or the model itself)."""
    base = getattr(model, "base_model", None)
    return model if base is None else base


def _check_scans(
    time_series: Sequence[np.ndarray] | np.ndarray, settings: FCSettings | Any, view: str, num_rois: int | None = None
) -> list[np.ndarray]:
    """The scans as float32 `[T_i, R]` arrays, checked by the package's one validation layer; each must be long
    enough for the view (`connectivity.min_scan_length`)."""
    if isinstance(time_series, np.ndarray) and time_series.ndim == 2:
        raise BrainMassDataError(
            f"Got one array of shape {time_series.shape}; pass a list of [num_timepoints, num_rois] scans "
            "(e.g. [scan]) or a [num_scans, num_timepoints, num_rois] array."
        )
    # Constant ROIs are reported once, where the scans are loaded (with their ids); evaluation runs this check for
    # every method and view, and repeating the warning each time would only bury it.
    return validate_time_series(
        time_series, num_rois=num_rois, min_timepoints=min_scan_length(settings, pfc=view != "full"),
        warn_constant_rois=False,
    )


def _encoder_feature(encoder: torch.nn.Module, connectivity: torch.Tensor, feature: str) -> torch.Tensor:
    """`feature` (one of `FEATURES`) of FC `[B, R, R]`: `[B, R * readout_dim]` or `[B, R]`, float32."""
    outputs = encoder(connectivity=connectivity)
    if feature == "readout":
        return outputs.pooler_output.float()
    return outputs.last_hidden_state.float().mean(dim=1)


def _view_count(view: str, num_views: int) -> int:
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}; got {view!r}.")
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1; got {num_views}.")
    if view != "tta" and num_views != 1:
        raise ValueError(f"view={view!r} uses one view per scan; use view='tta' to average {num_views} pFC views.")
    return num_views


def _views_per_batch(
    scans: list[np.ndarray], settings: Any, *, view: str, num_views: int, seed: int, batch_size: int,
    show_progress: bool, desc: str,
) -> Iterator[list[torch.Tensor]]:
    """Yield, per batch of scans, `num_views` FC tensors `[B, R, R]` (one for `view="full"`).

    One seeded CPU generator is consumed in scan order, so (seed, batch_size, scan order) reproduce the
    same pFC views whatever encoder they are fed to.
    """
    generator = torch.Generator().manual_seed(int(seed))
    for start in tqdm(range(0, len(scans), batch_size), desc=desc, disable=not show_progress, leave=False):
        time_series, time_mask = pad_time_series(scans[start : start + batch_size])
        yield [
            connectivity_view(time_series, time_mask, settings=settings, pfc=view != "full", generator=generator)
            for _ in range(num_views)
        ]


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
    feature: str = "readout",
    show_progress: bool = False,
) -> np.ndarray:
    """Frozen BrainMass features of each scan: the readout (`pooler_output`) or the mean hidden state.

    Runs fp32 eager under `torch.inference_mode`: on this project's CPU the fastest end to end for cohorts of up to
    about a thousand scans, at 1.5× the time of the forward's matrix products alone for small at batch 64
    (`docs/performance.md`, `benchmarks/feature_throughput.py`; bf16 and `torch.compile` measured beside it).

    Args:
        model: a `BrainMassModel` (or any model whose `base_model` is one).
        time_series: one float array `[T_i, R]` per scan; T may vary.
        view: `"full"` (FC of all time points), `"pfc"` (one pFC view), or `"tta"` (the mean feature of
            `num_views` pFC views).
        num_views: number of pFC views averaged for `"tta"`; must be 1 otherwise.
        seed: seeds the pFC draws; the same seed and `batch_size` reproduce the same views.
        batch_size: scans per forward pass.
        device: where the encoder runs (the model is moved there); default its current device.
        fc_kind, drop_ratio: override the checkpoint's `fc_kind` / `pfc_drop_ratio`.
        feature: `"readout"` (the paper's `8R` readout, `pooler_output`) or `"mean_hidden"` (the last hidden
            state averaged over the R ROI tokens, `R` values: the encoder without its readout layer).

    Returns:
        float32 array `[N, 8R]` (`"readout"`) or `[N, R]` (`"mean_hidden"`).
    """
    num_views = _view_count(view, num_views)
    if feature not in FEATURES:
        raise ValueError(f"feature must be one of {FEATURES}; got {feature!r}.")
    encoder = _encoder_of(model)
    settings = FCSettings.of(encoder.config, fc_kind=fc_kind, pfc_drop_ratio=drop_ratio)
    scans = _check_scans(time_series, settings, view, num_rois=getattr(encoder.config, "num_rois", None))
    if device is not None:
        encoder.to(device)
    parameter = next(encoder.parameters())
    was_training = encoder.training
    encoder.eval()
    features = []
    try:
        with torch.inference_mode():
            for views in _views_per_batch(
                scans, settings, view=view, num_views=num_views, seed=seed, batch_size=batch_size,
                show_progress=show_progress, desc=f"features ({view})",
            ):
                outputs = [
                    _encoder_feature(encoder, fc.to(parameter.device, parameter.dtype), feature).cpu() for fc in views
                ]
                features.append(torch.stack(outputs).mean(dim=0).numpy())
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
    settings: Any = None,
) -> np.ndarray:
    """The raw-FC baseline feature: strict upper triangle of the FC, `[N, R(R-1)/2]` float32.

    Views are drawn exactly as in `extract_features` (same `seed` and `batch_size` → same dropped time
    points), so the baseline and the model see the same data. Pass a checkpoint's config as `settings`
    to use all its FC settings; otherwise `kind`, `drop_ratio` and `fc_options` (`fisher_z`,
    `mask_way`, `crop_length`) set them.
    """
    num_views = _view_count(view, num_views)
    if settings is None:
        options = dict(fc_options or {})
        settings = FCSettings.of(
            fc_kind=kind, pfc_drop_ratio=drop_ratio, fisher_z=options.pop("fisher_z", None),
            pfc_mask_way=options.pop("mask_way", None), pfc_crop_length=options.pop("crop_length", None),
        )
        if options:
            raise ValueError(f"Unknown fc_options {sorted(options)}; use fisher_z, mask_way, crop_length.")
    scans = _check_scans(time_series, settings, view)
    features = []
    for views in _views_per_batch(
        scans, settings, view=view, num_views=num_views, seed=seed, batch_size=batch_size,
        show_progress=show_progress, desc=f"raw FC ({view})",
    ):
        features.append(torch.stack([fc_upper_triangle(fc) for fc in views]).mean(dim=0).numpy())
    return np.concatenate(features).astype(np.float32)


def random_init_like(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """The same architecture and config as `model`'s encoder, with fresh weights drawn under `seed`.

    What is fitted to data rather than trained (the tangent reference of `input_space="tangent"`,
    `embeddings.whitening`) is copied, so the twin reads the same tokens and differs only by its weights. It lands
    on the device and dtype of `model`; the global torch RNG is left untouched.
    """
    encoder = _encoder_of(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        fresh = type(encoder)(encoder.config)
    fresh.embeddings.load_state_dict(encoder.embeddings.state_dict())
    parameter = next(encoder.parameters())
    return fresh.to(parameter.device, parameter.dtype).eval()
