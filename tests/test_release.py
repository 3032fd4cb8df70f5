"""The released checkpoints load with the Auto classes and reproduce the numbers their cards state."""

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
# every released checkpoint: a facts file whose checkpoint folder holds weights and whose card has results
RELEASED = [
    facts for facts in (json.loads(p.read_text()) for p in sorted((REPO / "model_cards").glob("*.json")))
    if facts.get("results") and (REPO / facts["checkpoint"] / "model.safetensors").is_file()
]
IDS = [facts["name"] for facts in RELEASED]
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


def _card_rows(facts: dict, cohort_part: str) -> dict:
    return {r["protocol"]: r for r in facts["results"]["rows"] if cohort_part in r["cohort"]}


# card column -> evaluation method; a card shows the baselines its report held
COLUMNS = [("BrainMass (this file)", "BrainMass"), ("random init", "random-init BrainMass"), ("raw FC", "raw FC"),
           ("tangent_fc", "tangent_fc")]


def _check_against_card(report, rows):
    """Every AUC of the card within 0.002 of the re-run (the card rounds to 3 decimals; thread counts change the last
    float bits of matmuls, which can move a rounded digit by one)."""
    assert rows, "the card has no rows for this cohort"
    by = {}
    for result in report.results:
        by.setdefault(result.name, {})[result.method] = result.summary["auc"]
    for protocol, row in rows.items():
        for column, method in COLUMNS:
            if column not in row:
                continue
            stats = by[protocol][method]
            mean, std = (float(x) for x in row[column].split("±"))
            assert abs(stats["mean"] - mean) <= 0.002 and abs(stats["std"] - std) <= 0.002, (protocol, method, stats, row)


def _folder(facts: dict) -> Path:
    return REPO / facts["checkpoint"]


@pytest.mark.parametrize("facts", RELEASED, ids=IDS)
def test_released_checkpoint_config_is_its_preset_at_116_rois(facts):
    from brainmass_hf import BrainMassConfig

    config = BrainMassConfig.from_pretrained(_folder(facts))
    preset = BrainMassConfig.from_preset(facts["preset"], num_rois=116)
    for name in ("num_hidden_layers", "num_attention_heads", "intermediate_size", "readout_dim", "num_rois"):
        assert getattr(config, name) == getattr(preset, name), name


@pytest.mark.slow
@pytest.mark.parametrize("facts", RELEASED, ids=IDS)
def test_released_checkpoint_reproduces_its_card_on_the_bundled_cohort(facts):
    report = evaluate(str(_folder(facts)), load_devfmri(), protocols="paper,linear_probe,few_shot",
                      few_shot_k=(10, 20), n_repeats=10, seed=0, pretrained_on_eval_scans=True, show_progress=False)
    _check_against_card(report, _card_rows(facts, "bundled devfmri"))


def _abide():
    return load_npz_bundle(SHARED_ABIDE / "timeseries.npz", SHARED_ABIDE / "subjects.csv", label_column="diagnosis",
                           site_column="site", num_rois=116)


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_ABIDE.is_dir(), reason="../shared/data/abide1_aal116 is not here (kept outside the repo)")
@pytest.mark.parametrize("facts", RELEASED, ids=IDS)
def test_released_checkpoint_reproduces_its_card_on_abide(facts):
    report = evaluate(str(_folder(facts)), _abide(), protocols="paper,linear_probe,few_shot", few_shot_k=(10, 20),
                      n_repeats=10, seed=0, pretrained_on_eval_scans=True, label_column="label",
                      site_column="site", show_progress=False)
    _check_against_card(report, _card_rows(facts, "(site-stratified)"))
