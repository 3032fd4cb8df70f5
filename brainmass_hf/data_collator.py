"""Data collators for the ``Trainer``: rows with ``time_series`` of any length → model inputs.

Where FC is computed (measured with ``benchmarks/collator_vs_device.py``): by default the collators only validate
and pad, and the model computes the pFC views on its own device (``compute_fc_on="model"``), because FC is two
batched matmuls that an accelerator does alongside the step, while the collator runs in the data loader's CPU
process. Measured on this project's 2-core CPU machine (torch 2.13, 1 thread, other jobs running; batch 64 × 168
time points × 116 ROIs, two views): Ledoit-Wolf 48 ms in the collator vs 6 ms padding + 77 ms in the model on the
CPU; Pearson 45 ms vs 8 + 41 ms. On a CPU-only run the collator placement is as fast or faster and can use
DataLoader workers (``compute_fc_on="collator"``); on a GPU the device placement takes the CPU out of the loop
(no GPU was lent to measure that).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .processing_brainmass import BrainMassFeatureExtractor

__all__ = ["DataCollatorForPseudoFC", "DataCollatorForConnectomeClassification"]

_PLACES = ("model", "collator")


def _check_place(compute_fc_on: str) -> None:
    if compute_fc_on not in _PLACES:
        raise ValueError(f"compute_fc_on must be one of {_PLACES}; got {compute_fc_on!r}.")


def _scans_and_ids(features: list[dict]) -> tuple[list, list[str] | None]:
    """The rows' scans, as given, and their ids for error messages. No dtype cast here: the feature extractor
    validates the raw values (:func:`brainmass_hf.validation.validate_time_series`: complex, beyond float32, NaN,
    too short, wrong R) before it casts, so each bad scan is named instead of silently altered."""
    if not features or "time_series" not in features[0]:
        columns = sorted(features[0]) if features else []
        raise ValueError(
            f"Each row must have a 'time_series' entry (time × ROI); the rows have {columns}. Rename the scan "
            "column to 'time_series' (dataset.rename_column)."
        )
    scans = [f["time_series"] for f in features]
    ids = [str(f["subject_id"]) for f in features] if "subject_id" in features[0] else None
    return scans, ids


@dataclass
class DataCollatorForPseudoFC:
    """Rows ``{"time_series": (T_i, R), "subject_id": ...}`` → pretraining inputs for two pFC views.

    ``compute_fc_on="model"`` (default) returns ``time_series`` ``(B, T_max, R)`` and ``time_mask`` ``(B, T_max)``;
    :class:`~brainmass_hf.BrainMassForPreTraining` draws the two views on its device. ``"collator"`` returns
    ``connectivity_view1`` and ``connectivity_view2`` ``(B, R, R)``.
    """

    feature_extractor: BrainMassFeatureExtractor
    compute_fc_on: str = "model"
    generator: torch.Generator | None = None

    def __post_init__(self):
        _check_place(self.compute_fc_on)

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        scans, ids = _scans_and_ids(features)
        batch = self.feature_extractor(scans, view="time_series", subject_ids=ids)
        if self.compute_fc_on == "model":
            return dict(batch)
        view1, view2 = self.feature_extractor.pseudo_fc_views(batch["time_series"], batch["time_mask"], self.generator)
        return {"connectivity_view1": view1, "connectivity_view2": view2}


@dataclass
class DataCollatorForConnectomeClassification:
    """Rows with ``time_series`` and ``label`` (or ``labels``) → classification inputs.

    ``compute_fc_on="model"`` (default): ``time_series`` + ``time_mask`` + ``labels``; the model uses one pFC view
    per scan in training mode and the full FC in eval mode (the authors' protocol). ``"collator"``:
    ``connectivity`` of the given ``view`` (``"full"`` or ``"pfc"``) + ``labels``.
    """

    feature_extractor: BrainMassFeatureExtractor
    compute_fc_on: str = "model"
    view: str = "full"
    label_column: str = "label"
    generator: torch.Generator | None = None

    def __post_init__(self):
        _check_place(self.compute_fc_on)

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        scans, ids = _scans_and_ids(features)
        if self.compute_fc_on == "model":
            batch = dict(self.feature_extractor(scans, view="time_series", subject_ids=ids))
        else:
            batch = dict(self.feature_extractor(scans, view=self.view, subject_ids=ids, generator=self.generator))
        key = "labels" if "labels" in features[0] else self.label_column
        if key in features[0]:
            labels = np.asarray([f[key] for f in features])
            if np.issubdtype(labels.dtype, np.floating):
                batch["labels"] = torch.as_tensor(labels, dtype=torch.float32)
            else:
                batch["labels"] = torch.as_tensor(labels.astype(np.int64))
        return batch
