"""Two processes with ``torchrun`` (gloo, CPU) train as one: see ``tests/ddp_worker.py`` for what each rank records."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from brainmass_hf.training import BrainMassPretrainingArguments, pretrain
from conftest import tiny_config

WORKER = Path(__file__).resolve().parent / "ddp_worker.py"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
        reason="torch.distributed with the gloo backend is not available",
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()),
               str(WORKER), str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


def test_both_ranks_end_with_identical_online_and_target_weights(ranks):
    assert ranks[0]["world_size"] == 2
    for part in ("online", "target"):
        for a, b in zip(ranks[0]["pretraining"][part], ranks[1]["pretraining"][part]):
            assert torch.equal(a, b), part


def test_ema_runs_once_per_optimizer_step_under_accumulation(ranks):
    for rank in ranks:  # 32 scans / (2 ranks × 2 per device) = 8 micro-batches = 4 optimizer steps per epoch
        assert rank["pretraining"]["steps"] == 8 and rank["pretraining"]["ema_calls"] == 8


def test_warmup_per_step_equals_the_single_process_run_with_the_same_global_batch(ranks, tmp_path, devfmri):
    args = BrainMassPretrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=8, num_train_epochs=2, warmup_epochs=2,
        logging_steps=1, save_strategy="no", disable_tqdm=True, seed=0,
    )
    single = pretrain(devfmri.select(range(32)), tiny_config(), args)
    rates = [h["learning_rate"] for h in single.state.log_history if "lra_loss" in h]
    assert rates == pytest.approx([1.5e-4] * 4 + [3e-4] * 4)
    for rank in ranks:
        assert rank["pretraining"]["rates"] == pytest.approx(rates)


def test_finetuning_loss_and_step_are_the_same_with_accumulation_2_and_batch_x2(ranks):
    for rank in ranks:
        batch, accumulated = rank["finetune_batch"], rank["finetune_accumulation"]
        assert accumulated["loss"] == pytest.approx(batch["loss"], rel=1e-4)
        for a, b in zip(batch["weights"], accumulated["weights"]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_sync_batchnorm_converts_every_batchnorm_and_says_it_needs_a_gpu(ranks):
    for rank in ranks:
        sync = rank["sync_batchnorm"]
        assert sync["batchnorms"] > 0 and sync["converted"] == sync["batchnorms"]
        assert "GPU" in sync["error"] and "sync_batchnorm=False" in sync["error"]
