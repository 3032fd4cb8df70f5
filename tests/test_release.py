"""The released small checkpoint loads with the Auto classes and reproduces the numbers its card states."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoFeatureExtractor, AutoModel

import brainmass_hf  # noqa: F401  (registers the model type)
from brainmass_hf.data import load_devfmri, load_npz_bundle
from brainmass_hf.evaluation import evaluate

REPO = Path(__file__).resolve().parents[1]
SMALL = REPO / "checkpoints" / "brainmass-small-aal116"
FACTS = json.loads((REPO / "model_cards" / "brainmass-small-aal116.json").read_text())
SHARED_ABIDE = REPO.parent / "shared" / "data" / "abide1_aal116"


def test_small_checkpoint_loads_and_gives_928_dim_features_for_aal116_scans():
    model = AutoModel.from_pretrained(SMALL).eval()
    fe = AutoFeatureExtractor.from_pretrained(SMALL)
    assert model.config.num_rois == 116 and model.config.num_hidden_layers == 8
    assert fe.roi_names[0] == "Precentral_L" and len(fe.roi_names) == 116
    scans = [np.asarray(x, dtype=np.float32) for x in load_devfmri()[:3]["time_series"]]
    with torch.no_grad():
        out = model(**fe(scans, view="full"))
    assert out.pooler_output.shape == (3, 928) and torch.isfinite(out.pooler_output).all()


def _card_rows(cohort_prefix: str) -> dict:
    return {r["protocol"]: r for r in FACTS["results"]["rows"] if r["cohort"].startswith(cohort_prefix)}


def _check_against_card(report, rows):
    """Every AUC of the card within 0.002 of the re-run (the card rounds to 3 decimals; thread counts change the last
    float bits of matmuls, which can move a rounded digit by one)."""
    by = {}
    for result in report.results:
        by.setdefault(result.name, {})[result.method] = result.summary["auc"]
    for protocol, row in rows.items():
        for column, method in [("BrainMass (this file)", "BrainMass"), ("random init", "random-init BrainMass"),
                               ("raw FC", "raw FC")]:
            stats = by[protocol][method]
            mean, std = (float(x) for x in row[column].split("±"))
            assert abs(stats["mean"] - mean) <= 0.002 and abs(stats["std"] - std) <= 0.002, (protocol, method, stats, row)


@pytest.mark.slow
def test_small_checkpoint_reproduces_its_card_on_the_bundled_cohort():
    report = evaluate(str(SMALL), load_devfmri(), protocols="paper,linear_probe,few_shot", few_shot_k=(10, 20),
                      n_repeats=10, seed=0, pretrained_on_eval_scans=True, show_progress=False)
    _check_against_card(report, _card_rows("bundled devfmri"))


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_ABIDE.is_dir(), reason="../shared/data/abide1_aal116 is not here (kept outside the repo)")
def test_small_checkpoint_reproduces_its_card_on_abide():
    abide = load_npz_bundle(SHARED_ABIDE / "timeseries.npz", SHARED_ABIDE / "subjects.csv", label_column="diagnosis",
                            site_column="site", num_rois=116)
    report = evaluate(str(SMALL), abide, protocols="paper,linear_probe,few_shot", few_shot_k=(10, 20), n_repeats=10,
                      seed=0, pretrained_on_eval_scans=True, label_column="label", site_column="site",
                      show_progress=False)
    _check_against_card(report, _card_rows("ABIDE"))
