"""The authors' checkpoint converter (issue 11 item 5), on a synthetic checkpoint with exactly the keys and shapes of
``../shared/official_checkpoint.md`` (small preset, R = 100, 8 layers, random values)."""

import argparse
import json
import re

import pytest
import torch
from torch import nn

import brainmass_hf as bm
from brainmass_hf.cli import main as cli_main
from brainmass_hf.convert_official import OfficialCheckpointError, convert_official

R, LAYERS, FFN, HEADS = 100, 8, 1024, 5


def _network(prefix: str, g: torch.Generator) -> dict[str, torch.Tensor]:
    def rand(*shape):
        return torch.randn(*shape, generator=g) * 0.1

    sd = {}
    for i in range(LAYERS):
        p = f"{prefix}.attention_list.{i}."
        sd.update({
            p + "self_attn.in_proj_weight": rand(3 * R, R), p + "self_attn.in_proj_bias": rand(3 * R),
            p + "self_attn.out_proj.weight": rand(R, R), p + "self_attn.out_proj.bias": rand(R),
            p + "linear1.weight": rand(FFN, R), p + "linear1.bias": rand(FFN),
            p + "linear2.weight": rand(R, FFN), p + "linear2.bias": rand(R),
            p + "norm1.weight": 1 + rand(R), p + "norm1.bias": rand(R),
            p + "norm2.weight": 1 + rand(R), p + "norm2.bias": rand(R),
        })
    sd.update({f"{prefix}.dim_reduction.0.weight": rand(8, R), f"{prefix}.dim_reduction.0.bias": rand(8)})
    sd.update(_mlp(f"{prefix}.g.net", 8 * R, 16 * R, 1024, rand))
    return sd


def _mlp(prefix, n_in, n_hidden, n_out, rand):
    return {
        f"{prefix}.0.weight": rand(n_hidden, n_in), f"{prefix}.0.bias": rand(n_hidden),
        f"{prefix}.1.weight": 1 + rand(n_hidden), f"{prefix}.1.bias": rand(n_hidden),
        f"{prefix}.1.running_mean": rand(n_hidden), f"{prefix}.1.running_var": 1 + rand(n_hidden).abs(),
        f"{prefix}.1.num_batches_tracked": torch.tensor(123),
        f"{prefix}.3.weight": rand(n_out, n_hidden), f"{prefix}.3.bias": rand(n_out),
    }


def official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """The 236 entries of the authors' ``BYOLTrainer.state_dict()`` for the small preset."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g) * 0.1

    sd = {"mask_embed": rand(1, 1, R), "cls_token": rand(1, 1, R), "dist_token": rand(1, 1, R)}
    sd.update(_network("online_network", g))
    sd.update(_network("target_network", g))
    sd.update(_mlp("predictor.net", 1024, 2048, 1024, rand))
    sd.update({"norm.weight": 1 + rand(R), "norm.bias": rand(R)})
    for head in ("cpred", "gpred"):
        sd.update({f"{head}.0.weight": rand(1024, R), f"{head}.0.bias": rand(1024),
                   f"{head}.2.weight": rand(R, 1024), f"{head}.2.bias": rand(R)})
    return sd


def save_official(path, sd):
    strip = lambda prefix: {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}  # noqa: E731
    torch.save(
        {"model": sd, "online_network_state_dict": strip("online_network."),
         "target_network_state_dict": strip("target_network.")},
        path,
    )
    return path


def reference_pooled(sd, prefix, fc):
    """The authors' encoder built from torch modules: TransformerEncoderLayer stack + Linear(R→8) + LeakyReLU(0.01)."""
    layers = []
    for i in range(LAYERS):
        layer = nn.TransformerEncoderLayer(R, HEADS, FFN, dropout=0.0, batch_first=True, norm_first=False)
        p = f"{prefix}.attention_list.{i}."
        layer.load_state_dict({k[len(p):]: v for k, v in sd.items() if k.startswith(p)})
        layers.append(layer.eval())
    readout = nn.Linear(R, 8)
    readout.load_state_dict({"weight": sd[f"{prefix}.dim_reduction.0.weight"], "bias": sd[f"{prefix}.dim_reduction.0.bias"]})
    x = fc
    with torch.no_grad():
        for layer in layers:
            x = layer(x)
        return nn.functional.leaky_relu(readout(x), 0.01).flatten(1)


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    sd = official_state_dict()
    assert len(sd) == 236  # the count official_checkpoint.md gives for small
    return sd, save_official(tmp_path_factory.mktemp("official") / "model.pth", sd)


def _fc(batch=3, seed=1):
    ts = torch.randn(batch, 60, R, generator=torch.Generator().manual_seed(seed))
    return bm.functional_connectivity(ts, kind="pearson")


def test_converted_encoder_equals_the_authors_torch_modules(official, tmp_path):
    sd, path = official
    encoder, full = convert_official(path, tmp_path / "out", full=True)
    c = encoder.config
    assert (c.num_rois, c.num_hidden_layers, c.intermediate_size, c.num_attention_heads) == (R, LAYERS, FFN, HEADS)
    fc = _fc()
    with torch.no_grad():
        pooled = encoder(connectivity=fc).pooler_output
        target_pooled = full.target_encoder(connectivity=fc).pooler_output
    torch.testing.assert_close(pooled, reference_pooled(sd, "online_network", fc), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(target_pooled, reference_pooled(sd, "target_network", fc), atol=1e-5, rtol=1e-5)
    # the heads land where their role says: cpred = masked-ROI InfoNCE (mrc), gpred = reconstruction (mrm)
    torch.testing.assert_close(full.mrc_head[0].weight, sd["cpred.0.weight"])
    torch.testing.assert_close(full.mrm_head[2].bias, sd["gpred.2.bias"])
    torch.testing.assert_close(full.mask_embedding, sd["mask_embed"])
    torch.testing.assert_close(full.predictor[1].running_var, sd["predictor.net.1.running_var"])
    torch.testing.assert_close(full.projection[3].weight, sd["online_network.g.net.3.weight"])

    # the saved folder is a complete checkpoint that reloads to the same outputs
    reloaded = bm.BrainMassModel.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(connectivity=fc).pooler_output, pooled)
    assert (tmp_path / "out" / "preprocessor_config.json").is_file()
    assert "convert-official" in (tmp_path / "out" / "README.md").read_text()
    assert json.loads((tmp_path / "out" / "pretraining" / "config.json").read_text())["num_hidden_layers"] == LAYERS
    assert bm.BrainMassForPreTraining.from_pretrained(tmp_path / "out" / "pretraining").mrc_head[0].weight.shape == (FFN, R)


def test_module_prefix_and_online_only_files(official, tmp_path):
    sd, _ = official
    path = tmp_path / "ddp.pth"
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}}, path)
    encoder, _ = convert_official(path)
    online = {k.removeprefix("online_network."): v for k, v in sd.items() if k.startswith("online_network.")}
    torch.save({"online_network_state_dict": online}, tmp_path / "online.pth")
    encoder2, _ = convert_official(tmp_path / "online.pth")
    fc = _fc(2)
    with torch.no_grad():
        torch.testing.assert_close(encoder(connectivity=fc).pooler_output, encoder2(connectivity=fc).pooler_output)
    with pytest.raises(OfficialCheckpointError, match="only the online network"):
        convert_official(tmp_path / "online.pth", full=True)


def test_pickle_with_objects_is_refused(official, tmp_path):
    sd, _ = official
    path = tmp_path / "evil.pth"
    torch.save({"model": sd, "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(OfficialCheckpointError, match="refused"):
        convert_official(path)


def test_unknown_and_missing_keys_are_refused(official, tmp_path):
    sd, _ = official
    torch.save({"model": {**sd, "online_network.extra_head.weight": torch.zeros(2)}}, tmp_path / "unknown.pth")
    with pytest.raises(OfficialCheckpointError, match=r"does not know.*extra_head"):
        convert_official(tmp_path / "unknown.pth")
    for key in ("online_network.attention_list.3.linear2.bias", "online_network.attention_list.0.norm1.weight"):
        torch.save({"model": {k: v for k, v in sd.items() if k != key}}, tmp_path / "missing.pth")
        with pytest.raises(OfficialCheckpointError, match=rf"lacks 1 keys.*{re.escape(key)}"):
            convert_official(tmp_path / "missing.pth")
    bad_shape = {**sd, "online_network.attention_list.5.linear1.weight": torch.zeros(512, R)}
    torch.save({"model": bad_shape}, tmp_path / "shape.pth")
    with pytest.raises(OfficialCheckpointError, match="tensor shapes do not fit.*layers.5.feed_forward.fc1"):
        convert_official(tmp_path / "shape.pth")


def test_heads_must_be_given_when_they_cannot_be_inferred(official, tmp_path):
    sd, _ = official
    # drop layers 6 and 7 of both networks: a 6-layer model matches no preset, so the head count is unknown
    six = {k: v for k, v in sd.items() if ".attention_list.6." not in k and ".attention_list.7." not in k}
    torch.save({"model": six}, tmp_path / "six.pth")
    with pytest.raises(OfficialCheckpointError, match="--heads"):
        convert_official(tmp_path / "six.pth")
    encoder, _ = convert_official(tmp_path / "six.pth", num_attention_heads=4)
    assert (encoder.config.num_hidden_layers, encoder.config.num_attention_heads) == (6, 4)


def test_cli_convert_official(official, tmp_path, capsys):
    _, path = official
    assert cli_main(["convert-official", str(path), "--out", str(tmp_path / "enc"), "--atlas-name", "Schaefer-100"]) == 0
    assert "8 layers, 5 heads" in capsys.readouterr().out
    assert bm.BrainMassConfig.from_pretrained(tmp_path / "enc").atlas_name == "Schaefer-100"
    torch.save({"model": {"bogus": torch.zeros(1)}}, tmp_path / "bad.pth")
    assert cli_main(["convert-official", str(tmp_path / "bad.pth"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "brainmass convert-official: error:" in err and "attention_list" in err and "Traceback" not in err
