"""Pretraining and fine-tuning with the Hugging Face ``Trainer``.

* :class:`BrainMassTrainer` (fine-tuning, and the base of the pretraining trainer) never trains on a batch of one
  scan (BatchNorm cannot), resumes from the last *complete* checkpoint, scales the loss correctly under gradient
  accumulation, and converts BatchNorm to SyncBatchNorm on request when several processes train.
* :class:`BrainMassPretrainingTrainer` owns the BYOL recipe: the EMA target update after every optimizer step
  (:class:`EMATargetCallback`), clipping by value (:class:`GradientValueClipCallback`), loss-part and
  representation-health logging (:data:`HEALTH_METRICS`, with a one-time collapse warning), and the
  authors' warm-up: epoch ``i`` of the first ``warmup_epochs`` runs at ``i / warmup_epochs · lr`` (1-based), then
  the rate stays constant. It works the same in a user's own ``Trainer`` script as through :func:`pretrain`.
* :func:`pretrain` and :func:`finetune` are the library entry points; they validate the whole dataset first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import warnings
from dataclasses import dataclass, field

import datasets
import numpy as np
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.modeling_utils import unwrap_model
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, SchedulerType, has_length

from .configuration_brainmass import BrainMassConfig, check_preprocessor_agrees
from .connectivity import scans_connectivity, spd_geometric_mean
from .data import time_series_list, validate_dataset, with_class_labels
from .data_collator import DataCollatorForConnectomeClassification, DataCollatorForPseudoFC
from .metrics import classification_metrics
from .modeling_brainmass import BrainMassForConnectomeClassification, BrainMassForPreTraining, BrainMassModel
from .output_folder import output_folder_lock
from .processing_brainmass import BrainMassFeatureExtractor

logger = logging.getLogger(__name__)

__all__ = [
    "EMATargetCallback",
    "GradientValueClipCallback",
    "BrainMassPretrainingArguments",
    "BrainMassTrainer",
    "BrainMassPretrainingTrainer",
    "epoch_warmup_lambda",
    "last_complete_checkpoint",
    "pretrain",
    "fit_tangent_reference",
    "finetune",
    "LOSS_PARTS",
    "HEALTH_METRICS",
    "effective_rank",
    "AUTHORS_WARMUP_EPOCHS",
]

LOSS_PARTS = ("lra_loss", "mrm_loss", "mrc_loss", "mrc_accuracy")
# Representation health of the online readout (BrainMassPreTrainingOutput): averaged over the steps since the last
# log entry like the loss parts; the effective rank over the last _RANK_BATCHES of them (see effective_rank).
HEALTH_METRICS = ("feature_std", "feature_effective_rank", "online_target_cosine")
_RANK_BATCHES = 32
# Collapse rule: feature_std below COLLAPSE_STD_FRACTION / sqrt(D) in COLLAPSE_PATIENCE consecutive log entries. Spread
# features give about 0.3-0.7 / sqrt(D) (0.59 at initialisation, tiny preset, 32 devfmri scans); collapsed ones 0.
COLLAPSE_STD_FRACTION, COLLAPSE_PATIENCE = 0.1, 3
AUTHORS_WARMUP_EPOCHS = 10.0
_WEIGHT_FILES = (
    "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"
)
_CHECKPOINT = re.compile(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)")
# Keys the trainer adds to each row so the collator can seed a batch's draws (see _IndexedRows).
_ROW_INDEX, _ROW_EPOCH = "_brainmass_row_index", "_brainmass_row_epoch"


class EMATargetCallback(TrainerCallback):
    """Calls ``model.update_target()`` after every optimizer step (``on_step_end`` fires once per optimizer
    step, not per micro-batch, under gradient accumulation)."""

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if model is not None:
            unwrap_model(model).update_target()


class GradientValueClipCallback(TrainerCallback):
    """Clamps every gradient to ``[-clip_value, clip_value]`` just before the optimizer step."""

    def __init__(self, clip_value: float = 1.0):
        self.clip_value = clip_value

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if model is not None and self.clip_value:
            torch.nn.utils.clip_grad_value_([p for p in model.parameters() if p.grad is not None], self.clip_value)


@dataclass
class BrainMassPretrainingArguments(TrainingArguments):
    """``TrainingArguments`` with the authors' pretraining defaults (SPEC §4): AdamW, lr 3e-4, weight decay
    5e-5, 10 warm-up epochs then constant, gradient clipping by value at 1, batch 64.

    The epoch warm-up applies only while the schedule is the authors' (``lr_scheduler_type="constant"``,
    ``warmup_steps=0``): set either and the ``Trainer``'s own scheduler runs; setting ``warmup_epochs > 0`` as well
    is a conflict and raises.
    """

    learning_rate: float = 3e-4
    weight_decay: float = 5e-5
    per_device_train_batch_size: int = 64
    num_train_epochs: float = 100.0
    lr_scheduler_type: str = "constant"
    max_grad_norm: float = 0.0
    logging_steps: float = 10
    save_strategy: str = "epoch"
    save_total_limit: int | None = 2
    remove_unused_columns: bool = False
    # None first, as in TrainingArguments: HfArgumentParser only parses `None | X | ...` unions in this order
    report_to: None | str | list[str] = "none"
    warmup_epochs: float | None = field(
        default=None,
        metadata={"help": "Epoch i of these runs at i/warmup_epochs·lr. Default: 10 (the authors') when "
                  "lr_scheduler_type is 'constant' and warmup_steps is 0, else none."},
    )
    clip_grad_value: float = field(default=1.0, metadata={"help": "Clip gradients by value (0 disables)."})
    compute_fc_on: str = field(default="model", metadata={"help": "'model' (on its device) or 'collator'."})
    sync_batchnorm: bool = field(
        default=False, metadata={"help": "SyncBatchNorm in the heads when several processes train (GPU only)."}
    )


def epoch_warmup_lambda(steps_per_epoch: int, warmup_epochs: float):
    """LR factor per optimizer step: ``min(1, (epoch + 1) / warmup_epochs)``, ``epoch = step // steps_per_epoch``."""

    def factor(step: int) -> float:
        if warmup_epochs <= 0:
            return 1.0
        return min(1.0, (step // max(steps_per_epoch, 1) + 1) / warmup_epochs)

    return factor


def _epoch_warmup(args) -> float:
    """The warm-up epochs to apply: never on top of a schedule the user chose (see the arguments' docstring)."""
    warmup_epochs = getattr(args, "warmup_epochs", None) if isinstance(args, BrainMassPretrainingArguments) else 0.0
    own_schedule = SchedulerType(args.lr_scheduler_type) != SchedulerType.CONSTANT or args.warmup_steps > 0
    if warmup_epochs is None:
        return 0.0 if own_schedule else AUTHORS_WARMUP_EPOCHS
    if warmup_epochs > 0 and own_schedule:
        raise ValueError(
            f"warmup_epochs={warmup_epochs} conflicts with lr_scheduler_type="
            f"{SchedulerType(args.lr_scheduler_type).value!r} / warmup_steps={args.warmup_steps}: set warmup_epochs=0 "
            "to use the Trainer's scheduler, or keep lr_scheduler_type='constant' and warmup_steps=0 for the authors' "
            "epoch warm-up."
        )
    return float(warmup_epochs)


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The highest ``checkpoint-N`` in ``output_dir`` holding model weights and ``trainer_state.json`` (which the
    ``Trainer`` writes last, so a run killed while saving leaves a folder without it); None when there is none."""
    found = []
    for name in os.listdir(output_dir) if os.path.isdir(output_dir) else []:
        folder, match = os.path.join(output_dir, name), _CHECKPOINT.fullmatch(name)
        if (
            match
            and os.path.isfile(os.path.join(folder, "trainer_state.json"))
            and any(os.path.isfile(os.path.join(folder, f)) for f in _WEIGHT_FILES)
        ):
            found.append((int(match.group(1)), folder))
    return max(found)[1] if found else None


def effective_rank(features: torch.Tensor) -> torch.Tensor:
    """Effective rank (Roy & Vetterli 2007) of ``features`` ``(batch, D)`` (or ``(..., batch, D)``): ``exp`` of the
    entropy of the singular values normalised to sum 1. 1 when every row is the same vector (or zero), up to
    ``min(batch, D)`` for spread-out rows. Computed by an SVD, which on CUDA waits for the device: call it at log
    time, not in the step."""
    singular_values = torch.linalg.svdvals(features.float())
    p = singular_values / singular_values.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    return torch.exp(-torch.special.xlogy(p, p).sum(dim=-1))


def _numpy_rows(dataset):
    """Rows as numpy arrays (variable-length ``time_series`` included), other columns as they are."""
    if isinstance(dataset, datasets.Dataset):
        return dataset.with_format("numpy", columns=["time_series"], output_all_columns=True)
    if isinstance(dataset, datasets.IterableDataset):
        return dataset.with_format("numpy")
    return dataset


class _StreamWithoutLoneLastRow(torch.utils.data.IterableDataset):
    """A stream that drops its last row when that row would be a batch of one (a stream's length is only known at
    its end, so one row is held back). Each data-loader worker batches its own shard, so the count is per worker."""

    def __init__(self, rows, batch_size: int):
        self.rows, self.batch_size = rows, batch_size

    def set_epoch(self, epoch: int):  # a shuffled datasets stream reshuffles per epoch
        if hasattr(self.rows, "set_epoch"):
            self.rows.set_epoch(epoch)

    def __iter__(self):
        count, held = 0, None
        for row in self.rows:
            if held is not None:
                yield held
            held, count = row, count + 1
        if held is not None and count % self.batch_size != 1:
            yield held


class BrainMassTrainer(Trainer):
    """``Trainer`` for BrainMass models (``finetune`` uses it as is).

    Beyond the ``Trainer``:

    * ``datasets`` rows are read as numpy (train, eval and predict); no memory pinning on CPU.
    * A last training batch of one scan is dropped on one process, from a map-style dataset or a stream: BatchNorm
      cannot train on it. It is a different scan each shuffled epoch; with several processes accelerate completes
      the last batch from the epoch's start instead.
    * The loss is divided by the accumulation steps: BrainMass losses are batch means, whatever
      ``forward(**kwargs)`` suggests to the ``Trainer``.
    * ``train(resume_from_checkpoint=True)`` takes the last complete checkpoint (:func:`last_complete_checkpoint`).
    * ``sync_batchnorm=True`` (or ``args.sync_batchnorm``) converts BatchNorm to ``torch.nn.SyncBatchNorm`` when the
      world size is above 1, as the authors do (GPU only in torch).
    * With a BrainMass collator that has no ``generator`` of its own and a dataset with a length, each training
      batch's random choices (pFC views, masked ROIs) are drawn from a generator seeded by ``(args.seed, epoch, the
      batch's row indices)``: a step is a function of the sampler's state, so resuming from a checkpoint is exact
      whatever the data loader had prefetched, and DataLoader workers never repeat each other's draws.
    * Evaluation and prediction batches use the full FC: a ``DataCollatorForConnectomeClassification(view="pfc")``
      is replaced there by its ``view="full"`` twin (the authors' fine-tuning protocol).
    * ``push_to_hub`` uploads the BrainMass model card (:meth:`create_model_card`), the remote code and the
      feature-extraction pipeline, not the ``Trainer``'s generic card. ``base_checkpoint`` (a folder or Hub id;
      ``finetune`` sets it) gives the card its licence and ``base_model``; ``card_facts`` (a dict, see
      :func:`brainmass_hf.hub.render_model_card`) adds anything else the card cannot read from the model.
    """

    base_checkpoint: str | None = None
    card_facts: dict | None = None

    def __init__(self, model=None, args=None, data_collator=None, train_dataset=None, eval_dataset=None, *,
                 sync_batchnorm: bool | None = None, **kwargs):
        super().__init__(
            model=model, args=args, data_collator=data_collator, train_dataset=_numpy_rows(train_dataset),
            eval_dataset=_numpy_rows(eval_dataset) if eval_dataset is not None else None, **kwargs,
        )
        self.model_accepts_loss_kwargs = False
        if self.args.device.type == "cpu":  # pinning serves host-to-GPU copies; on CPU torch only warns per loader
            self.args.dataloader_pin_memory = False
        if self.train_dataset is not None and not has_length(self.train_dataset) and self.args.world_size == 1:
            self.train_dataset = _StreamWithoutLoneLastRow(self.train_dataset, self._train_batch_size)
        if _draws_in_collator(self.data_collator) and has_length(self.train_dataset):
            self.train_dataset = _IndexedRows(self.train_dataset)
            self.data_collator = _BatchSeededCollator(self.data_collator, self.args.seed)
            self.add_callback(_EpochToRows(self.train_dataset))
        if sync_batchnorm is None:
            sync_batchnorm = getattr(self.args, "sync_batchnorm", False)
        self.uses_sync_batchnorm = bool(sync_batchnorm) and self.args.world_size > 1
        if self.uses_sync_batchnorm:  # in place: the children are swapped, the model object stays
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)

    def get_eval_dataloader(self, eval_dataset=None):
        with _full_view_collator(self):
            return super().get_eval_dataloader(_numpy_rows(eval_dataset) if eval_dataset is not None else None)

    def get_test_dataloader(self, test_dataset):
        with _full_view_collator(self):
            return super().get_test_dataloader(_numpy_rows(test_dataset))

    def _last_batch_is_one_scan(self) -> bool:
        dataset = self.train_dataset
        if self.args.dataloader_drop_last or self.args.world_size > 1 or not has_length(dataset):
            return False
        return len(dataset) % self._train_batch_size == 1

    def get_train_dataloader(self):
        if not self._last_batch_is_one_scan():
            return super().get_train_dataloader()
        self.args.dataloader_drop_last = True  # only for this loader; the user's args are restored below
        try:
            return super().get_train_dataloader()
        finally:
            self.args.dataloader_drop_last = False

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(
                    f"No complete checkpoint (checkpoint-N with trainer_state.json and model weights) in "
                    f"{self.args.output_dir!r}; pass a checkpoint folder, or resume_from_checkpoint=None to start anew."
                )
        if self.uses_sync_batchnorm and self.args.device.type == "cpu":
            raise ValueError("SyncBatchNorm runs on GPUs only (torch); on CPU train with sync_batchnorm=False.")
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def create_model_card(self, license: str | None = None, tags=None, finetuned_from: str | None = None, **kwargs):
        """The public hook ``Trainer.push_to_hub`` calls after saving ``args.output_dir``: writes the BrainMass card
        there (and completes the folder with the code, ``auto_map`` and the pipeline), so the upload that follows
        carries it. ``license``/``finetuned_from``/``tags`` as in the ``Trainer``; the other keywords of its card
        (language, tasks, dataset names) have no place on a BrainMass card."""
        from .hub import complete_checkpoint_folder, fine_tuned_card_facts

        if not self.is_world_process_zero():
            return
        base = fine_tuned_card_facts(self.base_checkpoint) if self.base_checkpoint else {}
        facts = {**base, **(self.card_facts or {})}
        facts["license"] = license or facts.get("license")
        facts["base_model"] = finetuned_from or facts.get("base_model")
        facts["tags"] = [*facts.get("tags", []), *([tags] if isinstance(tags, str) else tags or [])]
        complete_checkpoint_folder(self.args.output_dir, facts=facts, repo_id=self.hub_model_id)


class _IndexedRows(torch.utils.data.Dataset):
    """Map-style rows that carry their index and the epoch, so :class:`_BatchSeededCollator` can draw a batch's
    random choices from ``(seed, epoch, row indices)``. The data loader prefetches the next batch before a checkpoint
    saves the RNG state, so draws from a global or long-lived generator make resume inexact; these do not."""

    def __init__(self, rows):
        self.rows, self.epoch = rows, 0

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return {**self.rows[int(index)], _ROW_INDEX: int(index), _ROW_EPOCH: self.epoch}


def _draws_in_collator(collator) -> bool:
    """A BrainMass collator that would draw from the global RNG (no generator of its own)."""
    return isinstance(collator, (DataCollatorForPseudoFC, DataCollatorForConnectomeClassification)) and \
        collator.generator is None


@dataclass
class _BatchSeededCollator:
    """``collator`` with a fresh generator per batch, seeded by ``(seed, epoch, row indices)``; rows without an index
    (evaluation) go to ``collator`` as they are."""

    collator: DataCollatorForPseudoFC | DataCollatorForConnectomeClassification
    seed: int

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        if not features or _ROW_INDEX not in features[0]:
            return self.collator(features)
        entropy = [self.seed, int(features[0][_ROW_EPOCH])] + [int(f.pop(_ROW_INDEX)) for f in features]
        for f in features:
            f.pop(_ROW_EPOCH)
        seed = int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])
        return dataclasses.replace(self.collator, generator=torch.Generator().manual_seed(seed))(features)


class _EpochToRows(TrainerCallback):
    def __init__(self, rows: _IndexedRows):
        self.rows = rows

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.rows.epoch = int(state.epoch or 0)


@contextlib.contextmanager
def _full_view_collator(trainer: Trainer):
    """While building an evaluation or prediction data loader, a classification collator gives the full FC."""
    collator = trainer.data_collator
    inner = collator.collator if isinstance(collator, _BatchSeededCollator) else collator
    if isinstance(inner, DataCollatorForConnectomeClassification) and inner.view != "full":
        trainer.data_collator = dataclasses.replace(inner, view="full")
    try:
        yield
    finally:
        trainer.data_collator = collator


class BrainMassPretrainingTrainer(BrainMassTrainer):
    """``Trainer`` for :class:`~brainmass_hf.BrainMassForPreTraining`: adds the EMA and clipping callbacks itself
    (unless given), builds a :class:`DataCollatorForPseudoFC` when no collator is given, logs ``lra_loss``,
    ``mrm_loss``, ``mrc_loss`` and ``mrc_accuracy`` beside ``loss`` (in ``trainer.state.log_history``) with the
    representation health :data:`HEALTH_METRICS` (warning once on collapse: ``feature_std < COLLAPSE_STD_FRACTION /
    sqrt(D)`` in ``COLLAPSE_PATIENCE`` consecutive log entries), and applies
    the epoch warm-up of :class:`BrainMassPretrainingArguments`, with epochs counted in optimizer steps of this
    run's real data loader (world size, gradient accumulation and ``drop_last`` included)."""

    def __init__(self, model=None, args=None, data_collator=None, train_dataset=None, **kwargs):
        args = args if args is not None else BrainMassPretrainingArguments(output_dir="tmp_trainer")
        _epoch_warmup(args)  # a conflicting schedule fails here, not after the first epoch
        if data_collator is None and model is not None:
            config = unwrap_model(model).config
            processing_class = kwargs.get("processing_class")
            if isinstance(processing_class, BrainMassFeatureExtractor):  # the config owns the settings it repeats
                check_preprocessor_agrees(config.to_dict(), processing_class.to_dict(), "BrainMassPretrainingTrainer",
                                          names=("the processing_class", "the model config"))
            else:
                processing_class = BrainMassFeatureExtractor.from_config(config)
            data_collator = DataCollatorForPseudoFC(
                processing_class, getattr(args, "compute_fc_on", "model"), mrm_num_masked=config.mrm_num_masked,
                mrc_num_masked=config.mrc_num_masked, fc_mixup_alpha=config.fc_mixup_alpha,
            )
        super().__init__(model=model, args=args, data_collator=data_collator, train_dataset=train_dataset, **kwargs)
        present = {type(c) for c in self.callback_handler.callbacks}
        if EMATargetCallback not in present:
            self.add_callback(EMATargetCallback())
        if getattr(self.args, "clip_grad_value", 0) and GradientValueClipCallback not in present:
            self.add_callback(GradientValueClipCallback(self.args.clip_grad_value))
        self._part_sums: dict[str, torch.Tensor] = {}
        self._part_count = 0
        self._pooled: list[torch.Tensor] = []  # the last _RANK_BATCHES online readouts, for the effective rank
        self._collapsed_logs, self._warned_collapse = 0, False
        self._update_steps_per_epoch: int | None = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        if model.training:
            for name in (*LOSS_PARTS, "feature_std", "online_target_cosine"):
                value = getattr(outputs, name).detach().float()  # no host sync: summed on the device
                self._part_sums[name] = self._part_sums.get(name, 0.0) + value
            self._part_count += 1
            self._pooled = [*self._pooled[1 - _RANK_BATCHES:], outputs.pooled_output]
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs: dict, *args, **kwargs):
        if self._part_count and "loss" in logs:
            for name, total in self._part_sums.items():
                logs[name] = round(float(total) / self._part_count, 6)
            ranks = torch.stack([effective_rank(features) for features in self._pooled])
            logs["feature_effective_rank"] = round(float(ranks.mean()), 4)
            self._check_collapse(logs["feature_std"], self._pooled[-1].shape[-1])
            self._part_sums, self._part_count, self._pooled = {}, 0, []
        super().log(logs, *args, **kwargs)

    def _check_collapse(self, std: float, dim: int):
        self._collapsed_logs = self._collapsed_logs + 1 if std < COLLAPSE_STD_FRACTION / dim**0.5 else 0
        if self._collapsed_logs >= COLLAPSE_PATIENCE and not self._warned_collapse:
            self._warned_collapse = True
            warnings.warn(
                f"Representation collapse: feature_std (std across the batch of the L2-normalised {dim}-dim readout) "
                f"stayed below {COLLAPSE_STD_FRACTION}/sqrt({dim}) = {COLLAPSE_STD_FRACTION / dim**0.5:.2g} in "
                f"{COLLAPSE_PATIENCE} consecutive log entries (now {std:.2g}; a feature_effective_rank near 1 confirms "
                "it): every scan maps to nearly one vector. Lower the learning rate, lengthen the warm-up, or check "
                "the data.",
                stacklevel=2,
            )

    # An override of an undocumented Trainer method: there is no public hook that gives the optimizer steps per
    # epoch before the scheduler is built. It relies on the tuple's second entry being that count, and
    # create_scheduler below on the private `_created_lr_scheduler` flag; tests/test_framework_hooks.py fails if
    # either changes.
    def set_initial_training_values(self, args, dataloader):
        values = super().set_initial_training_values(args, dataloader)
        # The Trainer's own count (ceil over accumulation, per process, after drop_last) is what an epoch is.
        self._update_steps_per_epoch = values[1] if has_length(dataloader) else None
        return values

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        warmup_epochs = _epoch_warmup(self.args)
        if self.lr_scheduler is None and warmup_epochs > 0:
            if self._update_steps_per_epoch is None:
                raise ValueError(
                    "The epoch warm-up needs a dataset with a length; a streaming dataset has no epochs: set "
                    "warmup_epochs=0 (and warmup_steps=N for a warm-up over N optimizer steps)."
                )
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
                self.optimizer if optimizer is None else optimizer,
                epoch_warmup_lambda(self._update_steps_per_epoch, warmup_epochs),
            )
            self._created_lr_scheduler = True
            return self.lr_scheduler
        return super().create_scheduler(num_training_steps, optimizer)


def _first_row(dataset) -> dict:
    return dataset[0] if has_length(dataset) else next(iter(dataset))


def _check_training_data(
    dataset, config: BrainMassConfig, purpose: str, *, pfc: bool = True, label_column=None, min_scans: int = 2
):
    """Fails before training, with one message naming every bad scan, on what would otherwise crash when its
    batch comes up (hours into a run). A streaming dataset cannot be read up front: its batches are checked by
    the collator as they come."""
    if isinstance(dataset, datasets.Dataset):
        if len(dataset) < min_scans:
            raise ValueError(f"{purpose} needs at least {min_scans} scans; the dataset has {len(dataset)}.")
        validate_dataset(dataset, config, pfc=pfc, label_column=label_column)
    num_rois = np.asarray(_first_row(dataset)["time_series"]).shape[-1]
    if num_rois != config.num_rois:
        raise ValueError(
            f"The data has {num_rois} ROIs but the model expects num_rois={config.num_rois}; build the config "
            f"with num_rois={num_rois} or use data parcellated with the checkpoint's atlas."
        )


def fit_tangent_reference(model, dataset, *, batch_size: int = 64) -> torch.Tensor:
    """Fit the tangent reference point of a model with ``config.input_space="tangent"`` to ``dataset``: the
    geometric mean (:func:`brainmass_hf.connectivity.spd_geometric_mean`) of every scan's full FC with the model's FC
    settings, set on every encoder of ``model`` (:meth:`set_tangent_reference`). ``pretrain`` calls it on the
    pretraining scans when the model has no reference yet (``config.tangent_reference_scans == 0``); it is
    deterministic, so a resumed run fits the same point.

    Args:
        model: a BrainMass model (pretraining, encoder or classification) with ``input_space="tangent"``.
        dataset: a ``datasets.Dataset`` (or a list of rows) with ``time_series`` ``(T_i, R)``, already validated.
    Returns:
        the reference ``(R, R)`` float64.
    """
    if not has_length(dataset):
        raise ValueError("fit_tangent_reference needs a dataset with a length (not a stream): pass a map-style "
                         "sample of the pretraining scans, or call model.set_tangent_reference(G, num_scans) yourself.")
    scans = time_series_list(dataset) if isinstance(dataset, datasets.Dataset) else \
        [np.asarray(row["time_series"], dtype=np.float32) for row in dataset]
    reference = spd_geometric_mean(scans_connectivity(scans, settings=model.config, batch_size=batch_size))
    model.set_tangent_reference(reference, num_scans=len(scans))
    logger.info("Tangent reference fitted on %d scans (geometric mean of their FC).", len(scans))
    return reference


def pretrain(
    dataset,
    config: BrainMassConfig | None = None,
    args: BrainMassPretrainingArguments | None = None,
    *,
    model: BrainMassForPreTraining | None = None,
    resume_from_checkpoint: str | bool | None = None,
    callbacks: list | None = None,
    encoder_dir: str | None = None,
) -> BrainMassPretrainingTrainer:
    """Pretrains BrainMass on a dataset of ROI time series (the ``brainmass_hf.data`` schema).

    Args:
        dataset: ``datasets.Dataset`` with ``time_series`` ``(T_i, R)`` (and ``subject_id`` for error messages),
            or a streaming ``datasets.IterableDataset`` (then set ``args.max_steps`` and ``warmup_epochs=0``).
        config: model config (ignored when ``model`` is given). ``config.num_rois`` must equal the data's R.
        args: training arguments; defaults to the authors' settings with ``output_dir="runs/pretrain"``.
        resume_from_checkpoint: a checkpoint folder or ``True`` for the last complete one in ``args.output_dir``.
        encoder_dir: where the online encoder + feature extractor are saved at the end
            (default ``<output_dir>/encoder``); load it with ``AutoModel.from_pretrained``.
    Returns:
        The trainer after training; ``trainer.state.log_history`` holds every logged loss part.
    """
    args = args or BrainMassPretrainingArguments(output_dir="runs/pretrain")
    if model is None:
        if config is None:
            raise ValueError("pretrain needs a config or a model.")
        set_seed(args.seed)  # the initial weights follow args.seed, as with Trainer(model_init=...)
        model = BrainMassForPreTraining(config)
    _check_training_data(dataset, model.config, "Pretraining")
    if model.config.input_space == "tangent" and model.config.tangent_reference_scans == 0:
        fit_tangent_reference(model, dataset)
    feature_extractor = BrainMassFeatureExtractor.from_config(model.config)
    if args.push_to_hub:  # every revision pushed at a save gets the code, feature extractor and card (issue 11)
        from .hub import HubCodeCallback

        callbacks = [*(callbacks or []), HubCodeCallback()]
    with output_folder_lock(args.output_dir):  # a second run into this folder fails now, not with a torn checkpoint
        trainer = BrainMassPretrainingTrainer(
            model=model, args=args, train_dataset=dataset, processing_class=feature_extractor, callbacks=callbacks
        )
        trainer.train(resume_from_checkpoint=resume_from_checkpoint)
        _save_encoder(trainer, args, feature_extractor, encoder_dir or os.path.join(args.output_dir, "encoder"))
    return trainer


def _save_encoder(trainer, args, feature_extractor, encoder_dir: str) -> None:
    """The online encoder + feature extractor into ``encoder_dir`` (main process), pushed when ``args`` say so."""
    if trainer.is_world_process_zero():
        unwrap_model(trainer.model).save_encoder(encoder_dir)
        feature_extractor.save_pretrained(encoder_dir)
        if args.push_to_hub:  # the repo ends with the encoder users load, after the last checkpoint upload
            from .hub import push_encoder

            if trainer.push_in_progress is not None:
                trainer.push_in_progress.wait_until_done()
            push_encoder(
                encoder_dir, trainer.hub_model_id, revision=args.hub_revision, private=bool(args.hub_private_repo),
                commit_message="BrainMass encoder (end of pretraining)",
            )


FINETUNE_OUTPUT_DIR = "runs/finetune"  # finetune()'s default output_dir (the CLI checks it before any work)


def _class_names(dataset, label_column: str):
    feature = dataset.features.get(label_column)
    return list(feature.names) if hasattr(feature, "names") else None


def _classes_checked(train_dataset, eval_dataset, label_column: str, problem_type, num_labels):
    """Both datasets with ``label_column`` as a checked ``ClassLabel`` (the training set's classes; see
    ``data.with_class_labels``), before any model is built: one class, missing labels or case/whitespace variants
    are reported here, not after training. Regression (a float column, ``problem_type="regression"`` or
    ``num_labels=1``) and streaming datasets are passed through."""
    feature = getattr(train_dataset, "features", None) and train_dataset.features.get(label_column)
    is_score = getattr(feature, "dtype", "").startswith("float")
    if problem_type == "regression" or num_labels == 1 or is_score or not isinstance(train_dataset, datasets.Dataset):
        return train_dataset, eval_dataset
    train_dataset = with_class_labels(train_dataset, label_column)
    if isinstance(eval_dataset, datasets.Dataset) and label_column in eval_dataset.column_names:
        eval_dataset = with_class_labels(eval_dataset, label_column, _class_names(train_dataset, label_column),
                                         min_classes=1)
    return train_dataset, eval_dataset


def classification_compute_metrics(eval_pred) -> dict:
    """Accuracy, balanced accuracy and AUC from logits ``(N, K)`` through :func:`brainmass_hf.metrics
    .classification_metrics`, the one definition evaluation uses too (binary AUC on the logit difference, one-vs-rest
    macro for ``K > 2``; AUC and balanced accuracy NaN when the evaluation set holds one class)."""
    logits, labels = eval_pred.predictions, np.asarray(eval_pred.label_ids)
    logits = np.asarray(logits[0] if isinstance(logits, tuple) else logits, dtype=np.float64)
    metrics = classification_metrics(labels, logits.argmax(-1), logits, labels=np.arange(logits.shape[1]))
    return {name: metrics[name] for name in ("accuracy", "balanced_accuracy", "auc")}


def _classification_model(source, label_kwargs: dict) -> BrainMassForConnectomeClassification:
    """A fresh classifier whose encoder is loaded *strictly* from ``source``: a config, a ``BrainMassModel``, a
    ``BrainMassForPreTraining`` (its online encoder), a ``BrainMassForConnectomeClassification`` (its encoder; a new
    head), or a checkpoint folder / Hub id."""
    if isinstance(source, (BrainMassConfig, torch.nn.Module)):
        module = unwrap_model(source) if isinstance(source, torch.nn.Module) else None
        encoder = getattr(module, "brainmass", module)
        if module is not None and not isinstance(encoder, BrainMassModel):
            raise TypeError(
                f"finetune needs a BrainMass model, config or checkpoint path; got {type(source).__name__}, which has "
                "no BrainMassModel encoder."
            )
        config = source if module is None else encoder.config
        # The new head's labels come from the data, never from the source's head.
        head = ("num_labels", "id2label", "label2id", "problem_type")
        keep = {k: v for k, v in config.to_dict().items() if k not in head}
        model = BrainMassForConnectomeClassification(BrainMassConfig(**{**keep, **label_kwargs}))
        if encoder is not None:
            model.brainmass.load_state_dict(encoder.state_dict())
        return model
    # A folder or Hub id: load its encoder (strictly; the head is new either way) rather than a classifier whose head
    # transformers would then report as missing weights on every fine-tuning run.
    return _classification_model(BrainMassModel.from_pretrained(source), label_kwargs)


def finetune(
    model_name_or_path,
    train_dataset,
    eval_dataset=None,
    *,
    output_dir: str = FINETUNE_OUTPUT_DIR,
    label_column: str = "label",
    num_train_epochs: float = 20,
    learning_rate: float = 1e-4,
    per_device_train_batch_size: int = 16,
    seed: int = 42,
    num_labels: int | None = None,
    problem_type: str | None = None,
    callbacks: list | None = None,
    sync_batchnorm: bool = False,
    **training_kwargs,
) -> BrainMassTrainer:
    """Fine-tunes :class:`BrainMassForConnectomeClassification` from an encoder (or any BrainMass) checkpoint.

    Training batches use one pFC view per scan, drawn by the collator (``DataCollatorForConnectomeClassification``,
    seeded per batch from ``seed``); evaluation and prediction the full FC.

    Args:
        model_name_or_path: a checkpoint folder / Hub id, a config, or a ``BrainMassModel`` /
            ``BrainMassForPreTraining`` (its online encoder) / ``BrainMassForConnectomeClassification`` object,
            whose encoder weights are loaded strictly (every key must match).
        train_dataset, eval_dataset: ``datasets.Dataset`` with ``time_series`` and ``label_column``.
        sync_batchnorm: SyncBatchNorm in the head when several (GPU) processes train.
        training_kwargs: any other ``TrainingArguments`` field.
    Returns:
        The trained ``Trainer``; ``trainer.predict(test_dataset).predictions`` are logits ``(N, num_labels)``.
    """
    if label_column not in train_dataset.column_names:
        raise ValueError(f"The training data has no {label_column!r} column; columns: {train_dataset.column_names}.")
    train_dataset, eval_dataset = _classes_checked(train_dataset, eval_dataset, label_column, problem_type, num_labels)
    names = _class_names(train_dataset, label_column)
    if num_labels is None:
        num_labels = len(names) if names else len(np.unique(np.asarray(train_dataset[label_column])))
    label_kwargs = {"num_labels": num_labels}
    if names:
        label_kwargs.update(id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    if problem_type:
        label_kwargs["problem_type"] = problem_type
    set_seed(seed)  # the new head's initial weights follow the seed
    model = _classification_model(model_name_or_path, label_kwargs)
    classes = None if model.config.problem_type == "regression" or model.config.num_labels == 1 else label_column
    _check_training_data(train_dataset, model.config, "Fine-tuning", label_column=classes)
    if eval_dataset is not None:  # evaluation reads the full FC, so the shorter full-FC minimum applies
        _check_training_data(eval_dataset, model.config, "Evaluation", pfc=False, min_scans=1)
    feature_extractor = BrainMassFeatureExtractor.from_config(model.config)
    defaults = dict(
        output_dir=output_dir,
        num_train_epochs=num_train_epochs,
        learning_rate=learning_rate,
        per_device_train_batch_size=per_device_train_batch_size,
        per_device_eval_batch_size=max(per_device_train_batch_size, 32),
        seed=seed,
        remove_unused_columns=False,
        report_to="none",
        save_strategy="no",
        eval_strategy="epoch" if eval_dataset is not None else "no",
        logging_steps=10,
        label_names=["labels"],
    )
    args = TrainingArguments(**{**defaults, **training_kwargs})
    trainer = BrainMassTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=DataCollatorForConnectomeClassification(feature_extractor, label_column=label_column),
        processing_class=feature_extractor,
        compute_metrics=classification_compute_metrics if model.config.problem_type != "regression" else None,
        callbacks=callbacks,
        sync_batchnorm=sync_batchnorm,
    )
    if isinstance(model_name_or_path, (str, os.PathLike)):  # what a pushed card says about the starting point
        trainer.base_checkpoint = str(model_name_or_path)
    trainer.train()
    return trainer
