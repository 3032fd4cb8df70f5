"""Pretraining and fine-tuning with the Hugging Face ``Trainer``.

* :class:`EMATargetCallback` updates the BYOL target after every optimizer step.
* :class:`GradientValueClipCallback` clips gradients by value (the authors clip by value at 1).
* :class:`BrainMassPretrainingTrainer` logs every loss part and uses the authors' warm-up: epoch ``i`` of the
  first ``warmup_epochs`` runs at ``i / warmup_epochs · lr`` (1-based), then the rate stays constant.
* :func:`pretrain` and :func:`finetune` are the library entry points; :func:`pretrain_main` and
  :func:`finetune_main` parse command lines with ``HfArgumentParser`` for ``brainmass pretrain|finetune``.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import HfArgumentParser, Trainer, TrainerCallback, TrainingArguments, set_seed

from .configuration_brainmass import BrainMassConfig
from .data import resolve_dataset
from .data_collator import DataCollatorForConnectomeClassification, DataCollatorForPseudoFC
from .modeling_brainmass import BrainMassForConnectomeClassification, BrainMassForPreTraining
from .processing_brainmass import BrainMassFeatureExtractor

logger = logging.getLogger(__name__)

__all__ = [
    "EMATargetCallback",
    "GradientValueClipCallback",
    "BrainMassPretrainingArguments",
    "BrainMassPretrainingTrainer",
    "pretrain",
    "finetune",
    "pretrain_main",
    "finetune_main",
    "LOSS_PARTS",
]

LOSS_PARTS = ("lra_loss", "mrm_loss", "mrc_loss", "mrc_accuracy")


def _unwrap(model):
    while hasattr(model, "module"):
        model = model.module
    return model


class EMATargetCallback(TrainerCallback):
    """Calls ``model.update_target()`` after every optimizer step (``on_step_end``)."""

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if model is not None:
            _unwrap(model).update_target()


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
    5e-5, 10 warm-up epochs then constant, gradient clipping by value at 1, batch 64."""

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
    report_to: str | list[str] | None = "none"
    warmup_epochs: float = field(default=10.0, metadata={"help": "Epoch i of these runs at i/warmup_epochs·lr."})
    clip_grad_value: float = field(default=1.0, metadata={"help": "Clip gradients by value (0 disables)."})
    compute_fc_on: str = field(default="model", metadata={"help": "'model' (on its device) or 'collator'."})


def epoch_warmup_lambda(steps_per_epoch: int, warmup_epochs: float):
    """LR factor per step: ``min(1, (epoch + 1) / warmup_epochs)`` with ``epoch = step // steps_per_epoch``."""

    def factor(step: int) -> float:
        if warmup_epochs <= 0:
            return 1.0
        return min(1.0, (step // max(steps_per_epoch, 1) + 1) / warmup_epochs)

    return factor


class BrainMassPretrainingTrainer(Trainer):
    """``Trainer`` that logs ``lra_loss``, ``mrm_loss``, ``mrc_loss`` and ``mrc_accuracy`` beside ``loss`` and
    applies the epoch-wise warm-up of :class:`BrainMassPretrainingArguments`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._part_sums: dict[str, torch.Tensor] = {}
        self._part_count = 0
        self.loss_history: list[dict] = []

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        if model.training:
            for name in LOSS_PARTS:
                value = getattr(outputs, name).detach().float()
                self._part_sums[name] = self._part_sums.get(name, 0.0) + value
            self._part_count += 1
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs: dict, *args, **kwargs):
        if self._part_count and "loss" in logs:
            for name, total in self._part_sums.items():
                logs[name] = round(float(total) / self._part_count, 6)
            self._part_sums, self._part_count = {}, 0
            self.loss_history.append({"step": self.state.global_step, "epoch": self.state.epoch, **logs})
        super().log(logs, *args, **kwargs)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        warmup_epochs = getattr(self.args, "warmup_epochs", 0)
        if self.lr_scheduler is None and warmup_epochs:
            steps_per_epoch = max(1, math.ceil(num_training_steps / max(self.args.num_train_epochs, 1e-9)))
            if self.train_dataset is not None and hasattr(self.train_dataset, "__len__"):
                batches = math.ceil(len(self.train_dataset) / self._train_batch_size)
                steps_per_epoch = max(1, batches // max(self.args.gradient_accumulation_steps, 1))
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
                self.optimizer if optimizer is None else optimizer, epoch_warmup_lambda(steps_per_epoch, warmup_epochs)
            )
            return self.lr_scheduler
        return super().create_scheduler(num_training_steps, optimizer)


def _numpy_rows(dataset):
    """Rows as numpy arrays (variable-length ``time_series`` included), other columns as they are."""
    return dataset.with_format("numpy", columns=["time_series"], output_all_columns=True)


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
        dataset: ``datasets.Dataset`` with ``time_series`` ``(T_i, R)`` (and ``subject_id`` for error messages).
        config: model config (ignored when ``model`` is given). ``config.num_rois`` must equal the data's R.
        args: training arguments; defaults to the authors' settings with ``output_dir="runs/pretrain"``.
        resume_from_checkpoint: a checkpoint folder or ``True`` for the last one in ``args.output_dir``.
        encoder_dir: where the online encoder + feature extractor are saved at the end
            (default ``<output_dir>/encoder``); load it with ``AutoModel.from_pretrained``.
    Returns:
        The trainer after training; ``trainer.loss_history`` holds every logged loss part.
    """
    args = args or BrainMassPretrainingArguments(output_dir="runs/pretrain")
    if model is None:
        if config is None:
            raise ValueError("pretrain needs a config or a model.")
        set_seed(args.seed)  # the initial weights follow args.seed, as with Trainer(model_init=...)
        model = BrainMassForPreTraining(config)
    feature_extractor = BrainMassFeatureExtractor.from_config(model.config)
    if len(dataset) < 2:
        raise ValueError(f"Pretraining needs at least 2 scans; the dataset has {len(dataset)}.")
    num_rois = np.asarray(dataset[0]["time_series"]).shape[-1]
    if num_rois != model.config.num_rois:
        raise ValueError(
            f"The data has {num_rois} ROIs but the model expects num_rois={model.config.num_rois}; build the config "
            f"with num_rois={num_rois} or use data parcellated with the checkpoint's atlas."
        )
    extra = [EMATargetCallback()]
    if getattr(args, "clip_grad_value", 0):
        extra.append(GradientValueClipCallback(args.clip_grad_value))
    trainer = BrainMassPretrainingTrainer(
        model=model,
        args=args,
        train_dataset=_numpy_rows(dataset),
        data_collator=DataCollatorForPseudoFC(feature_extractor, compute_fc_on=getattr(args, "compute_fc_on", "model")),
        processing_class=feature_extractor,
        callbacks=extra + list(callbacks or []),
    )
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    encoder_dir = encoder_dir or os.path.join(args.output_dir, "encoder")
    if trainer.is_world_process_zero():
        _unwrap(trainer.model).save_encoder(encoder_dir)
        feature_extractor.save_pretrained(encoder_dir)
    return trainer


def _class_names(dataset, label_column: str):
    feature = dataset.features.get(label_column)
    return list(feature.names) if hasattr(feature, "names") else None


def classification_compute_metrics(eval_pred) -> dict:
    """Accuracy, balanced accuracy and AUC from logits (AUC one-vs-rest for more than two classes)."""
    from .evaluation import classification_metrics

    logits, labels = eval_pred.predictions, eval_pred.label_ids
    logits = logits[0] if isinstance(logits, tuple) else logits
    scores = logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits
    metrics = classification_metrics(labels, logits.argmax(-1), scores)
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def finetune(
    model_name_or_path,
    train_dataset,
    eval_dataset=None,
    *,
    output_dir: str = "runs/finetune",
    label_column: str = "label",
    num_train_epochs: float = 20,
    learning_rate: float = 1e-4,
    per_device_train_batch_size: int = 16,
    seed: int = 42,
    num_labels: int | None = None,
    problem_type: str | None = None,
    callbacks: list | None = None,
    **training_kwargs,
) -> Trainer:
    """Fine-tunes :class:`BrainMassForConnectomeClassification` from an encoder (or any BrainMass) checkpoint.

    Training batches use one pFC view per scan, evaluation the full FC (the model decides by its mode).

    Args:
        model_name_or_path: a checkpoint folder / Hub id, or a ``BrainMassModel`` / config object.
        train_dataset, eval_dataset: ``datasets.Dataset`` with ``time_series`` and ``label_column``.
        training_kwargs: any other ``TrainingArguments`` field.
    Returns:
        The trained ``Trainer``; ``trainer.predict(test_dataset).predictions`` are logits ``(N, num_labels)``.
    """
    if label_column not in train_dataset.column_names:
        raise ValueError(f"The training data has no {label_column!r} column; columns: {train_dataset.column_names}.")
    names = _class_names(train_dataset, label_column)
    if num_labels is None:
        num_labels = len(names) if names else len(np.unique(np.asarray(train_dataset[label_column])))
    label_kwargs = {"num_labels": num_labels}
    if names:
        label_kwargs.update(id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    if problem_type:
        label_kwargs["problem_type"] = problem_type
    set_seed(seed)  # the new head's initial weights follow the seed
    if isinstance(model_name_or_path, BrainMassConfig):
        model = BrainMassForConnectomeClassification(BrainMassConfig(**{**model_name_or_path.to_dict(), **label_kwargs}))
    elif isinstance(model_name_or_path, torch.nn.Module):
        config = BrainMassConfig(**{**model_name_or_path.config.to_dict(), **label_kwargs})
        model = BrainMassForConnectomeClassification(config)
        model.brainmass.load_state_dict(_unwrap(model_name_or_path).state_dict(), strict=False)
    else:
        model = BrainMassForConnectomeClassification.from_pretrained(model_name_or_path, **label_kwargs)
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
    collator = DataCollatorForConnectomeClassification(feature_extractor, label_column=label_column)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_numpy_rows(train_dataset),
        eval_dataset=_numpy_rows(eval_dataset) if eval_dataset is not None else None,
        data_collator=collator,
        processing_class=feature_extractor,
        compute_metrics=classification_compute_metrics if model.config.problem_type != "regression" else None,
        callbacks=callbacks,
    )
    trainer.train()
    return trainer


# --------------------------------------------------------------------------------------------------------------
# Command lines
# --------------------------------------------------------------------------------------------------------------
@dataclass
class PretrainScriptArguments:
    data: str = field(default="devfmri", metadata={"help": "'devfmri' (bundled CC0 cohort) or a data path."})
    preset: str = field(default="small", metadata={"help": "small | base | large | tiny."})
    init_from: str | None = field(default=None, metadata={"help": "Encoder checkpoint to continue from."})
    config_overrides: str | None = field(
        default=None, metadata={"help": "Comma-separated config fields, e.g. 'fc_kind=pearson,mrm_loss_weight=1'."}
    )
    atlas_name: str | None = field(default=None, metadata={"help": "Atlas name stored in the config."})


def _parse_overrides(text: str | None) -> dict:
    import json

    values = {}
    for item in filter(None, (text or "").split(",")):
        if "=" not in item:
            raise ValueError(f"config override {item!r} must look like name=value.")
        key, raw = item.split("=", 1)
        try:
            values[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            values[key.strip()] = raw
    return values


def pretrain_main(argv: list[str] | None = None) -> BrainMassPretrainingTrainer:
    """``brainmass pretrain``: all ``TrainingArguments`` flags plus ``--data --preset --init_from``."""
    parser = HfArgumentParser((PretrainScriptArguments, BrainMassPretrainingArguments))
    script, args = parser.parse_args_into_dataclasses(args=argv)
    dataset = resolve_dataset(script.data)
    num_rois = np.asarray(dataset[0]["time_series"]).shape[-1]
    overrides = _parse_overrides(script.config_overrides)
    if script.data == "devfmri":
        from .data import bundled_roi_names

        overrides.setdefault("atlas_name", "AAL-116")
        overrides.setdefault("roi_names", bundled_roi_names("aal116"))
    if script.atlas_name:
        overrides["atlas_name"] = script.atlas_name
    if script.init_from:
        model = BrainMassForPreTraining.from_encoder(script.init_from)
    else:
        model = BrainMassForPreTraining(BrainMassConfig.from_preset(script.preset, num_rois=num_rois, **overrides))
    trainer = pretrain(dataset, args=args, model=model, resume_from_checkpoint=args.resume_from_checkpoint)
    print(f"Encoder saved to {os.path.join(args.output_dir, 'encoder')}")
    return trainer


@dataclass
class FinetuneScriptArguments:
    model_name_or_path: str = field(metadata={"help": "Encoder checkpoint (folder or Hub id)."})
    data: str = field(default="devfmri", metadata={"help": "'devfmri' or a data path."})
    label_column: str = "label"
    test_size: float = 0.2
    split_seed: int = 0


def finetune_main(argv: list[str] | None = None) -> Trainer:
    """``brainmass finetune``: stratified train/test split, fine-tune, print the test metrics."""
    parser = HfArgumentParser((FinetuneScriptArguments, TrainingArguments))
    script, args = parser.parse_args_into_dataclasses(args=argv)
    dataset = resolve_dataset(script.data)
    split = dataset.train_test_split(
        test_size=script.test_size, seed=script.split_seed, stratify_by_column=script.label_column
    )
    kwargs = {k: v for k, v in args.to_dict().items() if k in {"num_train_epochs", "learning_rate", "seed"}}
    kwargs["per_device_train_batch_size"] = args.per_device_train_batch_size
    trainer = finetune(
        script.model_name_or_path,
        split["train"],
        split["test"],
        output_dir=args.output_dir,
        label_column=script.label_column,
        **kwargs,
    )
    metrics = trainer.evaluate()
    print({k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)})
    trainer.save_model(args.output_dir)
    return trainer
