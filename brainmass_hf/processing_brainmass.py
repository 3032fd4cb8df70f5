"""Time series → model input, saved beside the weights (``preprocessor_config.json``).

:class:`BrainMassFeatureExtractor` applies the preprocessing a checkpoint depends on (atlas, ROI count, FC kind,
pFC drop ratio) so a user's scans are turned into FC exactly as in pretraining. The model config owns those settings
(:data:`~brainmass_hf.configuration_brainmass.PREPROCESSOR_SETTING_NAMES`): the extractor is built from it
(:meth:`BrainMassFeatureExtractor.from_config`), its ``preprocessor_config.json`` is a copy for loading it alone, and
a folder whose copy disagrees with ``config.json`` does not load (:meth:`BrainMassFeatureExtractor.from_pretrained`,
and the models' ``from_pretrained``). The FC maths lives in :mod:`brainmass_hf.connectivity`; this class validates
and batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import BatchFeature
from transformers.feature_extraction_utils import FeatureExtractionMixin

from .configuration_brainmass import (
    FC_SETTING_NAMES,
    BrainMassConfig,
    check_fc_settings,
    check_preprocessor_agrees,
    read_json_beside,
)
from .connectivity import connectivity_view, min_scan_length, pad_time_series
from .validation import validate_time_series

__all__ = ["BrainMassFeatureExtractor", "VIEWS"]

VIEWS = ("full", "pfc", "time_series")


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach().cpu()
    # numpy has no bfloat16/float16 halves worth keeping; float32 holds them exactly
    return (tensor.float() if tensor.dtype in (torch.bfloat16, torch.float16) else tensor).numpy()


class BrainMassFeatureExtractor(FeatureExtractionMixin):
    r"""Turns ROI time series into BrainMass inputs.

    Args:
        num_rois (`int`, defaults to 100): ROIs of the atlas; every scan must have this many columns.
        fc_kind (`str`, defaults to ``"ledoit_wolf"``), fisher_z (`bool`, defaults to `False`): FC settings.
        pfc_drop_ratio (`float`, defaults to 0.2), pfc_mask_way (``"drop"``), pfc_crop_length (30): pFC views.
        min_timepoints (`int`, defaults to 10): fewest time points a view may keep.
        atlas_name (`str`, *optional*), roi_names (`list[str]`, *optional*): the parcellation.

    Example:

    ```python
    >>> fe = BrainMassFeatureExtractor.from_config(model.config)
    >>> batch = fe([scan_a, scan_b], view="full")   # scans: (T_i, R) arrays
    >>> model(**batch).pooler_output.shape          # (2, 8 * R)
    ```
    """

    model_input_names = ["connectivity"]

    def __init__(
        self,
        num_rois: int = 100,
        fc_kind: str = "ledoit_wolf",
        fisher_z: bool = False,
        pfc_drop_ratio: float = 0.2,
        pfc_mask_way: str = "drop",
        pfc_crop_length: int = 30,
        min_timepoints: int = 10,
        atlas_name: str | None = None,
        roi_names: list[str] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_rois = int(num_rois)
        self.fc_kind = fc_kind
        self.fisher_z = bool(fisher_z)
        self.pfc_drop_ratio = float(pfc_drop_ratio)
        self.pfc_mask_way = pfc_mask_way
        self.pfc_crop_length = int(pfc_crop_length)
        self.min_timepoints = int(min_timepoints)
        self.atlas_name = atlas_name
        self.roi_names = list(roi_names) if roi_names is not None else None
        check_fc_settings(self)  # the config's own rule

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """``FeatureExtractionMixin.from_pretrained``, then: when the folder (or Hub repo) also holds a BrainMass
        ``config.json``, every setting its ``preprocessor_config.json`` repeats must equal the config's, else a
        ``ValueError`` names both values (the config owns them). ``AutoFeatureExtractor`` reads only
        ``preprocessor_config.json`` (it builds the extractor with ``from_dict``); the models' ``from_pretrained``
        runs the same check, so loading the model and its extractor from a folder that disagrees fails either way."""
        # An override because transformers has no public post-load hook that sees the source folder (from_dict gets
        # the dict alone); tests/test_settings_owner.py fails if the framework's from_pretrained changes under it.
        loaded = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        extractor = loaded[0] if isinstance(loaded, tuple) else loaded
        config = read_json_beside(pretrained_model_name_or_path, "config.json", kwargs)
        if config is not None and config.get("model_type") == BrainMassConfig.model_type:
            check_preprocessor_agrees(config, extractor.to_dict(), str(pretrained_model_name_or_path))
        return loaded

    @classmethod
    def from_config(cls, config: BrainMassConfig) -> "BrainMassFeatureExtractor":
        """The feature extractor that matches a model config."""
        fc_settings = {name: getattr(config, name) for name in FC_SETTING_NAMES}
        return cls(num_rois=config.num_rois, atlas_name=config.atlas_name, roi_names=config.roi_names, **fc_settings)

    def validate(
        self, time_series: Sequence[np.ndarray], subject_ids: Sequence[str] | None = None, drop: bool = True
    ) -> list[np.ndarray]:
        """Checks scans before any computation and returns them as float32 ``(T_i, R)`` arrays.

        Raises one :class:`~brainmass_hf.validation.BrainMassDataError` (a ``ValueError``) naming every bad scan
        and the fix. ``drop``: the scans feed pFC views, so each needs ``connectivity.min_scan_length(self)`` time
        points (the length whose view still keeps ``min_timepoints``); otherwise ``min_timepoints``.
        """
        return validate_time_series(
            time_series, subject_ids, num_rois=self.num_rois, min_timepoints=min_scan_length(self, pfc=drop),
            # constant ROIs were reported when the data was loaded; repeating it for every batch is noise
            warn_constant_rois=False,
        )

    def __call__(
        self,
        time_series,
        view: str = "full",
        subject_ids: Sequence[str] | None = None,
        generator: torch.Generator | None = None,
        return_tensors: str | None = "pt",
        validate: bool = True,
        **kwargs,
    ) -> BatchFeature:
        """
        Args:
            time_series: one scan ``(T, R)``, a list of scans ``(T_i, R)`` (lengths may differ), or a padded
                array ``(N, T, R)``.
            view: ``"full"`` → ``connectivity`` ``(N, R, R)`` on all time points; ``"pfc"`` → one pFC view;
                ``"time_series"`` → padded ``time_series`` ``(N, T_max, R)`` + ``time_mask`` ``(N, T_max)`` for the
                model to compute FC on its device.
            subject_ids: names used in error messages.
            generator: ``torch.Generator`` for reproducible pFC views.
        """
        if view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}; got {view!r}.")
        if isinstance(time_series, (np.ndarray, torch.Tensor)) and time_series.ndim == 2:
            time_series = [time_series]
        elif isinstance(time_series, (np.ndarray, torch.Tensor)) and time_series.ndim == 3:
            time_series = list(time_series)
        # no dtype here: a cast would drop a complex part or turn values beyond float32 into inf unseen
        scans = [_to_numpy(ts) if isinstance(ts, torch.Tensor) else ts for ts in time_series]
        if validate:
            scans = self.validate(scans, subject_ids, drop=view != "full")
        else:
            scans = [np.asarray(ts, dtype=np.float32) for ts in scans]
        padded, time_mask = pad_time_series(scans)
        if view == "time_series":
            data = {"time_series": padded, "time_mask": time_mask}
        elif view == "full":
            data = {"connectivity": connectivity_view(padded, time_mask, settings=self, pfc=False)}
        else:
            data = {"connectivity": self.pseudo_fc(padded, time_mask, generator)}
        return BatchFeature(data=data, tensor_type=return_tensors)

    def pseudo_fc(self, padded: torch.Tensor, time_mask: torch.Tensor, generator=None) -> torch.Tensor:
        """One pFC view ``(N, R, R)`` of a padded batch with this extractor's settings."""
        return connectivity_view(padded, time_mask, settings=self, pfc=True, generator=generator)

