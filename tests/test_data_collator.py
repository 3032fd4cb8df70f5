"""The collators draw every random choice of a step (issue 20 item 1): which time points each pFC view keeps and
which ROIs the masked-ROI objectives hide come in the batch, from the collator's generator; the models draw nothing."""

import numpy as np
import pytest
import torch

import brainmass_hf as bm
from brainmass_hf.connectivity import connectivity_views, num_timepoints_kept
from conftest import pretraining_batch, tiny_config


def _rows(scans, labels=None):
    return [{"time_series": s, "subject_id": f"sub-{i}", **({"label": labels[i]} if labels else {})}
            for i, s in enumerate(scans)]


def _ragged(devfmri_scans):
    """Four real scans of 168, 120, 90 and 168 time points."""
    return [devfmri_scans[0], devfmri_scans[1][:120], devfmri_scans[2][:90], devfmri_scans[3]]


def test_pretraining_batch_holds_two_views_that_each_drop_a_fifth_of_the_valid_points(devfmri_scans):
    config = tiny_config()
    batch = bm.DataCollatorForPseudoFC.from_config(config, generator=torch.Generator().manual_seed(0))(
        _rows(_ragged(devfmri_scans)))
    views, valid = batch["view_time_masks"], batch["time_mask"]
    assert views.shape == (4, 2, 168) and views.dtype == torch.bool
    assert not (views & ~valid[:, None]).any()  # a view keeps valid points only
    for scan, length in enumerate((168, 120, 90, 168)):  # SPEC §1: int(20 * T / 100) points dropped per view
        assert views[scan].sum(-1).tolist() == [length - int(0.2 * length)] * 2
        kept = views[scan, 0].nonzero().flatten()
        assert (kept.diff() > 1).any()  # dropped points are spread, not one block cut off
    assert not torch.equal(views[:, 0], views[:, 1])  # independent views


def test_pretraining_batch_holds_distinct_masked_rois_per_scan_for_each_objective(devfmri_scans):
    config = tiny_config(mrm_num_masked=5, mrc_num_masked=10)
    batch = bm.DataCollatorForPseudoFC.from_config(config)(_rows(devfmri_scans[:8]))
    for name, k in (("mrm_masked_roi_indices", 5), ("mrc_masked_roi_indices", 10)):
        indices = batch[name]
        assert indices.shape == (8, k) and indices.min() >= 0 and indices.max() < 116
        assert all(len(set(row.tolist())) == k for row in indices)


def test_the_same_generator_seed_gives_the_same_pretraining_batch(devfmri_scans):
    collator = bm.DataCollatorForPseudoFC.from_config(tiny_config())
    rows = _rows(_ragged(devfmri_scans))
    first = collator.__class__(**{**vars(collator), "generator": torch.Generator().manual_seed(4)})(rows)
    torch.manual_seed(123)  # the global RNG plays no part
    second = collator.__class__(**{**vars(collator), "generator": torch.Generator().manual_seed(4)})(rows)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_collator_placement_computes_the_views_the_model_computes_from_the_same_draws(devfmri_scans):
    config = tiny_config()
    rows = _rows(_ragged(devfmri_scans))
    on_model = bm.DataCollatorForPseudoFC.from_config(config, generator=torch.Generator().manual_seed(1))(rows)
    in_collator = bm.DataCollatorForPseudoFC.from_config(
        config, compute_fc_on="collator", generator=torch.Generator().manual_seed(1))(rows)
    views = connectivity_views(on_model["time_series"], on_model["time_mask"], settings=config,
                               view_time_masks=on_model["view_time_masks"])
    assert (views[0] - in_collator["connectivity_view1"]).abs().max() < 1e-6
    assert (views[1] - in_collator["connectivity_view2"]).abs().max() < 1e-6
    for name in ("mrm_masked_roi_indices", "mrc_masked_roi_indices"):
        assert torch.equal(on_model[name], in_collator[name])
    # and each view is the FC of exactly the points its mask keeps
    scan, view = 2, 1
    points = on_model["time_series"][scan][on_model["view_time_masks"][scan, view]]
    assert (views[view][scan] - bm.functional_connectivity(points, kind="ledoit_wolf")).abs().max() < 1e-5


def test_pretraining_with_dropout_off_gives_the_same_loss_for_the_same_batch_twice(devfmri_scans):
    model = bm.BrainMassForPreTraining(tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).train()
    batch = bm.DataCollatorForPseudoFC.from_config(model.config)(_rows(_ragged(devfmri_scans)))
    state = torch.get_rng_state()
    first = model(**batch)
    assert torch.equal(torch.get_rng_state(), state)  # the step drew nothing from the global RNG
    torch.manual_seed(99)
    second = model(**batch)
    for name in ("loss", "lra_loss", "mrm_loss", "mrc_loss", "mrc_accuracy"):
        assert torch.equal(first[name], second[name]), name
    assert torch.equal(first.masked_roi_indices, batch["mrm_masked_roi_indices"])


def test_pretraining_without_the_drawn_choices_is_one_clear_error():
    model = bm.BrainMassForPreTraining(tiny_config()).train()
    time_series = torch.randn(2, 40, 116)
    with pytest.raises(ValueError, match=r"draws nothing.*view_time_masks.*DataCollatorForPseudoFC.*"
                                         r"draw_pretraining_choices"):
        model(time_series=time_series)
    choices = pretraining_batch(time_series, model.config)
    del choices["mrc_masked_roi_indices"]
    with pytest.raises(ValueError, match=r"draws nothing: pass mrc_masked_roi_indices \(batch_size, 10\)"):
        model(**choices)


def test_masked_roi_count_other_than_the_configs_is_one_clear_error():
    model = bm.BrainMassForPreTraining(tiny_config(mrm_num_masked=3)).train()
    batch = bm.DataCollatorForPseudoFC(bm.BrainMassFeatureExtractor.from_config(model.config))(
        _rows([np.random.default_rng(i).standard_normal((40, 116)).astype(np.float32) for i in range(2)]))
    with pytest.raises(ValueError, match=r"mrm_masked_roi_indices must have shape \(batch_size, 3\).*got \(2, 5\)"
                                         r".*from_config"):
        model(**batch)


def test_view_time_masks_of_the_wrong_shape_are_one_clear_error():
    model = bm.BrainMassForPreTraining(tiny_config())
    batch = pretraining_batch(torch.randn(2, 40, 116), model.config)
    batch["view_time_masks"] = batch["view_time_masks"][:, :1]
    with pytest.raises(ValueError, match=r"view_time_masks must have shape \(batch_size, 2, num_timepoints\) = "
                                         r"\(2, 2, 40\); got \(2, 1, 40\)"):
        model(**batch)


@pytest.mark.parametrize("mask_way", ["crop", "window"])
def test_views_of_other_mask_ways_come_from_the_collator_too(devfmri_scans, mask_way):
    config = tiny_config(pfc_mask_way=mask_way, pfc_crop_length=40)
    batch = bm.DataCollatorForPseudoFC.from_config(config)(_rows(_ragged(devfmri_scans)))
    for scan, length in enumerate((168, 120, 90, 168)):
        assert batch["view_time_masks"][scan].sum(-1).tolist() == [num_timepoints_kept(length, config)] * 2
    model = bm.BrainMassForPreTraining(config).train()
    assert torch.isfinite(model(**batch).loss)


def test_finetuning_collator_draws_one_pfc_view_as_the_time_mask_and_full_view_keeps_all(devfmri_scans):
    config = tiny_config(num_labels=2)
    fe = bm.BrainMassFeatureExtractor.from_config(config)
    rows = _rows(_ragged(devfmri_scans), labels=[0, 1, 0, 1])
    pfc = bm.DataCollatorForConnectomeClassification(fe, generator=torch.Generator().manual_seed(0))(rows)
    again = bm.DataCollatorForConnectomeClassification(fe, generator=torch.Generator().manual_seed(0))(rows)
    full = bm.DataCollatorForConnectomeClassification(fe, view="full")(rows)
    assert torch.equal(pfc["time_mask"], again["time_mask"]) and torch.equal(pfc["labels"], torch.tensor([0, 1, 0, 1]))
    assert full["time_mask"].sum(-1).tolist() == [168, 120, 90, 168]
    assert pfc["time_mask"].sum(-1).tolist() == [168 - 33, 120 - 24, 90 - 18, 168 - 33]
    assert not (pfc["time_mask"] & ~full["time_mask"]).any()
    # the collator placement gives the FC of that same view
    in_collator = bm.DataCollatorForConnectomeClassification(
        fe, compute_fc_on="collator", generator=torch.Generator().manual_seed(0))(rows)
    on_model = bm.connectivity.connectivity_view(pfc["time_series"], pfc["time_mask"], settings=config, pfc=False)
    assert (on_model - in_collator["connectivity"]).abs().max() < 1e-6


def test_masked_roi_counts_above_the_roi_count_are_one_clear_error():
    with pytest.raises(ValueError, match=r"mrc_num_masked=10 must be between 1 and the feature extractor's num_rois=8"):
        bm.DataCollatorForPseudoFC(bm.BrainMassFeatureExtractor(num_rois=8), mrm_num_masked=2)
