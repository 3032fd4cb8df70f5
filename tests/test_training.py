"""Pretraining and fine-tuning through the Trainer on the bundled real cohort, with tiny configs."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import brainmass_hf as bm
from brainmass_hf.training import (
    BrainMassPretrainingArguments,
    BrainMassPretrainingTrainer,
    epoch_warmup_lambda,
    finetune,
    last_complete_checkpoint,
    pretrain,
)
from conftest import tiny_config
from transformers import TrainerCallback

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _logged(trainer, key="lra_loss"):
    """The per-step log entries (``trainer.state.log_history``) that carry ``key``."""
    return [h for h in trainer.state.log_history if key in h]


def _args(tmp_path, **kwargs):
    values = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=16,
        num_train_epochs=6,
        logging_steps=1,
        warmup_epochs=1,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        dataloader_num_workers=0,
    )
    values.update(kwargs)
    return BrainMassPretrainingArguments(**values)


@pytest.mark.slow
def test_pretraining_on_real_scans_lowers_every_loss_part(tmp_path, devfmri):
    subset = devfmri.select(range(0, 155, 5))  # 31 real scans, both groups
    trainer = pretrain(subset, tiny_config(), _args(tmp_path, num_train_epochs=10))
    history = _logged(trainer)
    assert len(history) == 10 * 2
    first, last = history[:4], history[-4:]
    for part in ("loss", "lra_loss", "mrm_loss", "mrc_loss"):
        assert np.mean([h[part] for h in last]) < np.mean([h[part] for h in first]), part
    assert np.mean([h["mrc_accuracy"] for h in last]) > np.mean([h["mrc_accuracy"] for h in first])
    assert (tmp_path / "encoder" / "model.safetensors").exists()
    assert (tmp_path / "encoder" / "preprocessor_config.json").exists()


def test_ema_target_moves_during_pretraining_and_follows_the_online_network(tmp_path, devfmri):
    model = bm.BrainMassForPreTraining(tiny_config())
    before = [p.clone() for p in model._paired_parameters()[1]]
    pretrain(devfmri.select(range(32)), args=_args(tmp_path, num_train_epochs=1), model=model)
    online, target = model._paired_parameters()
    moved = [not torch.equal(b, t) for b, t in zip(before, target)]
    assert all(moved)
    # with momentum 0.996 and 2 steps the target stays much closer to its start than the online network
    drift_target = sum((t - b).norm() for t, b in zip(target, before))
    drift_online = sum((o - b).norm() for o, b in zip(online, before))
    assert drift_target < 0.05 * drift_online


def _resume_matches_a_straight_run(tmp_path, data, resume_latest: bool, **kwargs):
    kwargs = {"per_device_train_batch_size": 8, **kwargs}  # 16 scans: 2 steps per epoch, 6 in all
    straight = pretrain(data, tiny_config(), _args(tmp_path / "a", num_train_epochs=3, **kwargs))
    pretrain(  # stops at step 3 and leaves checkpoint-3
        data, tiny_config(),
        _args(tmp_path / "b", num_train_epochs=3, save_strategy="steps", save_steps=3, max_steps=3, **kwargs),
    )
    assert (tmp_path / "b" / "checkpoint-3").exists()  # mid-epoch: the data loader must skip a batch
    if resume_latest:  # a later checkpoint killed while saving: weights written, trainer_state.json not yet
        partial = tmp_path / "b" / "checkpoint-5"
        shutil.copytree(tmp_path / "b" / "checkpoint-3", partial)
        (partial / "trainer_state.json").unlink()
    resumed = pretrain(
        data,
        tiny_config(),
        _args(tmp_path / "b", num_train_epochs=3, save_strategy="no", **kwargs),
        resume_from_checkpoint=True if resume_latest else str(tmp_path / "b" / "checkpoint-3"),
    )
    expected = {h["step"]: h["loss"] for h in _logged(straight)}
    got = {h["step"]: h["loss"] for h in _logged(resumed)}  # steps 1-3 come from the checkpoint's state
    assert sorted(got) == [1, 2, 3, 4, 5, 6]
    for step in got:
        assert got[step] == pytest.approx(expected[step], rel=1e-4, abs=1e-5), step
    straight_weights, resumed_weights = straight.model.state_dict(), resumed.model.state_dict()
    for name, value in straight_weights.items():  # the same run: same weights, EMA target and BatchNorm statistics
        assert torch.allclose(resumed_weights[name].float(), value.float(), atol=1e-6), name


def test_resume_from_checkpoint_continues_with_the_same_losses(tmp_path, devfmri):
    _resume_matches_a_straight_run(tmp_path, devfmri.select(range(16)), resume_latest=False)


def test_resume_is_exact_when_the_collator_also_computes_the_views(tmp_path, devfmri):
    # the data loader runs the collator for the next batch before the checkpoint saves the RNG state
    _resume_matches_a_straight_run(tmp_path, devfmri.select(range(16)), resume_latest=False, compute_fc_on="collator")


def test_a_training_batch_draws_from_the_run_seed_epoch_and_rows_not_the_global_rng(tmp_path, devfmri):
    # why resume needs only the data loader's state: the sampler gives the rows, and the rows give the draws
    trainer = BrainMassPretrainingTrainer(model=bm.BrainMassForPreTraining(tiny_config()), args=_args(tmp_path),
                                          train_dataset=devfmri.select(range(8)))

    def batch(rows=(3, 1, 5, 0), epoch=0, global_seed=0):
        torch.manual_seed(global_seed)
        trainer.train_dataset.epoch = epoch
        return trainer.data_collator([trainer.train_dataset[i] for i in rows])

    first = batch()
    assert set(first) == {"time_series", "time_mask", "view_time_masks", "mrm_masked_roi_indices",
                          "mrc_masked_roi_indices"}
    assert all(torch.equal(first[k], v) for k, v in batch(global_seed=7).items())
    assert not torch.equal(first["view_time_masks"], batch(epoch=1)["view_time_masks"])
    assert not torch.equal(first["mrm_masked_roi_indices"], batch(rows=(3, 1, 5, 2))["mrm_masked_roi_indices"])


def test_finetuning_trains_on_pfc_views_and_evaluates_on_the_full_fc(tmp_path, devfmri):
    from brainmass_hf.training import BrainMassTrainer

    config = tiny_config(num_labels=2)
    collator = bm.DataCollatorForConnectomeClassification(bm.BrainMassFeatureExtractor.from_config(config))
    data = devfmri.select(range(8))
    args = _args(tmp_path, per_device_train_batch_size=4, per_device_eval_batch_size=4, label_names=["labels"])
    trainer = BrainMassTrainer(model=bm.BrainMassForConnectomeClassification(config), args=args, train_dataset=data,
                               eval_dataset=data, data_collator=collator)
    train_batch = next(iter(trainer.get_train_dataloader()))
    eval_batch = next(iter(trainer.get_eval_dataloader()))
    test_batch = next(iter(trainer.get_test_dataloader(data)))
    assert train_batch["time_mask"].sum(-1).tolist() == [168 - 33] * 4  # one pFC view per scan
    assert eval_batch["time_mask"].all() and test_batch["time_mask"].all()  # all 168 points
    assert trainer.data_collator.collator is collator  # the training collator is restored


def test_resume_from_latest_skips_a_partially_written_checkpoint(tmp_path, devfmri):
    _resume_matches_a_straight_run(tmp_path, devfmri.select(range(16)), resume_latest=True)


def test_last_complete_checkpoint_needs_state_and_weights(tmp_path):
    for step, files in ((2, ("trainer_state.json", "model.safetensors")), (4, ("model.safetensors",)), (6, ())):
        (tmp_path / f"checkpoint-{step}").mkdir()
        for name in files:
            (tmp_path / f"checkpoint-{step}" / name).write_text("{}")
    assert last_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-2")
    assert last_complete_checkpoint(str(tmp_path / "missing")) is None


def test_warmup_runs_epoch_i_at_i_over_n_of_the_rate():
    factor = epoch_warmup_lambda(steps_per_epoch=3, warmup_epochs=10)
    assert [factor(s) for s in (0, 2, 3, 29, 30, 500)] == [0.1, 0.1, 0.2, 1.0, 1.0, 1.0]


def test_pretraining_logs_the_warmup_learning_rate(tmp_path, devfmri):
    trainer = pretrain(devfmri.select(range(32)), tiny_config(), _args(tmp_path, num_train_epochs=3, warmup_epochs=3))
    rates = [h["learning_rate"] for h in _logged(trainer)]
    assert rates == pytest.approx([1e-4, 1e-4, 2e-4, 2e-4, 3e-4, 3e-4])


def test_collator_can_compute_the_views_itself(devfmri):
    from brainmass_hf.training import _numpy_rows

    fe = bm.BrainMassFeatureExtractor.from_config(tiny_config())
    rows = [_numpy_rows(devfmri)[i] for i in range(4)]
    on_model = bm.DataCollatorForPseudoFC(fe)(rows)
    in_collator = bm.DataCollatorForPseudoFC(fe, compute_fc_on="collator")(rows)
    assert on_model["time_series"].shape == (4, 168, 116) and on_model["time_mask"].all()
    assert in_collator["connectivity_view1"].shape == (4, 116, 116)
    assert not torch.allclose(in_collator["connectivity_view1"], in_collator["connectivity_view2"])


def test_collator_error_names_the_bad_scan(devfmri):
    fe = bm.BrainMassFeatureExtractor.from_config(tiny_config())
    rows = [{"subject_id": "sub-ok", "time_series": np.ones((50, 116)) * np.arange(50)[:, None] ** 0.5},
            {"subject_id": "sub-bad", "time_series": np.full((50, 116), np.nan, dtype=np.float32)}]
    with pytest.raises(ValueError, match="sub-bad"):
        bm.DataCollatorForPseudoFC(fe)(rows)


@pytest.mark.slow
def test_finetuning_learns_child_vs_adult_well_above_chance(tmp_path, devfmri):
    from sklearn.metrics import roc_auc_score

    split = devfmri.train_test_split(test_size=0.3, seed=0, stratify_by_column="label")
    encoder = bm.BrainMassModel(tiny_config())
    trainer = finetune(
        encoder,
        split["train"],
        output_dir=str(tmp_path),
        num_train_epochs=12,
        learning_rate=1e-3,
        per_device_train_batch_size=16,
        seed=0,
        disable_tqdm=True,
    )
    logits = trainer.predict(split["test"]).predictions  # the trainer reads datasets rows as numpy itself
    labels = np.asarray(split["test"]["label"])
    auc = roc_auc_score(labels, logits[:, 1] - logits[:, 0])
    # chance is 0.5; measured 0.9+ on this split (CPU, torch 2.13)
    assert auc > 0.8


# --- a last batch of one scan (BatchNorm cannot train on it) -------------------------------------------------
def test_pretraining_survives_a_last_batch_of_one_scan(tmp_path, devfmri):
    trainer = pretrain(devfmri.select(range(17)), tiny_config(), _args(tmp_path, num_train_epochs=2))
    assert trainer.state.global_step == 2  # the scan left over is dropped, a different one each shuffled epoch


def test_finetuning_survives_a_last_batch_of_one_scan(tmp_path, devfmri):
    trainer = finetune(
        bm.BrainMassModel(tiny_config()), devfmri.select(range(0, 153, 9)), output_dir=str(tmp_path),
        num_train_epochs=1, per_device_train_batch_size=16, disable_tqdm=True,
    )
    assert trainer.state.global_step == 1


# --- finetune(model object) loads the encoder strictly ----------------------------------------------------------
@pytest.mark.parametrize("source", ["encoder", "pretraining", "classification", "folder"])
def test_finetune_starts_from_the_given_encoder_weights(tmp_path, devfmri, source):
    encoder = bm.BrainMassModel(tiny_config())
    given = {
        "encoder": lambda: encoder,
        "pretraining": lambda: bm.BrainMassForPreTraining.from_encoder(encoder),
        "classification": lambda: bm.BrainMassForConnectomeClassification(tiny_config(num_labels=3)),
        "folder": lambda: encoder.save_pretrained(tmp_path / "enc") or str(tmp_path / "enc"),
    }[source]()
    expected = (given.brainmass if source == "classification" else encoder).state_dict()
    # learning rate 0: whatever the encoder holds after one step is what it was given
    trainer = finetune(given, devfmri.select(range(0, 155, 5)), output_dir=str(tmp_path / "ft"), max_steps=1,
                       learning_rate=0.0, disable_tqdm=True)
    loaded = trainer.model.brainmass.state_dict()
    assert loaded.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(loaded[name], value), name


def test_finetune_refuses_a_module_without_a_brainmass_encoder(devfmri):
    labels = devfmri["label"][:]
    two_classes = [i for i, y in enumerate(labels) if y == 0][:4] + [i for i, y in enumerate(labels) if y == 1][:4]
    with pytest.raises(TypeError, match="BrainMass"):
        finetune(torch.nn.Linear(2, 2), devfmri.select(two_classes))


# --- the warm-up: epochs of the real data loader, and never over a user's schedule -----------------------------
@pytest.mark.parametrize(
    "num_scans, accumulation, drop_last, steps_per_epoch",
    [(40, 2, False, 3), (36, 1, True, 4)],  # 5 batches / 2 → 3 steps (the Trainer ceils); 36 // 8 → 4 full batches
)
def test_warmup_epochs_count_the_optimizer_steps_of_the_real_data_loader(
    tmp_path, devfmri, num_scans, accumulation, drop_last, steps_per_epoch
):
    args = _args(tmp_path, per_device_train_batch_size=8, num_train_epochs=2, warmup_epochs=2,
                 gradient_accumulation_steps=accumulation, dataloader_drop_last=drop_last)
    trainer = pretrain(devfmri.select(range(num_scans)), tiny_config(), args)
    rates = [h["learning_rate"] for h in _logged(trainer)]
    assert rates == pytest.approx([1.5e-4] * steps_per_epoch + [3e-4] * steps_per_epoch)


def test_a_user_scheduler_is_not_overridden_by_the_epoch_warmup(tmp_path, devfmri):
    # warmup_epochs left at its default, as a user who only picks a scheduler would
    args = BrainMassPretrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=16, num_train_epochs=2,
                                         logging_steps=1, save_strategy="no", disable_tqdm=True, seed=0,
                                         lr_scheduler_type="linear")
    rates = [h["learning_rate"] for h in _logged(pretrain(devfmri.select(range(32)), tiny_config(), args))]
    assert rates == pytest.approx([3e-4, 2.25e-4, 1.5e-4, 0.75e-4])  # linear decay over 4 steps, no warm-up


@pytest.mark.parametrize("schedule", [dict(lr_scheduler_type="cosine"), dict(warmup_steps=5)])
def test_warmup_epochs_on_top_of_a_user_schedule_is_refused(tmp_path, schedule):
    args = _args(tmp_path, warmup_epochs=3, **schedule)
    with pytest.raises(ValueError, match="warmup_epochs=0"):
        BrainMassPretrainingTrainer(model=bm.BrainMassForPreTraining(tiny_config()), args=args)


# --- the trainer owns EMA and clipping ----------------------------------------------------------------------------
class _GradientRecorder(TrainerCallback):
    def __init__(self):
        self.largest = []

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.largest.append(max(p.grad.abs().max().item() for p in model.parameters() if p.grad is not None))


def test_pretraining_trainer_in_a_plain_script_does_ema_once_per_optimizer_step_and_clips(tmp_path, devfmri):
    model = bm.BrainMassForPreTraining(tiny_config())
    calls, update = [], model.update_target
    model.update_target = lambda *a, **k: calls.append(1) or update(*a, **k)
    target_before = [p.clone() for p in model._paired_parameters()[1]]
    recorder = _GradientRecorder()
    args = _args(tmp_path, num_train_epochs=1, per_device_train_batch_size=8, gradient_accumulation_steps=2,
                 clip_grad_value=1e-4)
    trainer = BrainMassPretrainingTrainer(model=model, args=args, train_dataset=devfmri.select(range(32)),
                                          callbacks=[recorder])
    trainer.train()
    assert trainer.state.global_step == 2 and len(calls) == 2  # 4 micro-batches, 2 optimizer steps, 2 EMA updates
    assert all(not torch.equal(b, t) for b, t in zip(target_before, model._paired_parameters()[1]))
    assert recorder.largest and max(recorder.largest) <= 1e-4


# --- the whole dataset is validated before training -----------------------------------------------------------
def test_pretrain_names_every_bad_scan_before_training(tmp_path, devfmri):
    from brainmass_hf.data import BrainMassDataError

    def spoil(row, index):
        ts = np.asarray(row["time_series"], dtype=np.float32)
        if index == 3:
            ts[5, 7] = np.nan
        if index in (11, 20):
            ts = ts[:4]
        return {"time_series": ts, "num_timepoints": len(ts)}

    data = devfmri.select(range(24)).map(spoil, with_indices=True)
    bad = [data[i]["subject_id"] for i in (3, 11, 20)]
    with pytest.raises(BrainMassDataError) as error:  # batches of 2: a per-batch check could name two at most
        pretrain(data, tiny_config(), _args(tmp_path, num_train_epochs=1, per_device_train_batch_size=2))
    assert all(name in str(error.value) for name in bad)
    assert not (tmp_path / "encoder").exists()


# --- the example scripts run as documented --------------------------------------------------------------------
@pytest.mark.slow
def test_example_scripts_run_end_to_end_at_tiny_size(tmp_path):
    def run(script, *argv):
        done = subprocess.run([sys.executable, str(EXAMPLES / script), *argv], capture_output=True, text=True,
                              timeout=600, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    out = run("pretrain_devfmri.py", "--preset", "tiny", "--epochs", "1", "--output-dir", str(tmp_path / "pt"))
    assert "train_loss" in out and (tmp_path / "pt" / "encoder" / "model.safetensors").exists()
    out = run("finetune_devfmri.py", "--encoder", str(tmp_path / "pt" / "encoder"), "--epochs", "1",
              "--output-dir", str(tmp_path / "ft"))
    assert "eval_accuracy" in out
    out = run("evaluate_devfmri.py", "--encoder", str(tmp_path / "pt" / "encoder"), "--protocols", "linear_probe",
              "--n-repeats", "2", "--output-dir", str(tmp_path / "ev"))
    assert "linear_probe" in out
