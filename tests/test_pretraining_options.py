"""Pretraining method options of issue 10: masking a masked ROI's row *and* column, representation-health metrics
(with a collapse warning) logged during pretraining, and the choice of downstream encoder feature."""

import warnings

import datasets
import numpy as np
import pytest
import torch

import brainmass_hf as bm
from brainmass_hf.connectivity import min_scan_length
from brainmass_hf.data_collator import random_masked_roi_indices
from brainmass_hf.evaluation import evaluate, extract_features
from brainmass_hf.modeling_brainmass import feature_std
from brainmass_hf.training import HEALTH_METRICS, BrainMassPretrainingArguments, BrainMassPretrainingTrainer, \
    effective_rank
from conftest import pretraining_batch, tiny_config


def _symmetric_fc(batch=3, r=116, seed=0):
    x = torch.randn(batch, 60, r, generator=torch.Generator().manual_seed(seed))
    return bm.functional_connectivity(x)


def _masked(model, fc, num_masked=10, seed=0):
    """``(tokens, indices)``: ``num_masked`` ROIs per scan drawn with ``seed``, and the masked token sequences."""
    indices = random_masked_roi_indices(fc.shape[0], fc.shape[1], num_masked, generator=torch.Generator().manual_seed(seed))
    return model._mask_tokens(fc, indices), indices


def _rois(model, batch):
    """The masked-ROI choices of a batch of ``batch`` scans (what the collator draws)."""
    rois = bm.draw_pretraining_choices(torch.ones(batch, 10, dtype=torch.bool), model.config)
    return {k: v for k, v in rois.items() if k.endswith("masked_roi_indices")}


def _with_masked_rows_and_columns_changed(fc, indices):
    changed = fc.clone()
    for b, rois in enumerate(indices):
        noise = torch.randn(len(rois), fc.shape[-1])
        changed[b, rois, :] = noise
        changed[b, :, rois] = noise.T
    return changed


def test_mask_roi_columns_hides_the_masked_rows_from_the_encoder_input():
    model = bm.BrainMassForPreTraining(tiny_config(mask_roi_columns=True))
    fc = _symmetric_fc()
    tokens, indices = _masked(model, fc)
    changed = _with_masked_rows_and_columns_changed(fc, indices)
    tokens_changed, indices_changed = _masked(model, changed)
    assert torch.equal(indices, indices_changed)
    assert torch.equal(tokens, tokens_changed)  # nothing of the masked rows reaches the encoder


def test_without_the_option_masked_rows_leak_through_columns_as_the_authors_code():
    model = bm.BrainMassForPreTraining(tiny_config())
    fc = _symmetric_fc()
    tokens, indices = _masked(model, fc)
    is_masked = torch.zeros(fc.shape[:2], dtype=torch.bool).scatter_(1, indices, True)
    prefix = model.config.num_prefix_tokens
    old = torch.where(is_masked[..., None], model.mask_embedding, fc)  # the authors' masking: rows only
    assert torch.equal(tokens[:, prefix:], old + model.position_embeddings[:, prefix:])
    tokens_changed, _ = _masked(model, _with_masked_rows_and_columns_changed(fc, indices))
    assert not torch.allclose(tokens, tokens_changed)  # the leak the option closes


def test_mask_roi_columns_is_saved_and_adds_no_parameters(tmp_path):
    on = bm.BrainMassForPreTraining(tiny_config(mask_roi_columns=True))
    off = bm.BrainMassForPreTraining(tiny_config())
    assert sum(p.numel() for p in on.parameters()) == sum(p.numel() for p in off.parameters())
    on.save_pretrained(tmp_path)
    assert bm.BrainMassForPreTraining.from_pretrained(tmp_path).config.mask_roi_columns is True


class _ZeroHead(torch.nn.Module):
    def forward(self, hidden):
        return hidden * 0.0


def test_mask_roi_columns_keeps_the_original_rows_as_reconstruction_targets():
    """A head that predicts zeros scores the mean square of the target rows: the original FC rows, unmasked."""
    model = bm.BrainMassForPreTraining(tiny_config(mask_roi_columns=True)).eval()
    model.mrm_head = _ZeroHead()
    fc = _symmetric_fc(batch=2)
    out = model(connectivity_view1=fc, connectivity_view2=fc, **_rois(model, 2))
    rows = torch.stack([fc[b, out.masked_roi_indices[b]] for b in range(2)])
    assert torch.allclose(out.mrm_loss, rows.pow(2).mean())


def test_collapsed_features_have_zero_std_and_effective_rank_one():
    collapsed = torch.randn(1, 928).expand(64, -1)
    assert feature_std(collapsed) < 1e-6
    assert effective_rank(collapsed) == pytest.approx(1.0, abs=1e-3)
    assert effective_rank(torch.zeros(8, 20)) == pytest.approx(1.0)


def test_spread_features_have_std_near_one_over_sqrt_dim_and_high_effective_rank():
    spread = torch.randn(64, 928, generator=torch.Generator().manual_seed(0))
    assert feature_std(spread) == pytest.approx(928**-0.5, rel=0.1)
    assert effective_rank(spread) > 50  # at most min(64, 928)


def test_pretraining_output_carries_representation_health_without_gradients():
    model = bm.BrainMassForPreTraining(tiny_config()).train()
    fc = _symmetric_fc(batch=4)
    out = model(connectivity_view1=fc, connectivity_view2=fc, **_rois(model, 4))
    assert out.pooled_output.shape == (4, model.config.pooled_size) and not out.pooled_output.requires_grad
    assert out.feature_std.shape == () and 0 < float(out.feature_std) < 1
    assert out.online_target_cosine.shape == () and -1 <= float(out.online_target_cosine) <= 1
    assert not out.feature_std.requires_grad and not out.online_target_cosine.requires_grad


def _tiny_pretraining(tmp_path, model, scans, **kwargs):
    args = BrainMassPretrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=4, logging_steps=1, warmup_epochs=0,
        save_strategy="no", disable_tqdm=True, use_cpu=True, **kwargs,
    )
    data = datasets.Dataset.from_dict({"time_series": [s.tolist() for s in scans]})
    trainer = BrainMassPretrainingTrainer(model=model, args=args, train_dataset=data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    collapse = [w for w in caught if "Representation collapse" in str(w.message)]
    return [h for h in trainer.state.log_history if "lra_loss" in h], collapse


def test_pretraining_logs_representation_health_and_stays_quiet_when_healthy(tmp_path, devfmri_scans):
    logged, collapse = _tiny_pretraining(tmp_path, bm.BrainMassForPreTraining(tiny_config()), devfmri_scans[:8])
    assert len(logged) == 4
    for entry in logged:
        assert all(np.isfinite(entry[name]) for name in HEALTH_METRICS), entry
        assert entry["feature_effective_rank"] > 1.5
    assert collapse == []


def test_collapse_is_warned_once_when_every_scan_maps_to_one_vector(tmp_path, devfmri_scans):
    model = bm.BrainMassForPreTraining(tiny_config())
    with torch.no_grad():
        model.brainmass.readout.dense.weight.zero_()  # readout = LeakyReLU(bias): the same vector for every scan
    logged, collapse = _tiny_pretraining(tmp_path, model, devfmri_scans[:8], learning_rate=0.0)
    assert all(h["feature_std"] < 1e-6 and h["feature_effective_rank"] == pytest.approx(1.0, abs=1e-3) for h in logged)
    assert len(collapse) == 1  # COLLAPSE_PATIENCE (3) collapsed log entries of 4, warned once


def _scans(n=6, r=116, t=40, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((t, r)).astype(np.float32) for _ in range(n)]


def test_extract_features_mean_hidden_is_the_mean_last_hidden_state():
    encoder = bm.BrainMassModel(tiny_config()).eval()
    scans = _scans()
    readout = extract_features(encoder, scans, view="full")
    mean_hidden = extract_features(encoder, scans, view="full", feature="mean_hidden")
    assert readout.shape == (6, 116 * 8) and mean_hidden.shape == (6, 116)
    time_series, time_mask = bm.pad_time_series(scans)
    with torch.no_grad():
        hidden = encoder(time_series=torch.as_tensor(time_series), time_mask=torch.as_tensor(time_mask))
    np.testing.assert_allclose(mean_hidden, hidden.last_hidden_state.mean(dim=1).numpy(), atol=1e-5)
    np.testing.assert_allclose(readout, hidden.pooler_output.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="feature must be one of"):
        extract_features(encoder, scans, feature="cls")


def test_evaluate_uses_the_requested_feature(tmp_path):
    scans = _scans(n=20)
    data = datasets.Dataset.from_dict({"time_series": [s.tolist() for s in scans], "label": [0, 1] * 10})
    encoder = bm.BrainMassModel(tiny_config())
    report = evaluate(encoder, data, protocols="paper", n_repeats=2, feature="mean_hidden", show_progress=False,
                      include_random_baseline=False)
    assert report.settings["feature"] == "mean_hidden"
    with pytest.raises(ValueError, match="feature must be one of"):
        evaluate(encoder, data, protocols="paper", n_repeats=2, feature="cls", show_progress=False)


def test_mask_roi_columns_must_be_a_bool():
    with pytest.raises(ValueError, match="mask_roi_columns must be True or False"):
        tiny_config(mask_roi_columns="yes")


def test_window_views_are_contiguous_and_keep_as_many_points_as_drop_views():
    time_mask = torch.ones(3, 50, dtype=torch.bool)
    time_mask[1, 40:] = False
    kept = bm.pseudo_fc_time_mask(time_mask, drop_ratio=0.2, mask_way="window",
                                  generator=torch.Generator().manual_seed(0))
    assert not (kept & ~time_mask).any()
    assert kept.sum(dim=1).tolist() == [40, 32, 40]  # T - int(0.2 T), as "drop"
    for row in kept:
        index = row.nonzero().flatten()
        assert torch.equal(index, torch.arange(int(index[0]), int(index[-1]) + 1))  # one contiguous span


def test_window_views_of_one_scan_come_from_different_time_spans():
    generator = torch.Generator().manual_seed(0)
    time_mask = torch.ones(1, 100, dtype=torch.bool)
    starts = {int(bm.pseudo_fc_time_mask(time_mask, 0.5, "window", generator=generator)[0].nonzero()[0])
              for _ in range(20)}
    assert len(starts) > 5 and min(starts) >= 0 and max(starts) <= 50


def test_window_views_pretrain_with_the_drop_minimum_scan_length():
    config = tiny_config(pfc_mask_way="window")
    assert min_scan_length(config) == min_scan_length(tiny_config())
    model = bm.BrainMassForPreTraining(config).train()
    time_series = torch.randn(4, 40, 116)
    out = model(**pretraining_batch(time_series, config))
    assert torch.isfinite(out.loss)
