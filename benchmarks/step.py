"""One pretraining step of ours, for every benchmark that times it: synthetic inputs, the model of a preset, the
step itself (forward → backward → optimizer → EMA), and its FLOPs (SPEC §6, or counted). The SPEC §6 anchor of
the authors' code on an H200 is here too."""

from __future__ import annotations

import numpy as np
import torch

import harness  # noqa: F401 -- importing it puts the repository root on sys.path
from harness import autocast as _autocast
from brainmass_hf import BrainMassConfig, BrainMassForPreTraining
from brainmass_hf.connectivity import connectivity_views
from brainmass_hf.data_collator import draw_pretraining_choices

# SPEC §6: official code, one NVIDIA H200, torch 2.11, FC inputs 100x100, AdamW, EMA.
ANCHOR_DEVICE = "NVIDIA H200 (official code, torch 2.11)"
ANCHOR = {
    # (preset, batch): (fp32 samples/s, bf16 autocast samples/s, fp32 peak GiB); None = out of memory on 139 GiB
    ("small", 256): (605.0, 497.0, 10.6),
    ("base", 64): (207.0, 201.0, 12.8),
    ("base", 256): (344.0, 389.0, 49.9),
    ("large", 64): (138.0, 118.0, 46.7),
    ("large", 256): None,
}
# SPEC §6: forward + backward FLOPs per scan per step (all four encoder passes + target), R = 100.
GFLOPS_PER_SCAN = {"small": 6.2, "base": 21.4, "large": 79.6}
DEFAULT_BATCH_SIZES = {"small": [256], "base": [64, 256], "large": [64], "tiny": [256]}
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")


def random_scans(batch: int, num_timepoints: int, num_rois: int, seed: int) -> np.ndarray:
    """Synthetic ROI signals ``(batch, T, R)`` float32 with network structure: ``max(1, R // 10)`` shared latent
    signals mixed into every ROI plus unit noise. Plain white noise would not do: at T = 200, R = 100 its Ledoit-Wolf
    shrinkage is 1, every FC is the identity, and a check against nilearn would compare zeros."""
    rng = np.random.default_rng(seed)
    k = max(1, num_rois // 10)
    latent = rng.standard_normal((batch, num_timepoints, k))
    mixing = rng.standard_normal((batch, k, num_rois))
    noise = rng.standard_normal((batch, num_timepoints, num_rois))
    return (latent @ mixing + noise).astype(np.float32)


def make_inputs(kind: str, batch: int, num_timepoints: int, config: BrainMassConfig, device: torch.device,
                seed: int) -> dict:
    """Synthetic model inputs on ``device`` (built on the CPU, copied once): ``kind="fc"`` two pFC views
    ``(B, R, R)``, ``"time_series"`` the padded scans + ``time_mask`` + the points each view keeps (the model computes
    the views); both with the masked ROIs. The random choices are one :func:`draw_pretraining_choices`, as
    ``DataCollatorForPseudoFC`` draws them."""
    ts = torch.from_numpy(random_scans(batch, num_timepoints, config.num_rois, seed))
    full = torch.ones(batch, num_timepoints, dtype=torch.bool)
    choices = draw_pretraining_choices(full, config, torch.Generator().manual_seed(seed))
    if kind == "time_series":
        inputs = {"time_series": ts, "time_mask": full, **choices}
    else:
        views = connectivity_views(ts, full, settings=config, view_time_masks=choices.pop("view_time_masks"))
        inputs = {"connectivity_view1": views[0], "connectivity_view2": views[1], **choices}
    return {k: v.to(device) for k, v in inputs.items()}


def make_optimizer(model: torch.nn.Module, fused: bool = True) -> torch.optim.AdamW:
    """The authors' AdamW (lr 3e-4, weight decay 5e-5) over the trainable parameters. ``fused=True`` (default) is
    what ``brainmass pretrain`` runs (transformers' default ``optim="adamw_torch_fused"``): one kernel per
    parameter group, on the CPU too; ``False`` gives torch's default foreach implementation."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(trainable, lr=3e-4, weight_decay=5e-5, **({"fused": True} if fused else {}))


def train_step(model, step_model, optimizer, inputs: dict, device: torch.device, precision: str, scaler=None):
    """One pretraining step of ours: forward (``step_model``, maybe compiled) under ``precision`` → backward →
    optimizer step (through ``scaler`` for fp16) → ``model.update_target()`` (EMA). Returns the loss tensor."""
    optimizer.zero_grad(set_to_none=True)
    with _autocast(device, precision):
        loss = step_model(**inputs).loss
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    model.update_target()
    return loss


def flops_per_scan(preset: str, num_rois: int) -> tuple[float, str]:
    """Forward + backward FLOPs of one scan in one pretraining step, in GFLOP, and where the number comes from:
    SPEC §6 for the paper presets at R = 100, else counted with ``torch.utils.flop_counter.FlopCounterMode``
    (matrix products and attention only) on one step of a batch of 2 on the CPU."""
    if num_rois == 100 and preset in GFLOPS_PER_SCAN:
        return GFLOPS_PER_SCAN[preset], "SPEC §6"
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = BrainMassForPreTraining(BrainMassConfig.from_preset(preset, num_rois=num_rois)).train()
    views = torch.eye(num_rois).expand(2, -1, -1).contiguous()
    rois = {k: v for k, v in draw_pretraining_choices(torch.ones(2, 10, dtype=torch.bool), model.config).items()
            if k.endswith("masked_roi_indices")}
    with FlopCounterMode(display=False) as counter:
        model(connectivity_view1=views, connectivity_view2=views, **rois).loss.backward()
    return counter.get_total_flops() / 2 / 1e9, "counted (FlopCounterMode)"


def checkpointing_on(model) -> bool:
    """Whether activation (gradient) checkpointing is on; transformers 5 renamed the property."""
    if hasattr(type(model), "is_activation_checkpointing"):
        return bool(model.is_activation_checkpointing)
    return bool(model.is_gradient_checkpointing)


def build_model(preset: str, args, device: torch.device) -> BrainMassForPreTraining:
    """Our pretraining model for ``preset`` with the command line's overrides, in train mode on ``device``."""
    overrides = {"num_rois": args.num_rois}
    if args.fc_kind:
        overrides["fc_kind"] = args.fc_kind
    config = BrainMassConfig.from_preset(preset, **overrides)
    if args.attn_implementation:
        config._attn_implementation = args.attn_implementation
    model = BrainMassForPreTraining(config).to(device).train()
    if args.gradient_checkpointing:  # recompute each layer in backward: memory for time (large at batch 256)
        model.activation_checkpointing_enable()
        if not checkpointing_on(model):
            raise RuntimeError("activation_checkpointing_enable() did not switch checkpointing on for this model.")
    return model
