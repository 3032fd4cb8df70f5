"""Pretraining from a streaming ``datasets.IterableDataset``: corpora larger than memory never load at once."""

import pytest
from datasets import load_dataset

from brainmass_hf.training import BrainMassPretrainingArguments, pretrain
from conftest import tiny_config


def _args(tmp_path, **kwargs):
    values = dict(output_dir=str(tmp_path), per_device_train_batch_size=8, max_steps=4, warmup_epochs=0,
                  logging_steps=1, save_strategy="no", disable_tqdm=True, seed=0)
    return BrainMassPretrainingArguments(**{**values, **kwargs})


@pytest.fixture
def parquet_stream(tmp_path, devfmri):
    devfmri.select(range(24)).to_parquet(str(tmp_path / "scans.parquet"))
    return load_dataset("parquet", data_files=str(tmp_path / "scans.parquet"), split="train", streaming=True)


def test_pretraining_streams_local_files_past_the_end_of_the_stream(tmp_path, parquet_stream):
    trainer = pretrain(parquet_stream, tiny_config(), _args(tmp_path / "run"))
    # 24 scans are 3 batches of 8: step 4 starts a second pass over the stream
    assert trainer.state.global_step == 4
    assert [h["step"] for h in trainer.state.log_history if "lra_loss" in h] == [1, 2, 3, 4]
    assert (tmp_path / "run" / "encoder" / "model.safetensors").exists()


def test_pretraining_from_an_in_memory_dataset_turned_iterable(tmp_path, devfmri):
    stream = devfmri.select(range(16)).to_iterable_dataset(num_shards=2)
    trainer = pretrain(stream, tiny_config(), _args(tmp_path, max_steps=2))
    assert trainer.state.global_step == 2


def test_a_stream_with_the_epoch_warmup_asks_for_warmup_steps(tmp_path, parquet_stream):
    # a stream has no length, so no epochs: the authors' epoch warm-up cannot be placed
    with pytest.raises(ValueError, match="warmup_steps"):
        pretrain(parquet_stream, tiny_config(), _args(tmp_path, warmup_epochs=None))


def test_a_stream_can_warm_up_over_optimizer_steps(tmp_path, parquet_stream):
    args = _args(tmp_path, warmup_epochs=None, warmup_steps=2, lr_scheduler_type="constant_with_warmup")
    rates = [h["learning_rate"] for h in pretrain(parquet_stream, tiny_config(), args).state.log_history
             if "lra_loss" in h]
    assert rates == pytest.approx([0.0, 1.5e-4, 3e-4, 3e-4])


def test_a_stream_whose_last_batch_would_be_one_scan_trains_past_it(tmp_path, devfmri):
    stream = devfmri.select(range(17)).to_iterable_dataset()  # 8 + 8 + 1: BatchNorm cannot train on the 1
    trainer = pretrain(stream, tiny_config(), _args(tmp_path, max_steps=3))
    assert trainer.state.global_step == 3  # step 3 comes from the stream's second pass
