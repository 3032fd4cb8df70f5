"""Where the package overrides a framework method instead of using a public hook, the framework behaviour the
override depends on is pinned here, so a transformers upgrade that changes it fails a test instead of silently
breaking the package (issue 20 item 3). Each test names the override it guards."""

import inspect

import torch
from transformers import PreTrainedModel, Trainer, TrainingArguments

import brainmass_hf as bm
from conftest import tiny_config


def test_from_pretrained_with_loading_info_returns_the_model_and_its_missing_keys(tmp_path):
    """BrainMassPreTrainedModel.from_pretrained asks for output_loading_info=True and reads info["missing_keys"]
    (model-relative names) to refuse a checkpoint lacking encoder layers."""
    bm.BrainMassModel(tiny_config()).save_pretrained(tmp_path)
    model, info = PreTrainedModel.from_pretrained.__func__(bm.BrainMassForPreTraining, tmp_path,
                                                           output_loading_info=True)
    assert isinstance(model, bm.BrainMassForPreTraining)
    missing = set(info["missing_keys"])
    assert {"mask_embedding", "mrm_head.0.weight"} <= missing  # pretraining-only parts, model-relative names
    assert not any(k.startswith("brainmass.") for k in missing)  # the encoder was in the file


def test_trainer_initial_training_values_give_the_optimizer_steps_per_epoch_second(tmp_path):
    """BrainMassPretrainingTrainer.set_initial_training_values reads values[1] as the optimizer steps of one
    epoch (ceil over gradient accumulation) for the epoch warm-up."""
    args = TrainingArguments(output_dir=str(tmp_path), gradient_accumulation_steps=2, use_cpu=True, report_to=[])
    trainer = Trainer(model=bm.BrainMassModel(tiny_config()), args=args)
    loader = torch.utils.data.DataLoader(list(range(10)), batch_size=2)  # 5 batches -> 3 optimizer steps
    values = trainer.set_initial_training_values(args, loader)
    assert list(inspect.signature(Trainer.set_initial_training_values).parameters) == ["self", "args", "dataloader"]
    assert len(values) == 7 and values[1] == 3


def test_trainer_marks_a_scheduler_it_created_with_the_private_flag_create_scheduler_sets():
    """BrainMassPretrainingTrainer.create_scheduler sets `_created_lr_scheduler`, which the Trainer reads to rebuild
    its own scheduler per training run; renamed, our warm-up scheduler would leak into the next train()."""
    source = inspect.getsource(Trainer)
    assert source.count("self._created_lr_scheduler") >= 3  # set in __init__, set on creation, read in train


def test_trainer_push_to_hub_saves_then_asks_create_model_card_then_uploads_output_dir():
    """BrainMassTrainer.create_model_card (the public hook) writes our card and completes output_dir; that works
    only while Trainer.push_to_hub saves first and uploads output_dir after the card."""
    source = inspect.getsource(Trainer.push_to_hub)
    save, card = source.index("self.save_model("), source.index("self.create_model_card(")
    upload = source.index("folder_path=self.args.output_dir")
    assert save < card < upload


def test_the_model_keeps_transformers_push_to_hub_and_imports_nothing_from_hub():
    """The card is written by the release path (brainmass_hf.hub), not by an override inside the model: the model
    module names no `hub` import, by relative import or by name."""
    from pathlib import Path

    import brainmass_hf.modeling_brainmass as modeling

    assert bm.BrainMassPreTrainedModel.push_to_hub is PreTrainedModel.push_to_hub
    source = Path(modeling.__file__).read_text()
    assert "hub" not in {line.split()[1].lstrip(".").split(".")[0] for line in source.splitlines()
                         if line.startswith(("import ", "from "))}
    assert "brainmass_hf.hub" not in source and "import_module" not in source
