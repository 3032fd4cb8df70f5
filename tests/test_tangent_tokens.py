"""Tangent-space input tokens (`config.input_space="tangent"`, issue 19): FC mapped to the tangent space at the
pretraining corpus's reference point, saved with the weights and applied to every input."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch

import brainmass_hf as bm
from brainmass_hf.connectivity import (
    connectivity_views,
    TANGENT_EIGENVALUE_FLOOR,
    functional_connectivity,
    spd_geometric_mean,
    spd_inverse_sqrt,
    tangent_space,
    tangent_tokens,
)
from brainmass_hf.evaluation import random_init_like
from brainmass_hf.training import BrainMassPretrainingArguments, fit_tangent_reference, pretrain
from brainmass_hf.validation import BrainMassDataError

from conftest import pretraining_batch, tiny_config

R = 12


def _scans(n=8, t=40, r=R, seed=0):
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((r, r)) * 0.4 + np.eye(r)  # correlated ROIs: a reference far from the identity
    return [(rng.standard_normal((t, r)) @ mixing).astype(np.float32) for _ in range(n)]


def _fitted(model, scans):
    fc = functional_connectivity(np.stack(scans), kind="ledoit_wolf").double()
    reference = spd_geometric_mean(fc)
    model.set_tangent_reference(reference, num_scans=len(scans))
    return fc, reference


def test_tangent_tokens_equal_the_float64_tangent_space_to_1e_5():
    fc = functional_connectivity(np.stack(_scans()), kind="ledoit_wolf")
    reference = spd_geometric_mean(fc.double())
    tokens = tangent_tokens(fc, spd_inverse_sqrt(reference).float())
    assert tokens.dtype == torch.float32
    np.testing.assert_allclose(tokens.double().numpy(), tangent_space(fc, reference).numpy(), atol=1e-5)


def test_tangent_tokens_of_a_singular_matrix_are_finite_not_minus_infinity():
    singular = functional_connectivity(torch.randn(5, R))  # Pearson of 5 points: rank 4
    tokens = tangent_tokens(singular[None], torch.eye(R))
    assert torch.isfinite(tokens).all()
    assert tokens.min() >= np.log(TANGENT_EIGENVALUE_FLOOR) - 1e-3 * abs(np.log(TANGENT_EIGENVALUE_FLOOR))


def test_the_model_maps_every_input_at_its_saved_reference_and_reloads_it(tmp_path):
    scans = _scans()
    model = bm.BrainMassModel(tiny_config(R, input_space="tangent")).eval()
    assert torch.equal(model.embeddings.whitening, torch.eye(R))  # identity until fitted
    fc, reference = _fitted(model, scans)
    assert model.config.tangent_reference_scans == len(scans)
    out = model(connectivity=fc.float(), output_hidden_states=True)
    np.testing.assert_allclose(out.hidden_states[0].double().numpy(), tangent_space(fc, reference).numpy(),
                               atol=1e-5)
    from_series = model(time_series=torch.from_numpy(np.stack(scans))).pooler_output
    torch.testing.assert_close(from_series, out.pooler_output, atol=1e-5, rtol=1e-5)
    model.save_pretrained(tmp_path)
    loaded = bm.BrainMassModel.from_pretrained(tmp_path).eval()
    assert torch.equal(loaded.embeddings.whitening, model.embeddings.whitening)
    assert loaded.config.tangent_reference_scans == len(scans)
    torch.testing.assert_close(loaded(connectivity=fc.float()).pooler_output, out.pooler_output)


def test_a_correlation_model_has_no_embedding_state_and_takes_fc_rows_as_tokens():
    model = bm.BrainMassModel(tiny_config(R)).eval()
    assert not any(k.startswith("embeddings.") for k in model.state_dict())
    fc = functional_connectivity(np.stack(_scans(2)), kind="ledoit_wolf")
    assert torch.equal(model(connectivity=fc, output_hidden_states=True).hidden_states[0], fc)
    with pytest.raises(ValueError, match="input_space='tangent'"):
        model.set_tangent_reference(torch.eye(R), 1)


def test_pretraining_objectives_read_the_tangent_tokens():
    """A tangent model at the identity reference on views C gives the losses of the same weights as a correlation
    model on views log C: every objective (alignment, masked reconstruction targets, InfoNCE) reads the tokens."""
    scans = np.stack(_scans(4))
    torch.manual_seed(0)
    tangent = bm.BrainMassForPreTraining(tiny_config(R, input_space="tangent")).eval()
    plain = bm.BrainMassForPreTraining(tiny_config(R)).eval()
    plain.load_state_dict({k: v for k, v in tangent.state_dict().items() if "embeddings." not in k})
    batch = pretraining_batch(torch.from_numpy(scans), tangent.config)
    views = connectivity_views(batch["time_series"], batch["time_mask"], settings=tangent.config,
                                  view_time_masks=batch["view_time_masks"])
    masked = {k: batch[k] for k in ("mrm_masked_roi_indices", "mrc_masked_roi_indices")}
    out_tangent = tangent(connectivity_view1=views[0], connectivity_view2=views[1], **masked)
    logs = [tangent_tokens(v, torch.eye(R)) for v in views]
    out_plain = plain(connectivity_view1=logs[0], connectivity_view2=logs[1], **masked)
    for name in ("lra_loss", "mrm_loss", "mrc_loss"):
        torch.testing.assert_close(getattr(out_tangent, name), getattr(out_plain, name), atol=1e-5, rtol=1e-5)


def test_pretrain_fits_the_reference_on_the_pretraining_scans_and_saves_it(tmp_path):
    scans = _scans(6)
    data = datasets.Dataset.from_dict({"time_series": [s.tolist() for s in scans]})
    args = BrainMassPretrainingArguments(output_dir=str(tmp_path / "run"), per_device_train_batch_size=3,
                                         num_train_epochs=1, save_strategy="no", report_to=[], disable_tqdm=True)
    trainer = pretrain(data, tiny_config(R, input_space="tangent"), args)
    expected = spd_inverse_sqrt(spd_geometric_mean(functional_connectivity(np.stack(scans), kind="ledoit_wolf")))
    model = trainer.model
    for encoder in (model.brainmass, model.target_encoder):
        np.testing.assert_allclose(encoder.embeddings.whitening.numpy(), expected.numpy(), atol=1e-5)
    encoder = bm.BrainMassModel.from_pretrained(tmp_path / "run" / "encoder")
    assert encoder.config.tangent_reference_scans == 6
    torch.testing.assert_close(encoder.embeddings.whitening, model.brainmass.embeddings.whitening)


def test_fit_tangent_reference_refuses_a_stream():
    model = bm.BrainMassModel(tiny_config(R, input_space="tangent"))
    stream = datasets.Dataset.from_dict({"time_series": [s.tolist() for s in _scans(2)]}).to_iterable_dataset()
    with pytest.raises(ValueError, match="not a stream"):
        fit_tangent_reference(model, stream)


def test_a_checkpoint_without_its_reference_is_refused(tmp_path):
    bm.BrainMassModel(tiny_config(R)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="embeddings.whitening"):
        bm.BrainMassModel.from_pretrained(tmp_path, input_space="tangent")
    loaded = bm.BrainMassModel.from_pretrained(tmp_path, input_space="tangent", allow_partial_loading=True)
    assert torch.equal(loaded.embeddings.whitening, torch.eye(R))


def test_singular_connectivity_is_refused_at_inference_naming_the_batch_item():
    model = bm.BrainMassModel(tiny_config(R, input_space="tangent")).eval()
    good = functional_connectivity(np.stack(_scans(1)), kind="ledoit_wolf")
    singular = functional_connectivity(torch.randn(1, 5, R))
    with pytest.raises(BrainMassDataError, match=r"not positive definite: 'batch item 1'.*ledoit_wolf"):
        model(connectivity=torch.cat([good, singular]))


@pytest.mark.parametrize("settings, match", [
    (dict(input_space="tangent", fc_kind="pearson"), "fc_kind='ledoit_wolf'"),
    (dict(input_space="tangent", fisher_z=True), "fisher_z=False"),
    (dict(input_space="log"), "input_space must be one of"),
    (dict(tangent_reference_scans=-1), "non-negative integer"),
])
def test_config_refuses_settings_the_tangent_map_cannot_take(settings, match):
    with pytest.raises(ValueError, match=match):
        tiny_config(R, **settings)


def test_the_random_init_twin_keeps_the_fitted_reference_and_draws_new_weights():
    model = bm.BrainMassModel(tiny_config(R, input_space="tangent"))
    _fitted(model, _scans())
    twin = random_init_like(model, seed=3)
    assert torch.equal(twin.embeddings.whitening, model.embeddings.whitening)
    assert not torch.equal(twin.readout.dense.weight, model.readout.dense.weight)


def test_gradients_through_the_tangent_map_are_finite():
    model = bm.BrainMassModel(tiny_config(R, input_space="tangent")).eval()
    _fitted(model, _scans())
    fc = functional_connectivity(np.stack(_scans(3, seed=1)), kind="ledoit_wolf").requires_grad_(True)
    model(connectivity=fc).pooler_output.sum().backward()
    assert torch.isfinite(fc.grad).all() and fc.grad.abs().sum() > 0


def test_evaluate_states_the_tangent_tokens_and_their_reference_in_the_report():
    from brainmass_hf.evaluation import evaluate

    scans = _scans(20, t=60)
    data = datasets.Dataset.from_dict({"time_series": [s.tolist() for s in scans], "label": [0, 1] * 10})
    model = bm.BrainMassModel(tiny_config(R, input_space="tangent"))
    _fitted(model, scans[:8])
    report = evaluate(model, data, protocols="linear_probe", n_repeats=2, show_progress=False,
                      include_tangent_baseline=False)
    assert report.settings["input_space"] == "tangent" and report.settings["tangent_reference_scans"] == 8
    assert "tangent space at the reference point saved with the checkpoint (fitted on 8 pretraining scans" \
        in report.to_markdown()


def test_scans_connectivity_of_scans_of_different_lengths_equals_each_scans_own_fc():
    from brainmass_hf.connectivity import scans_connectivity

    scans = [s[:t] for s, t in zip(_scans(5, t=60), (60, 31, 45, 60, 20))]
    batched = scans_connectivity(scans, settings=tiny_config(R), batch_size=2)
    for scan, matrix in zip(scans, batched):
        torch.testing.assert_close(matrix, functional_connectivity(scan, kind="ledoit_wolf"), atol=1e-5, rtol=1e-5)
