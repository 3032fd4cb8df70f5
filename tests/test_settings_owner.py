"""One owner per setting (issue 20 item 2): the model config owns the preprocessing settings (FC kind, Fisher z, pFC
drop ratio and way, crop length, minimum time points, ROI count, atlas); the feature extractor is built from it, and
a folder whose preprocessor_config.json disagrees with its config.json does not load."""

import json
from pathlib import Path

import pytest
from transformers import AutoModel

import brainmass_hf as bm
from brainmass_hf.configuration_brainmass import FC_SETTING_NAMES, PREPROCESSOR_SETTING_NAMES
from brainmass_hf.training import BrainMassPretrainingTrainer
from conftest import tiny_config

SMALL = Path(__file__).resolve().parents[1] / "checkpoints" / "brainmass-small-aal116"


def _folder(tmp_path, **preprocessor_overrides):
    config = tiny_config(atlas_name="AAL-116", pfc_drop_ratio=0.5)
    bm.BrainMassModel(config).save_pretrained(tmp_path)
    bm.BrainMassFeatureExtractor.from_config(config).save_pretrained(tmp_path)
    path = tmp_path / "preprocessor_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **preprocessor_overrides}))
    return tmp_path


def test_feature_extractor_from_config_copies_every_setting_the_config_owns():
    config = tiny_config(fc_kind="pearson", fisher_z=True, pfc_drop_ratio=0.3, pfc_mask_way="window",
                         pfc_crop_length=50, min_timepoints=12, atlas_name="AAL-116")
    fe = bm.BrainMassFeatureExtractor.from_config(config)
    assert set(FC_SETTING_NAMES) < set(PREPROCESSOR_SETTING_NAMES)
    assert all(getattr(fe, name) == getattr(config, name) for name in PREPROCESSOR_SETTING_NAMES)


@pytest.mark.parametrize("loader", ["model", "feature_extractor"])
def test_folder_whose_preprocessor_config_disagrees_with_config_is_one_error_naming_both_values(tmp_path, loader):
    folder = _folder(tmp_path, pfc_drop_ratio=0.2, fc_kind="pearson")
    load = AutoModel.from_pretrained if loader == "model" else bm.BrainMassFeatureExtractor.from_pretrained
    with pytest.raises(ValueError) as error:
        load(folder)
    message = str(error.value)
    assert "pfc_drop_ratio: preprocessor_config.json has 0.2, config.json has 0.5" in message
    assert "fc_kind: preprocessor_config.json has 'pearson', config.json has 'ledoit_wolf'" in message
    assert str(folder) in message and "from_config" in message


def test_folder_whose_two_files_agree_loads_and_the_extractor_has_the_configs_settings(tmp_path):
    folder = _folder(tmp_path)
    AutoModel.from_pretrained(folder)
    assert bm.BrainMassFeatureExtractor.from_pretrained(folder).pfc_drop_ratio == 0.5


def test_shipped_checkpoint_files_agree():
    model = AutoModel.from_pretrained(SMALL)
    fe = bm.BrainMassFeatureExtractor.from_pretrained(SMALL)
    assert all(getattr(fe, name) == getattr(model.config, name) for name in PREPROCESSOR_SETTING_NAMES)


def test_feature_extractor_settings_follow_the_configs_range_rule():
    with pytest.raises(ValueError, match=r"pfc_drop_ratio must be in \[0, 1\); got 1.5"):
        bm.BrainMassFeatureExtractor(pfc_drop_ratio=1.5)
    with pytest.raises(ValueError, match="pfc_crop_length=5 is shorter than min_timepoints=10"):
        bm.BrainMassFeatureExtractor(pfc_mask_way="crop", pfc_crop_length=5)


def test_pretraining_trainer_refuses_a_feature_extractor_that_disagrees_with_the_model(tmp_path):
    model = bm.BrainMassForPreTraining(tiny_config())
    other = bm.BrainMassFeatureExtractor.from_config(tiny_config(pfc_drop_ratio=0.5))
    with pytest.raises(ValueError, match="pfc_drop_ratio: the processing_class has 0.5, the model config has 0.2"):
        BrainMassPretrainingTrainer(model=model, args=bm.training.BrainMassPretrainingArguments(
            output_dir=str(tmp_path), report_to="none"), processing_class=other)
