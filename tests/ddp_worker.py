"""Run by ``tests/test_ddp.py`` under ``torchrun --nproc_per_node 2`` (gloo, CPU); writes ``<out>/rank<r>.pt``.

Each rank records what the test compares across ranks and against a single-process run:

* pretraining with per-device batch 2 and gradient accumulation 2 (global batch 8): the learning rate per
  optimizer step, how often ``update_target`` ran, and the online and target weights at the end;
* fine-tuning with per-device batch 4 vs per-device batch 2 with accumulation 2: the logged loss of the first
  step and the weights after it (plain SGD, so a wrongly scaled loss shows in the weights);
* ``sync_batchnorm=True``: how many BatchNorm layers became ``SyncBatchNorm`` and the error ``train()`` gives on CPU.
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import brainmass_hf as bm  # noqa: E402
from brainmass_hf.data import load_devfmri  # noqa: E402
from brainmass_hf.training import (  # noqa: E402
    BrainMassPretrainingArguments,
    BrainMassPretrainingTrainer,
    BrainMassTrainer,
    pretrain,
)
from conftest import tiny_config  # noqa: E402
from transformers import TrainingArguments  # noqa: E402

# use_cpu=True: without it transformers leaves a CPU run NOT_PARALLEL and the gradients are never all-reduced
COMMON = dict(use_cpu=True, ddp_backend="gloo", ddp_find_unused_parameters=False, report_to="none", disable_tqdm=True,
              save_strategy="no", logging_steps=1, seed=0, dataloader_num_workers=0, dataloader_pin_memory=False)


def pretraining(out: Path, data) -> dict:
    model = bm.BrainMassForPreTraining(tiny_config())  # the same weights on every rank: both seeded with 0 in main
    calls, update = [], model.update_target
    model.update_target = lambda *a, **k: calls.append(1) or update(*a, **k)
    args = BrainMassPretrainingArguments(
        output_dir=str(out / "pretrain"), per_device_train_batch_size=2, gradient_accumulation_steps=2,
        num_train_epochs=2, warmup_epochs=2, **COMMON,
    )
    trainer = pretrain(data, args=args, model=model)
    online, target = model._paired_parameters()
    return {
        "rates": [h["learning_rate"] for h in trainer.state.log_history if "lra_loss" in h],
        "ema_calls": len(calls),
        "steps": trainer.state.global_step,
        "online": [p.detach().clone() for p in online],
        "target": [p.detach().clone() for p in target],
    }


def finetuning(out: Path, data, batch: int, accumulation: int) -> dict:
    torch.manual_seed(0)
    config = tiny_config(num_labels=2, classifier_hidden_sizes=[], hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0)
    model = bm.BrainMassForConnectomeClassification(config)
    fe = bm.BrainMassFeatureExtractor.from_config(config)
    args = TrainingArguments(
        output_dir=str(out / f"ft{batch}"), per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
        max_steps=1, optim="sgd", learning_rate=0.5, lr_scheduler_type="constant", remove_unused_columns=False,
        label_names=["labels"], **COMMON,
    )
    # full FC in the collator: no random views, so the two batchings see exactly the same inputs
    collator = bm.DataCollatorForConnectomeClassification(fe, compute_fc_on="collator", view="full")
    trainer = BrainMassTrainer(model=model, args=args, train_dataset=data, data_collator=collator)
    trainer.train()
    return {"loss": [h["loss"] for h in trainer.state.log_history if "loss" in h][0],
            "weights": [p.detach().clone() for p in model.parameters()]}


def sync_batchnorm(out: Path) -> dict:
    model = bm.BrainMassForPreTraining(tiny_config())
    batchnorms = sum(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules())
    args = BrainMassPretrainingArguments(output_dir=str(out / "sync"), sync_batchnorm=True, **COMMON)
    trainer = BrainMassPretrainingTrainer(model=model, args=args, train_dataset=load_devfmri().select(range(8)))
    converted = sum(isinstance(m, torch.nn.SyncBatchNorm) for m in trainer.model.modules())
    try:
        trainer.train()
        error = ""
    except ValueError as e:
        error = str(e)
    return {"batchnorms": batchnorms, "converted": converted, "error": error}


if __name__ == "__main__":
    out = Path(sys.argv[1])
    torch.manual_seed(0)
    data = load_devfmri().select(range(32))
    result = {"pretraining": pretraining(out, data)}
    result["finetune_batch"] = finetuning(out, data, batch=4, accumulation=1)
    result["finetune_accumulation"] = finetuning(out, data, batch=2, accumulation=2)
    result["sync_batchnorm"] = sync_batchnorm(out)
    result["world_size"] = torch.distributed.get_world_size()
    torch.save(result, out / f"rank{torch.distributed.get_rank()}.pt")
