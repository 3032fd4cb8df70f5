import copy

import numpy as np
import pytest
import torch
from torch import nn

import brainmass_hf as bm
from brainmass_hf.modeling_brainmass import random_masked_roi_indices
from conftest import tiny_config

PAPER = {  # whole pretraining system, online encoder incl. readout + g  (SPEC §2, R = 100)
    "small": (14.41, 4.90),
    "base": (25.36, 10.17),
    "large": (67.01, 30.58),
}


def _millions(n):
    return round(n / 1e6, 2)


@pytest.mark.parametrize("preset", ["small", "base", "large"])
def test_preset_has_paper_parameter_count(preset):
    model = bm.BrainMassForPreTraining(bm.BrainMassConfig.from_preset(preset, num_rois=100))
    total = sum(p.numel() for p in model.parameters())
    online = sum(p.numel() for m in model.online_modules() for p in m.parameters())
    assert (_millions(total), _millions(online)) == PAPER[preset]


@pytest.mark.parametrize("preset", ["small", "base", "large"])
def test_preset_runs_one_forward_pass(preset):
    config = bm.BrainMassConfig.from_preset(preset, num_rois=100)
    model = bm.BrainMassModel(config).eval()
    fc = bm.functional_connectivity(torch.randn(2, 60, 100))
    with torch.no_grad():
        out = model(connectivity=fc)
    assert out.last_hidden_state.shape == (2, 100, 100)
    assert out.pooler_output.shape == (2, 800)
    assert torch.isfinite(out.pooler_output).all()


def test_encoder_equals_torch_post_norm_transformer_stack_and_readout():
    config = bm.BrainMassConfig.from_preset("small", num_rois=100, num_hidden_layers=3)
    model = bm.BrainMassModel(config).eval()
    reference = nn.ModuleList(
        nn.TransformerEncoderLayer(100, 5, 1024, dropout=0.1, batch_first=True, norm_first=False) for _ in range(3)
    )
    readout = nn.Sequential(nn.Linear(100, 8), nn.LeakyReLU())
    for ours, ref in zip(model.encoder.layers, reference):
        ref.self_attn.in_proj_weight.data.copy_(ours.attention.in_proj.weight)
        ref.self_attn.in_proj_bias.data.copy_(ours.attention.in_proj.bias)
        ref.self_attn.out_proj.load_state_dict(ours.attention.out_proj.state_dict())
        ref.linear1.load_state_dict(ours.feed_forward.fc1.state_dict())
        ref.linear2.load_state_dict(ours.feed_forward.fc2.state_dict())
        ref.norm1.load_state_dict(ours.norm1.state_dict())
        ref.norm2.load_state_dict(ours.norm2.state_dict())
    readout[0].load_state_dict(model.readout.dense.state_dict())
    reference.eval()
    fc = bm.functional_connectivity(torch.randn(4, 80, 100))
    x = fc
    with torch.no_grad():
        for layer in reference:
            x = layer(x)
        expected = readout(x).flatten(1)
        out = model(connectivity=fc)
    assert torch.allclose(out.last_hidden_state, x, atol=1e-5)
    assert torch.allclose(out.pooler_output, expected, atol=1e-5)


def test_sdpa_and_eager_attention_agree():
    config = tiny_config()
    model = bm.BrainMassModel(config).eval()
    fc = bm.functional_connectivity(torch.randn(3, 50, 116))
    with torch.no_grad():
        sdpa = model(connectivity=fc).pooler_output
        eager = model(connectivity=fc, output_attentions=True)
    assert torch.allclose(sdpa, eager.pooler_output, atol=1e-5)
    assert len(eager.attentions) == config.num_hidden_layers
    assert eager.attentions[0].shape == (3, config.num_attention_heads, 116, 116)
    assert torch.allclose(eager.attentions[0].sum(-1), torch.ones(3, config.num_attention_heads, 116), atol=1e-5)


def test_masking_picks_k_distinct_rois_per_scan():
    idx = random_masked_roi_indices(64, 100, 10)
    assert idx.shape == (64, 10)
    assert all(len(set(row.tolist())) == 10 for row in idx)
    assert idx.min() >= 0 and idx.max() < 100
    assert len({tuple(sorted(row.tolist())) for row in idx}) > 60  # independent draws per scan


def test_masked_tokens_carry_mask_embedding_plus_position():
    model = bm.BrainMassForPreTraining(tiny_config())
    fc = bm.functional_connectivity(torch.randn(2, 40, 116))
    tokens, idx = model._mask_tokens(fc, 5)
    assert tokens.shape == (2, 118, 116)
    pos = model.position_embeddings[0]
    b, r = 1, idx[1, 0]
    assert torch.allclose(tokens[b, r + 2], model.mask_embedding[0, 0] + pos[r + 2])
    unmasked = [i for i in range(116) if i not in idx[1].tolist()][0]
    assert torch.allclose(tokens[1, unmasked + 2], fc[1, unmasked] + pos[unmasked + 2])
    assert torch.allclose(tokens[1, 0], model.cls_token[0, 0] + pos[0])


def test_target_starts_as_copy_of_online_network():
    model = bm.BrainMassForPreTraining(tiny_config())
    online, target = model._paired_parameters()
    assert all(torch.equal(o, t) for o, t in zip(online, target))
    assert not any(t.requires_grad for t in target)


def test_ema_update_matches_formula():
    model = bm.BrainMassForPreTraining(tiny_config(ema_momentum=0.9))
    online, target = model._paired_parameters()
    with torch.no_grad():
        for p in online:
            p.add_(torch.randn_like(p))
    before = [t.clone() for t in target]
    model.update_target()
    for o, t, b in zip(online, target, before):
        assert torch.allclose(t, 0.9 * b + 0.1 * o, atol=1e-6)


def test_optimizer_never_receives_ema_target_weights(tmp_path):
    from transformers import Trainer, TrainingArguments

    model = bm.BrainMassForPreTraining(tiny_config())
    trainer = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to="none"))
    optimizer = trainer.create_optimizer()
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    _, target = model._paired_parameters()
    assert not any(id(p) in in_optimizer for p in target)
    assert all(id(p) in in_optimizer for p in model.masked_roi_parameters())


def test_authors_mode_leaves_masked_roi_modules_untrained():
    model = bm.BrainMassForPreTraining(tiny_config(train_masked_roi_modules=False))
    assert not any(p.requires_grad for p in model.masked_roi_parameters())
    fixed = bm.BrainMassForPreTraining(tiny_config())
    assert all(p.requires_grad for p in fixed.masked_roi_parameters())


def test_pretraining_forward_returns_every_loss_part_and_all_trainable_get_gradients(devfmri_scans):
    model = bm.BrainMassForPreTraining(tiny_config())
    batch = bm.BrainMassFeatureExtractor.from_config(model.config)(devfmri_scans[:4], view="time_series")
    out = model(**batch)
    for name in ("loss", "lra_loss", "mrm_loss", "mrc_loss", "mrc_accuracy"):
        assert torch.isfinite(getattr(out, name))
    expected = out.lra_loss + 0.1 * out.mrc_loss + 2.0 * out.mrm_loss
    assert torch.allclose(out.loss.detach(), expected, atol=1e-5)
    out.loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


def test_pretraining_accepts_two_connectivity_views(devfmri_scans):
    model = bm.BrainMassForPreTraining(tiny_config())
    fe = bm.BrainMassFeatureExtractor.from_config(model.config)
    v1, v2 = fe(devfmri_scans[:3], view="pfc")["connectivity"], fe(devfmri_scans[:3], view="pfc")["connectivity"]
    out = model(connectivity_view1=v1, connectivity_view2=v2)
    assert out.masked_roi_indices.shape == (3, 5)


def test_save_and_load_give_identical_outputs(tmp_path, devfmri_scans):
    model = bm.BrainMassForPreTraining(tiny_config()).eval()
    fc = bm.functional_connectivity(np.stack(devfmri_scans[:3]))
    model.save_pretrained(tmp_path / "pt")
    model.save_encoder(tmp_path / "enc")
    loaded = bm.BrainMassForPreTraining.from_pretrained(tmp_path / "pt").eval()
    encoder = bm.AutoModel.from_pretrained(tmp_path / "enc").eval() if hasattr(bm, "AutoModel") else None
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(tmp_path / "enc").eval()
    assert isinstance(encoder, bm.BrainMassModel)
    with torch.no_grad():
        ref = model.brainmass(connectivity=fc).pooler_output
        assert torch.equal(loaded.brainmass(connectivity=fc).pooler_output, ref)
        assert torch.equal(loaded.target_encoder(connectivity=fc).pooler_output, model.target_encoder(connectivity=fc).pooler_output)
        assert torch.equal(encoder(connectivity=fc).pooler_output, ref)


def test_classifier_loads_encoder_checkpoint_into_its_encoder(tmp_path):
    from transformers import AutoModelForSequenceClassification

    encoder = bm.BrainMassModel(tiny_config()).eval()
    encoder.save_pretrained(tmp_path)
    clf = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=3).eval()
    assert isinstance(clf, bm.BrainMassForConnectomeClassification)
    fc = bm.functional_connectivity(torch.randn(2, 40, 116))
    with torch.no_grad():
        assert torch.equal(clf.brainmass(connectivity=fc).pooler_output, encoder(connectivity=fc).pooler_output)
        assert clf(connectivity=fc).logits.shape == (2, 3)


@pytest.mark.parametrize(
    "problem_type,labels,num_labels",
    [
        ("single_label_classification", torch.tensor([0, 2, 1, 0]), 3),
        ("multi_label_classification", torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 1.0]]), 2),
        ("regression", torch.tensor([0.5, -1.0, 2.0, 0.1]), 1),
    ],
)
def test_classifier_loss_follows_problem_type(problem_type, labels, num_labels):
    clf = bm.BrainMassForConnectomeClassification(tiny_config(num_labels=num_labels))
    fc = bm.functional_connectivity(torch.randn(4, 40, 116))
    out = clf(connectivity=fc, labels=labels)
    assert clf.config.problem_type == problem_type
    assert out.logits.shape == (4, num_labels) and torch.isfinite(out.loss)
    out.loss.backward()


def test_classifier_uses_pfc_in_training_and_full_fc_in_eval(devfmri_scans):
    clf = bm.BrainMassForConnectomeClassification(tiny_config(num_labels=2))
    batch = bm.BrainMassFeatureExtractor.from_config(clf.config)(devfmri_scans[:3], view="time_series")
    full = bm.functional_connectivity(batch["time_series"], batch["time_mask"], kind="ledoit_wolf")
    clf.eval()
    with torch.no_grad():
        assert torch.allclose(clf(**batch).logits, clf(connectivity=full).logits, atol=1e-5)
        clf.brainmass.train()  # pFC views are random: two calls differ
        a, b = clf.brainmass(**batch).pooler_output, clf.brainmass(**batch).pooler_output
    assert not torch.allclose(a, b)


# ---- bad input: one clear error each -------------------------------------------------------------------------
def test_wrong_roi_count_is_one_clear_error():
    model = bm.BrainMassModel(tiny_config())
    with pytest.raises(ValueError, match=r"\(batch_size, 116, 116\).*got \(2, 100, 100\)"):
        model(connectivity=torch.zeros(2, 100, 100))
    with pytest.raises(ValueError, match="expects 116 ROIs"):
        model(time_series=torch.zeros(2, 50, 100))


def test_nan_or_inf_input_is_one_clear_error():
    model = bm.BrainMassModel(tiny_config())
    fc = bm.functional_connectivity(torch.randn(3, 40, 116))
    fc[1, 3, 4] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or Inf values in batch positions \[1\]"):
        model(connectivity=fc)
    ts = torch.randn(2, 40, 116)
    ts[0, 5, 5] = float("inf")
    with pytest.raises(ValueError, match=r"NaN or Inf.*\[0\]"):
        model(time_series=ts)


def test_too_few_time_points_after_the_drop_is_one_clear_error(devfmri_scans):
    model = bm.BrainMassForPreTraining(tiny_config())
    ts = torch.tensor(np.stack([devfmri_scans[0][:11], devfmri_scans[1][:11]]))
    with pytest.raises(ValueError, match="fewer than min_timepoints=10 time points after the pFC drop"):
        model(time_series=ts)
    fe = bm.BrainMassFeatureExtractor.from_config(model.config)
    with pytest.raises(ValueError, match="short-scan"):
        fe([devfmri_scans[0], devfmri_scans[1][:11]], view="pfc", subject_ids=["ok-scan", "short-scan"])


def test_mismatched_view_shapes_is_one_clear_error():
    model = bm.BrainMassForPreTraining(tiny_config())
    v1 = bm.functional_connectivity(torch.randn(4, 40, 116))
    with pytest.raises(ValueError, match="same shape"):
        model(connectivity_view1=v1, connectivity_view2=v1[:3])


def test_heads_that_do_not_divide_roi_count_are_one_clear_error():
    with pytest.raises(ValueError, match="does not divide num_rois=116"):
        bm.BrainMassConfig(num_rois=116, num_attention_heads=5)
    assert bm.BrainMassConfig.from_preset("small", num_rois=116).num_attention_heads == 4


def test_fc_computed_in_the_model_ignores_autocast(devfmri_scans):
    from brainmass_hf.connectivity import connectivity_view

    config = tiny_config()
    x = torch.tensor(np.stack(devfmri_scans[:2]))
    expected = bm.functional_connectivity(x, kind="ledoit_wolf")
    for dtype in (torch.bfloat16, torch.float16):
        with torch.autocast("cpu", dtype=dtype):
            fc = connectivity_view(x, settings=config, pfc=False)
        assert fc.dtype == torch.float32 and torch.isfinite(fc).all()
        assert (fc - expected).abs().max() < 1e-6
