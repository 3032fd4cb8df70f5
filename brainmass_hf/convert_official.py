"""Convert the BrainMass authors' pretraining checkpoint (``.pth``) into ``brainmass_hf`` models.

The format (``../shared/official_checkpoint.md``): ``torch.save`` of ``{"model": BYOLTrainer.state_dict(),
"online_network_state_dict": ..., "target_network_state_dict": ...}`` holding only tensors. Their encoder layers are
``torch.nn.TransformerEncoderLayer`` (post-norm, batch_first), whose parameters map one-to-one onto
:class:`~brainmass_hf.modeling_brainmass.BrainMassLayer`. Depth, FFN width, R and the head widths are read from the
tensor shapes; the head count is not stored, so it is taken from ``num_attention_heads`` or the paper preset of that
depth.

    brainmass convert-official model.pth --out DIR [--heads N] [--full] [--atlas-name AAL-116]
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from .configuration_brainmass import BRAINMASS_PRESETS, BrainMassConfig

__all__ = ["OfficialCheckpointError", "load_official_state_dict", "official_config", "convert_official"]

# Their name (after "<network>.attention_list.<i>.") → ours (after "encoder.layers.<i>.").
_LAYER_KEYS = {
    "self_attn.in_proj_weight": "attention.in_proj.weight",
    "self_attn.in_proj_bias": "attention.in_proj.bias",
    "self_attn.out_proj.weight": "attention.out_proj.weight",
    "self_attn.out_proj.bias": "attention.out_proj.bias",
    "linear1.weight": "feed_forward.fc1.weight",
    "linear1.bias": "feed_forward.fc1.bias",
    "linear2.weight": "feed_forward.fc2.weight",
    "linear2.bias": "feed_forward.fc2.bias",
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
}
# Linear → BatchNorm1d → ReLU → Linear: the same Sequential indices on both sides (BrainMassMLPHead).
_MLP_KEYS = [f"0.{p}" for p in ("weight", "bias")] + [
    f"1.{p}" for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
] + [f"3.{p}" for p in ("weight", "bias")]
_MASKED_HEAD_KEYS = ["0.weight", "0.bias", "2.weight", "2.bias"]
# (their network prefix, our encoder prefix, our projection prefix) in BrainMassForPreTraining
_NETWORKS = (("online_network", "brainmass", "projection"), ("target_network", "target_encoder", "target_projection"))
# constructed by the authors but never called in forward: nothing of ours corresponds, so it is dropped on purpose
_UNUSED = ("norm.weight", "norm.bias")
_LAYER_INDEX = re.compile(r"^online_network\.attention_list\.(\d+)\.")


class OfficialCheckpointError(ValueError):
    """The file is not a BrainMass authors' checkpoint this converter can read; the message says why."""


def load_official_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The full ``BYOLTrainer`` state dict of an authors' ``.pth`` (entry ``"model"``), loaded with
    ``weights_only=True`` and with any DDP ``module.`` prefix stripped. A file holding only
    ``online_network_state_dict`` gives the online keys (prefixed ``online_network.``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise OfficialCheckpointError(
            f"{path} holds Python objects other than tensors, so it is refused (loading it would run arbitrary "
            f"code). The authors' checkpoints contain only tensor dicts; re-save yours with "
            f"torch.save({{'model': state_dict}}, path). Details: {str(err).splitlines()[0]}"
        ) from None
    if not isinstance(checkpoint, dict):
        raise OfficialCheckpointError(f"{path} holds a {type(checkpoint).__name__}, not a dict of state dicts.")
    if isinstance(checkpoint.get("model"), dict):
        state = checkpoint["model"]
    elif isinstance(checkpoint.get("online_network_state_dict"), dict):
        state = {f"online_network.{k}": v for k, v in checkpoint["online_network_state_dict"].items()}
    elif all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        state = checkpoint
    else:
        raise OfficialCheckpointError(
            f"{path} has entries {sorted(checkpoint)} but neither 'model' nor 'online_network_state_dict'; it is "
            f"not a BrainMass authors' checkpoint."
        )
    return {k.removeprefix("module."): v for k, v in state.items()}


def _depth(state: dict[str, torch.Tensor]) -> int:
    """Encoder layers: one more than the highest ``online_network.attention_list.<i>`` index."""
    indices = {int(m.group(1)) for k in state if (m := _LAYER_INDEX.match(k))}
    if not indices:
        raise OfficialCheckpointError(
            "No 'online_network.attention_list.<i>.' keys: this is not a BrainMass authors' checkpoint."
        )
    return max(indices) + 1


def official_config(state: dict[str, torch.Tensor], num_attention_heads: int | None = None, **kwargs) -> BrainMassConfig:
    """A :class:`BrainMassConfig` matching the tensor shapes of an authors' state dict: depth from the highest
    ``attention_list.<i>``, FFN width from ``linear1.weight``, R from ``norm1.weight``, head sizes from the heads'
    weights. ``num_attention_heads`` defaults to the paper preset of that depth. ``kwargs`` set other fields
    (e.g. ``atlas_name``)."""
    depth = _depth(state)
    first = "online_network.attention_list.0."
    num_rois = state[first + "norm1.weight"].shape[0]
    intermediate = state[first + "linear1.weight"].shape[0]
    if num_attention_heads is None:
        presets = [v for v in BRAINMASS_PRESETS.values() if v["num_hidden_layers"] == depth]
        if not presets:
            raise OfficialCheckpointError(
                f"The checkpoint has {depth} layers, which matches no paper preset, and the head count is not "
                f"stored; pass it (--heads N / num_attention_heads=N)."
            )
        num_attention_heads = presets[0]["num_attention_heads"]
        if num_rois % num_attention_heads != 0:
            raise OfficialCheckpointError(
                f"The preset head count {num_attention_heads} does not divide R={num_rois}; pass the head count the "
                f"checkpoint was trained with (--heads N)."
            )
    values = dict(
        num_rois=num_rois,
        num_hidden_layers=depth,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate,
        readout_dim=state["online_network.dim_reduction.0.weight"].shape[0],
    )
    shapes = {  # heads exist only in a full trainer state dict
        "projection_hidden_size": "online_network.g.net.0.weight",
        "projection_size": "online_network.g.net.3.weight",
        "predictor_hidden_size": "predictor.net.0.weight",
        "masked_roi_head_hidden_size": "cpred.0.weight",
    }
    values.update({field: state[key].shape[0] for field, key in shapes.items() if key in state})
    return BrainMassConfig(**{**values, **kwargs})


def _key_map(depth: int, full: bool) -> dict[str, str]:
    """Their key → our :class:`BrainMassForPreTraining` key (``full``), or the online encoder's keys only →
    our :class:`BrainMassModel` keys."""
    mapping: dict[str, str] = {}
    for theirs, encoder, projection in _NETWORKS if full else _NETWORKS[:1]:
        ours = f"{encoder}." if full else ""
        for i in range(depth):
            for a, b in _LAYER_KEYS.items():
                mapping[f"{theirs}.attention_list.{i}.{a}"] = f"{ours}encoder.layers.{i}.{b}"
        for p in ("weight", "bias"):
            mapping[f"{theirs}.dim_reduction.0.{p}"] = f"{ours}readout.dense.{p}"
        if full:
            mapping.update({f"{theirs}.g.net.{k}": f"{projection}.{k}" for k in _MLP_KEYS})
    if full:
        mapping.update({f"predictor.net.{k}": f"predictor.{k}" for k in _MLP_KEYS})
        mapping.update({f"cpred.{k}": f"mrc_head.{k}" for k in _MASKED_HEAD_KEYS})  # masked-ROI InfoNCE
        mapping.update({f"gpred.{k}": f"mrm_head.{k}" for k in _MASKED_HEAD_KEYS})  # masked-ROI reconstruction
        mapping.update({"mask_embed": "mask_embedding", "cls_token": "cls_token", "dist_token": "dist_token"})
    return mapping


def _check_keys(state: dict, depth: int, source: str):
    """Every key must be known; every key of the layout (online-only or full trainer) must be present."""
    known = set(_key_map(depth, full=True)) | set(_UNUSED)
    unknown = sorted(set(state) - known)
    if unknown:
        raise OfficialCheckpointError(
            f"{source} has {len(unknown)} keys this converter does not know, e.g. {unknown[:5]}; it is not the "
            f"BrainMass authors' layout (see official_checkpoint.md), so nothing was converted."
        )
    online_only = all(k.startswith("online_network.") for k in state)
    expected = set(_key_map(depth, full=False)) if online_only else known
    missing = sorted(expected - set(state))
    if missing:
        raise OfficialCheckpointError(
            f"{source} lacks {len(missing)} keys of a {depth}-layer checkpoint, e.g. {missing[:5]}; the file is "
            f"truncated or from another model."
        )


def convert_official(
    path: str | Path,
    output_dir: str | Path | None = None,
    num_attention_heads: int | None = None,
    full: bool = False,
    **config_kwargs,
):
    """Convert an authors' checkpoint. Returns ``(encoder, pretraining_model or None)``.

    ``encoder`` is a :class:`~brainmass_hf.BrainMassModel` holding their online network and readout
    (``dim_reduction``), which is what their evaluation loads. With ``full``, also a
    :class:`~brainmass_hf.BrainMassForPreTraining` with online + target networks, projection ``g``, predictor,
    masked-ROI heads (``gpred`` → ``mrm_head``, ``cpred`` → ``mrc_head``) and tokens, to continue pretraining.
    With ``output_dir``, the encoder is saved there as a complete checkpoint (weights, config, feature extractor,
    code, card) and the full model under ``output_dir/pretraining``.
    """
    from .hub import complete_checkpoint_folder
    from .modeling_brainmass import BrainMassForPreTraining, BrainMassModel

    state = load_official_state_dict(path)
    depth = _depth(state)
    _check_keys(state, depth, str(path))  # before reading shapes, so a missing key is named, not a KeyError
    config = official_config(state, num_attention_heads=num_attention_heads, **config_kwargs)

    def build(model_class, full_: bool):
        model = model_class(config)
        # float32 like our models (a bf16/fp16 file is upcast); integer buffers (num_batches_tracked) stay as they are
        converted = {
            ours: state[theirs].float() if state[theirs].is_floating_point() else state[theirs]
            for theirs, ours in _key_map(depth, full_).items()
        }
        try:
            model.load_state_dict(converted, strict=True)
        except RuntimeError as err:  # a shape that disagrees with the inferred config
            detail = " ".join(str(err).split())  # one line: torch lists the mismatches on tab-indented lines
            raise OfficialCheckpointError(f"{path}: tensor shapes do not fit a consistent model: {detail}") from None
        return model.eval()

    encoder = build(BrainMassModel, False)
    pretraining = None
    if full:
        if all(k.startswith("online_network.") for k in state):
            raise OfficialCheckpointError(
                f"{path} holds only the online network; the full pretraining model needs the trainer's 'model' "
                f"entry (target network, predictor, masked-ROI heads). Convert without --full."
            )
        pretraining = build(BrainMassForPreTraining, True)
    if output_dir is not None:
        output_dir = Path(output_dir)
        encoder.save_pretrained(output_dir)
        facts = {
            "status": f"Weights: converted from the authors' checkpoint `{Path(path).name}` by `brainmass "
            "convert-official`; their pretraining data and results apply, not this repository's.",
            "recipe": f"brainmass convert-official {Path(path).name} --out {output_dir.name}"
            + f" --heads {config.num_attention_heads}" + (" --full" if full else ""),
        }
        complete_checkpoint_folder(output_dir, facts=facts)
        if pretraining is not None:
            pretraining.save_pretrained(output_dir / "pretraining")
            complete_checkpoint_folder(output_dir / "pretraining", card=(output_dir / "README.md").read_text())
    return encoder, pretraining
