"""Data collators for the ``Trainer``: rows with ``time_series`` of any length → model inputs, with every random
choice of a step drawn here.

The collators own the randomness (as ``transformers.DataCollatorForLanguageModeling`` picks the masked tokens): which
time points each pFC view keeps and which ROIs the masked-ROI objectives hide are drawn from the collator's
``generator`` and handed to the model as tensors, so the model is a pure function of the batch (dropout aside). A
step is then reproducible from its batch, and resuming needs only the data loader's state (the pretraining trainer
seeds each batch's draws from the run seed, the epoch and the batch's row indices; see ``training.py``).

Where FC is computed (``benchmarks/collator_vs_device.py``; ``benchmarks/results/cpu_collator_vs_device.md``): by
default the collators validate, pad and draw, and the model computes FC and the pFC views from ``time_series`` + the
drawn masks on its own device (``compute_fc_on="model"``), because FC is a few batched matmuls that an
accelerator does alongside the step, while the collator runs in the data loader's CPU process. Measured on this
project's 2-core CPU machine (AMD EPYC, torch 2.13, 1 thread, load average about 7 from other jobs; batch 64 × 168
time points × 116 ROIs, two views): Ledoit-Wolf 33 ms in the collator vs 6 ms padding and drawing + 24 ms in the
model on the CPU; Pearson 26 ms vs 7 + 18 ms. On a CPU-only run the two placements cost about the same and the
collator one can use DataLoader workers (``compute_fc_on="collator"``); on a GPU the device placement takes the FC
off the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .configuration_brainmass import BrainMassConfig
from .connectivity import connectivity_view, connectivity_views, pad_time_series, pseudo_fc_time_masks
from .processing_brainmass import BrainMassFeatureExtractor

__all__ = [
    "DataCollatorForPseudoFC",
    "DataCollatorForConnectomeClassification",
    "draw_pretraining_choices",
    "random_masked_roi_indices",
    "random_mixup_choices",
]

_PLACES = ("model", "collator")
_CLASSIFICATION_VIEWS = ("pfc", "full")


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}; got {value!r}.")


def random_masked_roi_indices(
    batch_size: int, num_rois: int, num_masked: int, device=None, generator: torch.Generator | None = None
) -> torch.LongTensor:
    """``num_masked`` distinct ROIs per scan, drawn uniformly: ``(batch_size, num_masked)``. One call for the batch;
    both masked-ROI objectives draw through it."""
    scores = torch.rand(batch_size, num_rois, device=device, generator=generator)
    return scores.topk(num_masked, dim=1).indices


def random_mixup_choices(batch_size: int, alpha: float, device=None,
                         generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """FC mixup partners and weights (``config.fc_mixup_alpha``): ``mixup_permutation`` ``(batch_size,)`` long (scan
    ``i`` is mixed with scan ``permutation[i]``) and ``mixup_lambdas`` ``(batch_size,)`` float32, ``Beta(alpha,
    alpha)`` draws. The Beta draws come from a numpy generator seeded by one draw of ``generator``, so the batch's
    one generator decides everything."""
    permutation = torch.randperm(batch_size, generator=generator, device="cpu")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device="cpu"))
    lambdas = np.random.default_rng(seed).beta(alpha, alpha, size=batch_size)
    return {"mixup_permutation": permutation.to(device),
            "mixup_lambdas": torch.as_tensor(lambdas, dtype=torch.float32, device=device)}


def draw_pretraining_choices(time_mask: torch.Tensor, settings, generator: torch.Generator | None = None, *,
                             num_rois: int | None = None, mrm_num_masked: int | None = None,
                             mrc_num_masked: int | None = None,
                             fc_mixup_alpha: float | None = None) -> dict[str, torch.Tensor]:
    """Every random choice of one pretraining step, for a padded batch (what :class:`DataCollatorForPseudoFC` puts in
    its batches; call it yourself to feed :class:`~brainmass_hf.BrainMassForPreTraining` a batch you built).

    Args:
        time_mask: bool ``(batch_size, num_timepoints)``, the valid points of each scan.
        settings: a ``BrainMassConfig`` (or anything with its ``pfc_*`` fields; then pass the counts below).
        generator: the ``torch.Generator`` drawn from (the global RNG when None).
        num_rois, mrm_num_masked, mrc_num_masked, fc_mixup_alpha: default to ``settings``' fields of those names
            (``fc_mixup_alpha``: 0 when ``settings`` has none).
    Returns:
        ``view_time_masks`` bool ``(batch_size, 2, num_timepoints)`` (the points each pFC view keeps, e.g.
        ``int(pfc_drop_ratio * T)`` of a scan's ``T`` valid points dropped per view, uniformly, not contiguous),
        ``mrm_masked_roi_indices`` ``(batch_size, mrm_num_masked)`` and ``mrc_masked_roi_indices``
        ``(batch_size, mrc_num_masked)`` (distinct ROIs per scan), drawn in that order; with ``fc_mixup_alpha``
        above 0, then ``mixup_permutation`` and ``mixup_lambdas`` (:func:`random_mixup_choices`).
    """
    time_mask = torch.as_tensor(time_mask).bool()
    batch, device = time_mask.shape[0], time_mask.device
    r = num_rois or settings.num_rois
    mrm = mrm_num_masked or settings.mrm_num_masked
    mrc = mrc_num_masked or settings.mrc_num_masked
    alpha = getattr(settings, "fc_mixup_alpha", 0.0) if fc_mixup_alpha is None else fc_mixup_alpha
    choices = {
        "view_time_masks": pseudo_fc_time_masks(time_mask, settings=settings, num_views=2, generator=generator),
        "mrm_masked_roi_indices": random_masked_roi_indices(batch, r, mrm, device, generator),
        "mrc_masked_roi_indices": random_masked_roi_indices(batch, r, mrc, device, generator),
    }
    if alpha > 0:
        choices.update(random_mixup_choices(batch, alpha, device, generator))
    return choices


def _padded_scans(feature_extractor: BrainMassFeatureExtractor, features: list[dict], pfc: bool):
    """The rows' scans validated (a pFC view needs ``min_scan_length(pfc=True)`` points; the full FC fewer) and
    padded: ``(time_series (B, T_max, R) float32, time_mask (B, T_max) bool)``. No dtype cast before the check: the
    feature extractor validates the raw values (:func:`brainmass_hf.validation.validate_time_series`: complex, beyond
    float32, NaN, too short, wrong R) before it casts, so each bad scan is named instead of silently altered."""
    if not features or "time_series" not in features[0]:
        columns = sorted(features[0]) if features else []
        raise ValueError(
            f"Each row must have a 'time_series' entry (time × ROI); the rows have {columns}. Rename the scan "
            "column to 'time_series' (dataset.rename_column)."
        )
    ids = [str(f["subject_id"]) for f in features] if "subject_id" in features[0] else None
    scans = feature_extractor.validate([f["time_series"] for f in features], ids, drop=pfc)
    return pad_time_series(scans)


@dataclass
class DataCollatorForPseudoFC:
    """Rows ``{"time_series": (T_i, R), "subject_id": ...}`` → a pretraining batch with all its random choices.

    Every batch holds ``mrm_masked_roi_indices`` ``(B, mrm_num_masked)`` and ``mrc_masked_roi_indices``
    ``(B, mrc_num_masked)``, and:

    * ``compute_fc_on="model"`` (default): ``time_series`` ``(B, T_max, R)``, ``time_mask`` ``(B, T_max)`` and
      ``view_time_masks`` ``(B, 2, T_max)`` (the points each pFC view keeps);
      :class:`~brainmass_hf.BrainMassForPreTraining` computes the two views from them on its device.
    * ``"collator"``: ``connectivity_view1`` and ``connectivity_view2`` ``(B, R, R)``, computed here from the same
      draws.

    Args:
        feature_extractor: validates and pads; its pFC settings draw the views. Build it from the model config
            (``BrainMassFeatureExtractor.from_config``), or build the collator with :meth:`from_config`.
        generator: ``torch.Generator`` for the draws (:func:`draw_pretraining_choices`); None draws from the global
            RNG (seeded per DataLoader worker by torch). ``BrainMassPretrainingTrainer`` seeds each batch itself.
        mrm_num_masked / mrc_num_masked (defaults 5 / 10): ROIs masked per scan; must equal the model config's
            (the model checks the shapes).
        fc_mixup_alpha (default 0): the model config's; above 0 the batches also hold ``mixup_permutation`` and
            ``mixup_lambdas`` ``(B,)``.
    """

    feature_extractor: BrainMassFeatureExtractor
    compute_fc_on: str = "model"
    generator: torch.Generator | None = None
    mrm_num_masked: int = 5
    mrc_num_masked: int = 10
    fc_mixup_alpha: float = 0.0

    def __post_init__(self):
        _check_choice("compute_fc_on", self.compute_fc_on, _PLACES)
        if not 0.0 <= self.fc_mixup_alpha < float("inf"):
            raise ValueError(f"fc_mixup_alpha must be a finite number >= 0; got {self.fc_mixup_alpha}.")
        for name in ("mrm_num_masked", "mrc_num_masked"):
            if not 1 <= getattr(self, name) <= self.feature_extractor.num_rois:
                raise ValueError(f"{name}={getattr(self, name)} must be between 1 and the feature extractor's "
                                 f"num_rois={self.feature_extractor.num_rois}.")

    @classmethod
    def from_config(cls, config: BrainMassConfig, **kwargs) -> "DataCollatorForPseudoFC":
        """The collator that draws what a model with ``config`` expects (feature extractor and masked-ROI counts)."""
        return cls(BrainMassFeatureExtractor.from_config(config), mrm_num_masked=config.mrm_num_masked,
                   mrc_num_masked=config.mrc_num_masked, fc_mixup_alpha=config.fc_mixup_alpha, **kwargs)

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        time_series, time_mask = _padded_scans(self.feature_extractor, features, pfc=True)
        fe = self.feature_extractor
        choices = draw_pretraining_choices(time_mask, fe, self.generator, num_rois=fe.num_rois,
                                           mrm_num_masked=self.mrm_num_masked, mrc_num_masked=self.mrc_num_masked,
                                           fc_mixup_alpha=self.fc_mixup_alpha)
        if self.compute_fc_on == "model":
            return {"time_series": time_series, "time_mask": time_mask, **choices}
        views = connectivity_views(time_series, time_mask, settings=fe, view_time_masks=choices.pop("view_time_masks"))
        return {"connectivity_view1": views[0], "connectivity_view2": views[1], **choices}


@dataclass
class DataCollatorForConnectomeClassification:
    """Rows with ``time_series`` and ``label`` (or ``labels``) → classification inputs + ``labels``.

    ``view="pfc"`` (default, the authors' fine-tuning input): one pFC view per scan, drawn here from ``generator``;
    ``"full"``: all valid time points (evaluation: ``BrainMassTrainer`` evaluates and predicts with ``"full"``).
    ``compute_fc_on="model"`` (default): ``time_series`` ``(B, T_max, R)`` + ``time_mask`` ``(B, T_max)``, the time
    points FC uses (a pFC view's kept points for ``"pfc"``); the model computes FC on its device. ``"collator"``:
    ``connectivity`` ``(B, R, R)`` of that view.
    """

    feature_extractor: BrainMassFeatureExtractor
    compute_fc_on: str = "model"
    view: str = "pfc"
    label_column: str = "label"
    generator: torch.Generator | None = None

    def __post_init__(self):
        _check_choice("compute_fc_on", self.compute_fc_on, _PLACES)
        _check_choice("view", self.view, _CLASSIFICATION_VIEWS)

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        pfc = self.view == "pfc"
        time_series, time_mask = _padded_scans(self.feature_extractor, features, pfc=pfc)
        if pfc:
            time_mask = pseudo_fc_time_masks(time_mask, settings=self.feature_extractor, num_views=1,
                                             generator=self.generator)[:, 0]
        if self.compute_fc_on == "model":
            batch = {"time_series": time_series, "time_mask": time_mask}
        else:
            batch = {"connectivity": connectivity_view(time_series, time_mask, settings=self.feature_extractor,
                                                       pfc=False)}
        key = "labels" if "labels" in features[0] else self.label_column
        if key in features[0]:
            labels = np.asarray([f[key] for f in features])
            if np.issubdtype(labels.dtype, np.floating):
                batch["labels"] = torch.as_tensor(labels, dtype=torch.float32)
            else:
                batch["labels"] = torch.as_tensor(labels.astype(np.int64))
        return batch
