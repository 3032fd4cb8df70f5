"""FC mixup in latent alignment (`config.fc_mixup_alpha`, issue 19): drawn by the collator, Un-Mix loss in the model."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from conftest import pretraining_batch, tiny_config

import brainmass_hf as bm
from brainmass_hf.connectivity import connectivity_views
from brainmass_hf.data_collator import random_mixup_choices
from brainmass_hf.training import BrainMassPretrainingArguments, pretrain

R = 12


def _scans(n=6, t=40, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((t, R)).astype(np.float32) for _ in range(n)]


def test_mixup_choices_are_a_permutation_and_beta_weights_from_the_one_generator():
    a = random_mixup_choices(64, 0.4, generator=torch.Generator().manual_seed(5))
    b = random_mixup_choices(64, 0.4, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a["mixup_permutation"], b["mixup_permutation"])
    assert torch.equal(a["mixup_lambdas"], b["mixup_lambdas"])
    assert sorted(a["mixup_permutation"].tolist()) == list(range(64))
    lambdas = a["mixup_lambdas"]
    assert lambdas.dtype == torch.float32 and bool(((lambdas >= 0) & (lambdas <= 1)).all())
    assert (lambdas < 0.1).sum() + (lambdas > 0.9).sum() > 20  # Beta(0.4, 0.4) piles up near 0 and 1


def test_without_mixup_the_draws_are_unchanged_and_hold_no_mixup_keys():
    mask = torch.ones(4, 40, dtype=torch.bool)
    plain = bm.draw_pretraining_choices(mask, tiny_config(R), torch.Generator().manual_seed(1))
    mixed = bm.draw_pretraining_choices(mask, tiny_config(R, fc_mixup_alpha=1.0), torch.Generator().manual_seed(1))
    assert "mixup_lambdas" not in plain and set(mixed) - set(plain) == {"mixup_permutation", "mixup_lambdas"}
    for key in plain:  # mixup draws come after every other draw
        assert torch.equal(plain[key], mixed[key])


def _model_and_batch(alpha=1.0):
    torch.manual_seed(0)
    model = bm.BrainMassForPreTraining(tiny_config(R, fc_mixup_alpha=alpha)).eval()
    batch = pretraining_batch(torch.from_numpy(np.stack(_scans())), model.config)
    return model, batch


def _mixed_loss(model, batch, permutation, lambdas):
    plain = {k: v for k, v in batch.items() if not k.startswith("mixup_")}
    total = model(**plain, mixup_permutation=permutation, mixup_lambdas=lambdas).lra_loss
    model.config.fc_mixup_alpha = 0.0
    symmetric = model(**plain).lra_loss
    model.config.fc_mixup_alpha = 1.0
    return 2.0 * total - symmetric  # lra = (symmetric + 2 · mixed) / 2


def test_unmixed_weights_give_the_one_direction_alignment_loss():
    model, batch = _model_and_batch()
    n = batch["time_series"].shape[0]
    mixed = _mixed_loss(model, batch, torch.arange(n), torch.ones(n))
    views = connectivity_views(batch["time_series"], batch["time_mask"], settings=model.config,
                                  view_time_masks=batch["view_time_masks"])
    with torch.no_grad():
        prediction = model.predictor(model.projection(model.brainmass(connectivity=views[0]).pooler_output))
        target = model.target_projection(model.target_encoder(connectivity=views[1]).pooler_output)
    expected = 2.0 * (2.0 - 2.0 * torch.nn.functional.cosine_similarity(prediction, target, dim=-1)).mean()
    torch.testing.assert_close(mixed, expected, atol=1e-5, rtol=1e-5)


def test_a_scan_fully_replaced_by_its_partner_is_aligned_with_the_partners_target():
    model, batch = _model_and_batch()
    n = batch["time_series"].shape[0]
    reverse = torch.arange(n - 1, -1, -1)
    # λ = 0: the input is the partner's view and the whole weight is on the partner's target: the same pairs as
    # λ = 1 without mixing, in another order (eval mode: BatchNorm uses running statistics)
    torch.testing.assert_close(_mixed_loss(model, batch, reverse, torch.zeros(n)),
                               _mixed_loss(model, batch, torch.arange(n), torch.ones(n)), atol=1e-5, rtol=1e-5)


def test_a_mixed_scan_is_aligned_with_both_targets_in_proportion():
    model, batch = _model_and_batch()
    n = batch["time_series"].shape[0]
    partner, weight = torch.arange(n - 1, -1, -1), torch.linspace(0.1, 0.9, n)
    mixed_loss = _mixed_loss(model, batch, partner, weight)
    views = connectivity_views(batch["time_series"], batch["time_mask"], settings=model.config,
                               view_time_masks=batch["view_time_masks"])
    with torch.no_grad():
        mixed = weight[:, None, None] * views[0] + (1 - weight[:, None, None]) * views[0][partner]
        prediction = model.predictor(model.projection(model.brainmass(connectivity=mixed).pooler_output))
        target = model.target_projection(model.target_encoder(connectivity=views[1]).pooler_output)
    distance = lambda z: 2.0 - 2.0 * torch.nn.functional.cosine_similarity(prediction, z, dim=-1)  # noqa: E731
    expected = 2.0 * (weight * distance(target) + (1 - weight) * distance(target[partner])).mean()
    torch.testing.assert_close(mixed_loss, expected, atol=1e-5, rtol=1e-5)


def test_mixup_without_its_draws_names_the_collator_fix():
    model, batch = _model_and_batch()
    plain = {k: v for k, v in batch.items() if not k.startswith("mixup_")}
    with pytest.raises(ValueError, match="fc_mixup_alpha > 0 needs mixup_permutation"):
        model(**plain)
    assert "mixup_lambdas" in batch  # pretraining_batch draws with the config, mixup included
    model(**batch)


@pytest.mark.parametrize("alpha", [-0.5, float("inf"), True])
def test_config_refuses_a_bad_alpha(alpha):
    with pytest.raises(ValueError, match="fc_mixup_alpha"):
        tiny_config(R, fc_mixup_alpha=alpha)


def test_pretrain_with_mixup_trains_from_the_config_alone(tmp_path):
    data = datasets.Dataset.from_dict({"time_series": [s.tolist() for s in _scans(6)]})
    args = BrainMassPretrainingArguments(output_dir=str(tmp_path / "run"), per_device_train_batch_size=3,
                                         num_train_epochs=2, save_strategy="no", report_to=[], disable_tqdm=True,
                                         logging_steps=1)
    trainer = pretrain(data, tiny_config(R, fc_mixup_alpha=0.4), args)
    losses = [h["lra_loss"] for h in trainer.state.log_history if "lra_loss" in h]
    assert losses and all(np.isfinite(losses))
    assert bm.BrainMassConfig.from_pretrained(tmp_path / "run" / "encoder").fc_mixup_alpha == 0.4
