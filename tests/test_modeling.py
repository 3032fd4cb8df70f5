import copy

import numpy as np
import pytest
import torch
from torch import nn

import brainmass_hf as bm
from brainmass_hf.connectivity import min_scan_length
from brainmass_hf.data_collator import random_masked_roi_indices
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
    idx = random_masked_roi_indices(2, 116, 5)
    tokens = model._mask_tokens(fc, idx)
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
    rows = [{"time_series": scan} for scan in devfmri_scans[:4]]
    out = model(**bm.DataCollatorForPseudoFC.from_config(model.config)(rows))
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
    rois = bm.draw_pretraining_choices(torch.ones(3, 10, dtype=torch.bool), model.config)
    out = model(connectivity_view1=v1, connectivity_view2=v2, mrm_masked_roi_indices=rois["mrm_masked_roi_indices"],
                mrc_masked_roi_indices=rois["mrc_masked_roi_indices"])
    assert torch.equal(out.masked_roi_indices, rois["mrm_masked_roi_indices"])


def test_save_and_load_give_identical_outputs(tmp_path, devfmri_scans):
    model = bm.BrainMassForPreTraining(tiny_config()).eval()
    fc = bm.functional_connectivity(np.stack(devfmri_scans[:3]))
    model.save_pretrained(tmp_path / "pt")
    model.save_encoder(tmp_path / "enc")
    from transformers import AutoModel

    loaded = bm.BrainMassForPreTraining.from_pretrained(tmp_path / "pt").eval()
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


def test_classifier_computes_fc_over_the_time_mask_in_either_mode_and_draws_nothing(devfmri_scans):
    clf = bm.BrainMassForConnectomeClassification(tiny_config(num_labels=2, hidden_dropout_prob=0.0,
                                                              attention_probs_dropout_prob=0.0, classifier_dropout=0.0))
    batch = bm.BrainMassFeatureExtractor.from_config(clf.config)(devfmri_scans[:3], view="time_series")
    full = bm.functional_connectivity(batch["time_series"], batch["time_mask"], kind="ledoit_wolf")
    with torch.no_grad():
        clf.eval()
        assert torch.allclose(clf(**batch).logits, clf(connectivity=full).logits, atol=1e-5)
        clf.brainmass.train()  # without a view in the batch, training mode uses the full FC too: no draw
        a, b = clf.brainmass(**batch).pooler_output, clf.brainmass(**batch).pooler_output
        assert torch.equal(a, b)
        assert torch.allclose(a, clf.brainmass(connectivity=full).pooler_output, atol=1e-5)


# ---- bad input: one clear error each -------------------------------------------------------------------------
def test_wrong_roi_count_is_one_clear_error():
    model = bm.BrainMassModel(tiny_config())
    with pytest.raises(ValueError, match=r"\(batch_size, 116, 116\).*got \(2, 100, 100\)"):
        model(connectivity=torch.zeros(2, 100, 100))
    with pytest.raises(ValueError, match="expects 116 ROIs"):
        model(time_series=torch.zeros(2, 50, 100))


def test_nan_or_inf_scan_is_one_clear_error_at_the_collator_not_in_the_forward():
    fe = bm.BrainMassFeatureExtractor.from_config(tiny_config())
    collator = bm.DataCollatorForPseudoFC(fe)
    good, bad = torch.randn(40, 116).numpy(), torch.randn(40, 116).numpy()
    bad[5, 5] = float("inf")
    rows = [{"time_series": good, "subject_id": "sub-ok"}, {"time_series": bad, "subject_id": "sub-inf"}]
    with pytest.raises(ValueError, match=r"sub-inf.*Inf") as error:
        collator(rows)
    assert "sub-ok" not in str(error.value)


def test_too_few_time_points_after_the_drop_is_one_clear_error_at_the_entry_point(devfmri_scans):
    config = tiny_config()
    collator = bm.DataCollatorForConnectomeClassification(bm.BrainMassFeatureExtractor.from_config(config))
    rows = [{"time_series": devfmri_scans[0], "subject_id": "ok-scan", "label": 0},
            {"time_series": devfmri_scans[1][:11], "subject_id": "short-scan", "label": 1}]
    with pytest.raises(ValueError, match="short-scan") as error:
        collator(rows)
    assert f"{min_scan_length(config)} time points needed" in str(error.value)  # 12: 12 - int(0.2 * 12) = 10


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


# ---- checkpoint round trips (issue 7 item 5) ----------------------------------------------------------------------
def _round_trip_inputs(model_class):
    fc = bm.functional_connectivity(torch.randn(4, 40, 116))
    if model_class is bm.BrainMassForPreTraining:
        rois = bm.draw_pretraining_choices(torch.ones(4, 40, dtype=torch.bool), tiny_config())
        return {"connectivity_view1": fc, "connectivity_view2": bm.functional_connectivity(torch.randn(4, 40, 116)),
                "mrm_masked_roi_indices": rois["mrm_masked_roi_indices"],
                "mrc_masked_roi_indices": rois["mrc_masked_roi_indices"]}
    return {"connectivity": fc}


def _scramble_batchnorm_statistics(model):
    """Non-default running statistics, so that a load that resets them shows in eval-mode outputs."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)


@pytest.mark.parametrize(
    "model_class,auto_class",
    [
        (bm.BrainMassModel, "AutoModel"),
        (bm.BrainMassForPreTraining, "AutoModelForPreTraining"),
        (bm.BrainMassForConnectomeClassification, "AutoModelForSequenceClassification"),
    ],
)
def test_every_model_class_round_trips_save_and_auto_from_pretrained(tmp_path, model_class, auto_class):
    import transformers

    model = model_class(tiny_config(num_labels=3, train_masked_roi_modules=False)).eval()
    _scramble_batchnorm_statistics(model)
    model.save_pretrained(tmp_path)
    loaded = getattr(transformers, auto_class).from_pretrained(tmp_path).eval()
    assert type(loaded) is model_class
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert {n: p.requires_grad for n, p in loaded.named_parameters()} == {
        n: p.requires_grad for n, p in model.named_parameters()
    }
    inputs = _round_trip_inputs(model_class)
    with torch.no_grad():
        torch.manual_seed(7)
        expected = model(**inputs)
        torch.manual_seed(7)
        got = loaded(**inputs)
    for key, value in expected.items():
        if torch.is_tensor(value) and value.is_floating_point():
            assert torch.isfinite(got[key]).all(), key
        assert torch.equal(got[key], value), key


def test_pretraining_model_loaded_with_auto_class_rebuilds_position_table_and_frozen_parts(tmp_path):
    from transformers import AutoModelForPreTraining

    config = tiny_config(train_masked_roi_modules=False)
    bm.BrainMassForPreTraining(config).save_pretrained(tmp_path)
    loaded = AutoModelForPreTraining.from_pretrained(tmp_path)
    expected = bm.modeling_brainmass.sinusoidal_position_table(118, 116)[None]
    assert torch.equal(loaded.position_embeddings, expected)
    assert not any(p.requires_grad for m in loaded.target_modules() for p in m.parameters())
    assert not any(p.requires_grad for p in loaded.masked_roi_parameters())
    assert all(p.requires_grad for m in loaded.online_modules() for p in m.parameters())


def test_pretraining_model_from_an_encoder_folder_starts_with_target_equal_to_online(tmp_path):
    from transformers import AutoModelForPreTraining

    encoder = bm.BrainMassModel(tiny_config())
    encoder.save_pretrained(tmp_path)
    model = AutoModelForPreTraining.from_pretrained(tmp_path)
    for name, tensor in encoder.state_dict().items():
        assert torch.equal(model.brainmass.state_dict()[name], tensor)
    online, target = model._paired_parameters()
    assert all(torch.equal(o, t) for o, t in zip(online, target))
    assert not any(t.requires_grad for t in target)


# ---- partial checkpoints (issue 7 item 16) ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "model_class", [bm.BrainMassModel, bm.BrainMassForPreTraining, bm.BrainMassForConnectomeClassification]
)
def test_checkpoint_with_fewer_layers_than_the_config_is_an_error_unless_partial_loading_is_asked(
    tmp_path, model_class
):
    bm.BrainMassModel(tiny_config()).save_pretrained(tmp_path)  # 2 layers
    with pytest.raises(ValueError, match=r"no weights for encoder layers \[2, 3\].*allow_partial_loading=True"):
        model_class.from_pretrained(tmp_path, num_hidden_layers=4)
    model = model_class.from_pretrained(tmp_path, num_hidden_layers=4, allow_partial_loading=True)
    assert model.config.num_hidden_layers == 4


# ---- Trainer semantics (issue 7 item 6) --------------------------------------------------------------------------
def test_trainer_does_not_treat_the_models_as_taking_loss_kwargs(tmp_path):
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    for model_class in (bm.BrainMassForConnectomeClassification, bm.BrainMassForPreTraining):
        trainer = Trainer(model=model_class(tiny_config(num_labels=2)), args=args)
        assert trainer.model_accepts_loss_kwargs is False


def _one_sgd_step(tmp_path, model, dataset, batch_size, accumulation):
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, max_steps=1, optim="sgd", learning_rate=0.5,
        lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=0.0, seed=3, save_strategy="no",
        per_device_train_batch_size=batch_size, gradient_accumulation_steps=accumulation, logging_strategy="no",
    )
    Trainer(model=model, args=args, train_dataset=dataset).train()
    return model


def test_gradient_accumulation_two_by_b_equals_one_batch_of_2b(tmp_path):
    # no BatchNorm, no dropout, FC input: the gradient of the mean over 2b scans is exactly the mean of two halves
    config = tiny_config(num_labels=2, classifier_hidden_sizes=[], hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0, classifier_dropout=0.0)
    start = bm.BrainMassForConnectomeClassification(config)
    fc = bm.functional_connectivity(torch.randn(8, 40, 116))
    dataset = [{"connectivity": fc[i], "labels": torch.tensor(i % 2)} for i in range(8)]
    whole = _one_sgd_step(tmp_path / "a", copy.deepcopy(start), dataset, batch_size=8, accumulation=1)
    halves = _one_sgd_step(tmp_path / "b", copy.deepcopy(start), dataset, batch_size=4, accumulation=2)
    moved = [(p - q).abs().max() for p, q in zip(whole.parameters(), start.parameters())]
    assert max(moved) > 1e-4  # the step did something
    for (name, a), b in zip(whole.named_parameters(), halves.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name


# ---- EMA, checkpointing (issue 9 item 2) -------------------------------------------------------------------------
def test_ema_update_covers_batchnorm_statistics_in_one_foreach_call(monkeypatch):
    model = bm.BrainMassForPreTraining(tiny_config(ema_momentum=0.9))
    _scramble_batchnorm_statistics(model.projection)
    online, target = model._paired_buffers()
    before = [t.clone() for t in target]
    calls = []
    lerp = torch._foreach_lerp_
    monkeypatch.setattr(torch, "_foreach_lerp_", lambda *a: calls.append(1) or lerp(*a))
    model.update_target()
    assert len(calls) == 1
    for o, t, b in zip(online, target, before):
        if t.is_floating_point():
            assert torch.allclose(t, 0.9 * b + 0.1 * o, atol=1e-6)
        else:
            assert torch.equal(t, o)  # num_batches_tracked is copied


def test_gradient_checkpointing_gives_the_same_gradients():
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    fc = bm.functional_connectivity(torch.randn(3, 40, 116))
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = bm.BrainMassModel(config).train()
        if checkpointing:
            model.activation_checkpointing_enable()
            assert all(layer.gradient_checkpointing for layer in model.encoder.layers)
        model(connectivity=fc).pooler_output.square().sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-6)


# ---- config (issue 8) --------------------------------------------------------------------------------------------
def test_checkpoint_dependent_choices_are_config_fields_with_the_authors_defaults():
    config = bm.BrainMassConfig()
    assert (config.readout_negative_slope, config.masked_roi_head_negative_slope, config.classifier_negative_slope,
            config.num_prefix_tokens) == (0.01, 0.01, 0.01, 2)
    model = bm.BrainMassForPreTraining(tiny_config(num_prefix_tokens=1, masked_roi_head_negative_slope=0.2))
    assert model.dist_token is None and model.position_embeddings.shape == (1, 117, 116)
    assert model.mrm_head[1].negative_slope == 0.2
    out = model(**_round_trip_inputs(bm.BrainMassForPreTraining))
    assert torch.isfinite(out.loss)
    clf = bm.BrainMassForConnectomeClassification(tiny_config(classifier_negative_slope=0.3))
    assert clf.classifier[2].negative_slope == 0.3


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"ema_momentum": 1.5}, r"ema_momentum must be in \[0, 1\]"),
        ({"hidden_act": "relu6x"}, r"hidden_act='relu6x' is not a transformers activation"),
        ({"pfc_mask_way": "crop", "pfc_crop_length": 8}, r"pfc_crop_length=8 is shorter than min_timepoints=10"),
        ({"pfc_drop_ratio": 1.0}, r"pfc_drop_ratio must be in \[0, 1\)"),
        ({"num_attention_heads": 5}, r"does not divide num_rois=116.*Choose one of \[1, 2, 4, 29, 58, 116\]"),
        ({"hidden_dropout_prob": -0.1}, r"hidden_dropout_prob must be in \[0, 1\)"),
        ({"num_prefix_tokens": 3}, r"num_prefix_tokens must be 0, 1 \(cls\) or 2"),
        ({"min_timepoints": 1}, r"min_timepoints must be at least 2"),
        ({"num_hidden_layers": 0}, r"num_hidden_layers must be a positive integer"),
    ],
)
def test_config_rejects_out_of_range_values_naming_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


# ---- malformed input to the models and to checkpoint loading (issue 7 catalogue) --------------------------------
def test_single_fc_matrix_without_batch_dimension_says_to_add_one():
    model = bm.BrainMassModel(tiny_config())
    with pytest.raises(ValueError, match=r"got \(116, 116\)\. Add a batch dimension: connectivity\[None\]"):
        model(connectivity=torch.eye(116))


def test_single_scan_without_batch_dimension_says_to_add_one():
    model = bm.BrainMassModel(tiny_config())
    with pytest.raises(ValueError, match=r"got \(50, 116\).*Add a batch dimension \(time_series\[None\]\)"):
        model(time_series=torch.randn(50, 116))


def test_time_mask_that_does_not_match_the_batch_is_one_clear_error():
    model = bm.BrainMassModel(tiny_config())
    with pytest.raises(ValueError, match=r"time_mask must have shape .* = \(2, 50\).*got \(2, 40\).*pad_time_series"):
        model(time_series=torch.randn(2, 50, 116), time_mask=torch.ones(2, 40, dtype=torch.bool))


def test_both_or_neither_input_is_one_clear_error():
    model = bm.BrainMassModel(tiny_config())
    with pytest.raises(ValueError, match="Pass exactly one of connectivity"):
        model(connectivity=torch.eye(116)[None], time_series=torch.randn(1, 50, 116))
    with pytest.raises(ValueError, match="Pass exactly one of connectivity"):
        model()


def test_feature_extractor_for_another_atlas_is_caught_by_the_model(devfmri_scans):
    model = bm.BrainMassModel(tiny_config(num_rois=100, atlas_name="schaefer100"))
    batch = bm.BrainMassFeatureExtractor(num_rois=116)(devfmri_scans[:2], view="full")
    with pytest.raises(ValueError, match=r"\(batch_size, 100, 100\) for this model \(atlas schaefer100\).*atlas"):
        model(**batch)


def test_pretraining_with_one_view_missing_is_one_clear_error():
    model = bm.BrainMassForPreTraining(tiny_config())
    with pytest.raises(ValueError, match="needs connectivity_view1 and connectivity_view2, or time_series"):
        model(connectivity_view1=torch.eye(116)[None].repeat(2, 1, 1))


def test_corrupt_config_json_names_the_file_and_the_fix(tmp_path):
    bm.BrainMassModel(tiny_config()).save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "brainmass", "num_rois": 116,')
    with pytest.raises(OSError, match=r"config\.json.*not a valid JSON.*download or save the checkpoint again"):
        bm.BrainMassModel.from_pretrained(tmp_path)


def test_config_json_with_an_impossible_value_names_the_field(tmp_path):
    import json

    bm.BrainMassModel(tiny_config()).save_pretrained(tmp_path)
    values = json.loads((tmp_path / "config.json").read_text())
    values["num_attention_heads"] = 7
    (tmp_path / "config.json").write_text(json.dumps(values))
    with pytest.raises(ValueError, match=r"num_attention_heads=7 does not divide num_rois=116.*Choose one of"):
        bm.BrainMassModel.from_pretrained(tmp_path)


def test_truncated_weights_file_names_the_checkpoint_and_the_fix(tmp_path):
    bm.BrainMassModel(tiny_config()).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(OSError, match=rf"Cannot read the checkpoint {tmp_path}.*truncated or corrupt.*again"):
        bm.BrainMassModel.from_pretrained(tmp_path)


# ---- collators: values are checked before any cast (issue 7 item 12, entry points of issue 9 item 1) ------------
@pytest.mark.parametrize(
    "spoil,message",
    [
        (lambda x: x.astype(np.complex64) + 1j, r"sub-bad.*complex"),
        (lambda x: np.where(np.arange(x.shape[0])[:, None] == 3, 1e39, x), r"sub-bad.*float32"),
    ],
)
def test_collators_name_a_scan_that_a_float32_cast_would_silently_alter(spoil, message):
    fe = bm.BrainMassFeatureExtractor.from_config(tiny_config())
    good = np.random.default_rng(0).standard_normal((40, 116))
    rows = [{"time_series": good, "subject_id": "sub-ok", "label": 0},
            {"time_series": spoil(good.copy()), "subject_id": "sub-bad", "label": 1}]
    for collator in (bm.DataCollatorForPseudoFC(fe), bm.DataCollatorForConnectomeClassification(fe)):
        with pytest.raises(ValueError, match=message):
            collator(rows)


def test_rows_without_a_time_series_column_say_which_columns_they_have():
    collator = bm.DataCollatorForPseudoFC(bm.BrainMassFeatureExtractor.from_config(tiny_config()))
    with pytest.raises(ValueError, match=r"the rows have \['bold', 'subject_id'\]\. Rename the scan column"):
        collator([{"bold": np.zeros((40, 116)), "subject_id": "a"}])


@pytest.mark.parametrize(
    "model_class", [bm.BrainMassModel, bm.BrainMassForPreTraining, bm.BrainMassForConnectomeClassification]
)
def test_return_dict_false_gives_the_output_fields_as_a_tuple(model_class):
    model = model_class(tiny_config(num_labels=2)).eval()
    inputs = _round_trip_inputs(model_class)
    with torch.no_grad():
        torch.manual_seed(0)
        as_tuple = model(**inputs, return_dict=False)
        torch.manual_seed(0)
        as_output = model(**inputs)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == len(as_output)
    assert all(torch.equal(a, b) for a, b in zip(as_tuple, as_output.to_tuple()))


def test_cpu_dropout_drops_at_rate_p_in_every_slot_and_keeps_the_expectation():
    from brainmass_hf.modeling_brainmass import inverted_dropout

    torch.manual_seed(0)
    x = torch.ones(4, 250, 1000)  # 1M values
    out = inverted_dropout(x, 0.1, training=True)
    dropped = out == 0
    n = x.numel()
    sigma = (0.1 * 0.9 / n) ** 0.5
    assert abs(dropped.float().mean().item() - 0.1) < 5 * sigma
    # four draws come from one 64-bit word: each of the four 16-bit slots must drop at rate p (a slot holding the
    # sign bit of a non-negative word would never drop)
    slots = dropped.flatten().view(-1, 4).float().mean(dim=0)
    assert ((slots - 0.1).abs() < 5 * 2 * sigma).all(), slots
    kept = out[~dropped]
    assert torch.allclose(kept, torch.full_like(kept, 65536 / (65536 - 6554)))
    assert abs(out.mean().item() - 1.0) < 5 * sigma / 0.9


def test_cpu_dropout_is_reproducible_identity_in_eval_and_backpropagates_the_mask():
    from brainmass_hf.modeling_brainmass import BrainMassDropout, inverted_dropout

    x = torch.randn(3, 7, 11, requires_grad=True)
    torch.manual_seed(1)
    a = inverted_dropout(x, 0.3, training=True)
    torch.manual_seed(1)
    b = inverted_dropout(x, 0.3, training=True)
    assert torch.equal(a, b) and not torch.equal(a, x)
    a.sum().backward()
    assert torch.allclose(x.grad, a.detach() / x.detach())  # d(out)/dx = mask · scale
    layer = BrainMassDropout(0.3).eval()
    assert layer(x) is x and inverted_dropout(x, 0.0, training=True) is x
    assert torch.equal(inverted_dropout(x, 1.0, training=True), torch.zeros_like(x))
