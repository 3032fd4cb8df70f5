"""Attention maps of the BrainMass encoder: per layer and head, head-mean, and attention rollout.

Rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers"): each BrainMass layer computes
``x + Attn(x)`` before its norm, so a token's output mixes the other tokens (through ``A``) with itself (through the
residual). Rollout models one layer as ``Ã = (1 - residual) · A + residual · I`` (``A`` the head-mean attention,
rows summing to one) and composes the layers, ``R = Ã_L ⋯ Ã_1``: ``R[i, j]`` is how much of token ``i``'s final
representation flows from input token ``j``. ``residual=0.5`` is the paper's choice; ``residual=0`` drops the
identity term, so the rollout of a single layer is exactly its head-mean attention.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["attention_maps", "attention_rollout", "attention_received", "class_means"]


def _as_batch(connectivity: Any, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    fc = torch.as_tensor(np.asarray(connectivity) if not isinstance(connectivity, torch.Tensor) else connectivity)
    if fc.dim() == 2:
        fc = fc.unsqueeze(0)
    return fc.to(device=device, dtype=dtype)


def encoder_passes_with_attention(model: torch.nn.Module, connectivity: Any, batch_size: int = 32):
    """Yield, per batch of ``batch_size`` scans, the encoder's output with ``attentions`` (eval mode, no grad): one
    pass gives both the features (``pooler_output``) and the maps, so callers needing both run the encoder once.

    Args:
        model: a ``BrainMassModel`` or a model whose ``base_model`` is one (e.g. the classifier).
        connectivity: FC ``(N, R, R)`` (or one ``(R, R)``), array or tensor.
    """
    # transformers' base_model: the BrainMassModel inside a classifier / pretraining model, or the model itself
    encoder = model.base_model
    parameter = next(encoder.parameters())
    fc = _as_batch(connectivity, parameter.device, parameter.dtype)
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.inference_mode():
            for start in range(0, fc.shape[0], batch_size):
                # output_attentions=True makes every layer take the eager path whatever config._attn_implementation
                # says (SDPA and flash kernels never materialise the weights)
                outputs = encoder(connectivity=fc[start:start + batch_size], output_attentions=True)
                if not outputs.attentions:
                    raise ValueError(
                        f"{type(encoder).__name__} returned no attention weights; load it with "
                        "attn_implementation='eager'."
                    )
                yield outputs
    finally:
        encoder.train(was_training)


def attention_maps(model: torch.nn.Module, connectivity: Any, batch_size: int = 32) -> np.ndarray:
    """Per-layer, per-head attention weights of each scan.

    Args:
        model: a ``BrainMassModel`` or a model whose ``base_model`` is one (e.g. the classifier).
        connectivity: FC ``(N, R, R)`` (or one ``(R, R)``), array or tensor.
        batch_size: scans per forward pass.
    Returns:
        float32 ``(N, num_layers, num_heads, R, R)``; row ``i`` of a map is the distribution of ROI token ``i``'s
        attention over the ROI tokens (each row sums to one).
    """
    return np.concatenate([
        torch.stack(outputs.attentions, dim=1).float().cpu().numpy()
        for outputs in encoder_passes_with_attention(model, connectivity, batch_size)
    ])


def attention_rollout(attentions: np.ndarray, residual: float = 0.5) -> np.ndarray:
    """Attention rollout (module docstring) of head-mean attention.

    Args:
        attentions: ``(..., num_layers, num_heads, R, R)`` from :func:`attention_maps`, or already head-averaged
            ``(..., num_layers, R, R)`` when ``attentions.ndim`` is 3.
        residual: weight of the identity (residual) path per layer, in ``[0, 1)``; 0.5 as in Abnar & Zuidema.
    Returns:
        ``(..., R, R)``; rows sum to one. With one layer and ``residual=0`` it is that layer's head-mean attention.
    """
    attentions = np.asarray(attentions, dtype=np.float64)
    return compose_layers(attentions.mean(axis=-3) if attentions.ndim >= 4 else attentions, residual)


def compose_layers(layers: np.ndarray, residual: float = 0.5) -> np.ndarray:
    """The rollout of head-averaged attention ``(..., num_layers, R, R)`` → ``(..., R, R)``: each layer mixed with
    the identity (``residual``) and renormalised, then composed last layer first (:func:`attention_rollout`)."""
    if not 0.0 <= residual < 1.0:
        raise ValueError(f"residual must be in [0, 1); got {residual}.")
    layers = np.asarray(layers, dtype=np.float64)
    eye = np.eye(layers.shape[-1])
    rollout = None
    for layer in np.moveaxis(layers, -3, 0):
        mixed = (1.0 - residual) * layer + residual * eye
        # renormalise: eager softmax rows sum to one only up to float32 rounding
        mixed = mixed / mixed.sum(axis=-1, keepdims=True)
        rollout = mixed if rollout is None else mixed @ rollout
    return rollout


def attention_received(maps: np.ndarray, exclude_self: bool = True) -> np.ndarray:
    """How much attention each ROI receives from the other ROIs: the mean over query rows of ``(..., R, R)`` maps
    → ``(..., R)``; ``exclude_self`` leaves out each ROI's attention to itself (the diagonal, which the rollout's
    residual term inflates)."""
    maps = np.asarray(maps, dtype=np.float64)
    if not exclude_self:
        return maps.mean(axis=-2)
    r = maps.shape[-1]
    return (maps.sum(axis=-2) - np.diagonal(maps, axis1=-2, axis2=-1)) / (r - 1)


def class_means(values: np.ndarray, labels: Sequence[Any]) -> dict[Any, np.ndarray]:
    """Mean of ``values`` ``(N, ...)`` over the scans of each class: ``{class: (...)}``, classes sorted."""
    values, labels = np.asarray(values), np.asarray(labels)
    if values.shape[0] != labels.shape[0]:
        raise ValueError(f"values has {values.shape[0]} scans but labels has {labels.shape[0]}.")
    return {c.item() if hasattr(c, "item") else c: values[labels == c].mean(axis=0) for c in np.unique(labels)}
