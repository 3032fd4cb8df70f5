"""A checkpoint stored in bfloat16 (issue 18: how the large encoder fits the repository) classifies as its float32
original does: the paper protocol's AUCs agree to 0.005 on the same splits."""

import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModel

import brainmass_hf  # noqa: F401  (registers the model type)
from brainmass_hf.data import load_devfmri
from brainmass_hf.evaluation import evaluate

SMALL = Path(__file__).resolve().parents[1] / "checkpoints" / "brainmass-small-aal116"


@pytest.mark.slow
def test_bfloat16_storage_keeps_paper_protocol_auc_within_0_005(tmp_path):
    folder = tmp_path / "bf16"
    shutil.copytree(SMALL, folder)
    AutoModel.from_pretrained(SMALL).to(torch.bfloat16).save_pretrained(folder)
    assert AutoModel.from_pretrained(folder).dtype == torch.bfloat16  # from_pretrained keeps the stored dtype
    cohort = load_devfmri()
    kwargs = dict(protocols="paper", n_repeats=10, seed=0, pretrained_on_eval_scans=True, show_progress=False,
                  include_random_baseline=False)
    aucs = {}
    for name, path in [("fp32", SMALL), ("bf16", folder)]:
        report = evaluate(str(path), cohort, **kwargs)
        aucs[name] = next(r for r in report.results if r.method == "BrainMass").summary["auc"]["mean"]
    assert abs(aucs["bf16"] - aucs["fp32"]) <= 0.005, aucs
