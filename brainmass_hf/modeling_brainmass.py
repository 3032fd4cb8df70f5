"""BrainMass: a self-supervised foundation model of brain networks (Yang et al., IEEE TMI 2024, arXiv 2403.01433).

Reading order follows the data: output dataclasses → helpers (sinusoidal positions, row gathers, shape checks) →
attention → feed-forward → layer → encoder → ``BrainMassPreTrainedModel`` → ``BrainMassModel`` →
``BrainMassForPreTraining`` → ``BrainMassForConnectomeClassification``.

Every model takes FC matrices ``connectivity`` of shape ``(batch_size, num_rois, num_rois)``, or raw ROI
``time_series`` of shape ``(batch_size, num_timepoints, num_rois)`` with a boolean ``time_mask``
``(batch_size, num_timepoints)`` (the time points FC uses: the valid points of a padded batch, or the points a pFC
view keeps); then FC is computed on the model's device with the checkpoint's own preprocessing (``config.fc_kind``,
``config.fisher_z``). ``BrainMassInputEmbeddings`` turns FC into the ROI tokens (``config.input_space``: the FC rows, or
FC in the tangent space at a reference point saved with the weights). The models draw nothing (dropout aside): the pFC views and the masked ROIs of pretraining come
in the batch, drawn by the data collators (``data_collator.py``), so an output is a function of the batch, in
training and evaluation mode alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.loss.loss_utils import ForSequenceClassificationLoss
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput, can_return_tuple

from .configuration_brainmass import BrainMassConfig, check_preprocessor_agrees, read_json_beside
from .connectivity import connectivity_view, connectivity_views, min_scan_length, tangent_tokens
from .validation import validate_connectivity, validate_time_series

__all__ = [
    "BrainMassPreTrainingOutput",
    "BrainMassPreTrainedModel",
    "BrainMassInputEmbeddings",
    "BrainMassModel",
    "BrainMassForPreTraining",
    "BrainMassForConnectomeClassification",
    "feature_std",
    "sinusoidal_position_table",
]


# ----------------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class BrainMassPreTrainingOutput(ModelOutput):
    """Output of :class:`BrainMassForPreTraining`.

    Args:
        loss: scalar, ``lra_loss_weight * lra_loss + mrc_loss_weight * mrc_loss + mrm_loss_weight * mrm_loss``.
        lra_loss: latent representation alignment (BYOL) loss, in ``[0, 8]``.
        mrm_loss: masked-ROI reconstruction mean squared error.
        mrc_loss: masked-ROI classification InfoNCE loss.
        mrc_accuracy: fraction of masked ROIs whose prediction picks its own ROI.
        online_projection: ``(batch_size, projection_size)`` online ``g`` output of view 1.
        masked_roi_indices: ``(batch_size, mrm_num_masked)`` ROIs masked for reconstruction.
        feature_std: scalar, :func:`feature_std` of the online readout of view 1 (representation health).
        online_target_cosine: scalar, mean cosine of the online and EMA-target readouts of the same view (both views).
        pooled_output: ``(batch_size, num_rois * readout_dim)`` online readout of view 1, detached (the trainer takes
            its effective rank at log time: an SVD waits for the device, so it is not in the step).
    """

    loss: torch.FloatTensor | None = None
    lra_loss: torch.FloatTensor | None = None
    mrm_loss: torch.FloatTensor | None = None
    mrc_loss: torch.FloatTensor | None = None
    mrc_accuracy: torch.FloatTensor | None = None
    online_projection: torch.FloatTensor | None = None
    masked_roi_indices: torch.LongTensor | None = None
    feature_std: torch.FloatTensor | None = None
    online_target_cosine: torch.FloatTensor | None = None
    pooled_output: torch.FloatTensor | None = None


# ----------------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------------
def sinusoidal_position_table(num_positions: int, dim: int) -> torch.Tensor:
    """The fixed Transformer position table ``(num_positions, dim)``: sin on even, cos on odd features."""
    position = torch.arange(num_positions, dtype=torch.float64)[:, None]
    exponent = (2 * (torch.arange(dim) // 2)).double() / dim
    angles = position / torch.pow(10000.0, exponent)[None, :]
    table = torch.where(torch.arange(dim)[None, :] % 2 == 0, torch.sin(angles), torch.cos(angles))
    return table.float()


def feature_std(features: torch.Tensor) -> torch.Tensor:
    """SimSiam's collapse check: the across-batch std of each dimension of the L2-normalised ``features``
    ``(batch, D)``, averaged over dimensions (population std). About ``1/sqrt(D)`` for spread-out features, 0 when
    every scan maps to one vector. Scalar; no host synchronisation."""
    return F.normalize(features.float(), dim=-1).std(dim=0, correction=0).mean()


def _gather_rows(x: torch.Tensor, indices: torch.LongTensor) -> torch.Tensor:
    """Rows ``indices`` ``(B, k)`` of ``x`` ``(B, N, D)`` → ``(B, k, D)``."""
    return x.gather(1, indices.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


# Shape checks, free on the host. Values (NaN/Inf, too-short scans) are checked where data enters -- the feature
# extractor, the collators, `brainmass_hf.validation` -- and, through the same functions, by an eval-mode forward
# (`_checks_values`); never by the training forward, where a value check would synchronise with the host and break
# `torch.compile` graphs on every step.
def _check_connectivity_shape(connectivity: torch.Tensor, config: BrainMassConfig, name: str = "connectivity"):
    r = config.num_rois
    if connectivity.dim() != 3 or tuple(connectivity.shape[1:]) != (r, r):
        atlas = f" (atlas {config.atlas_name})" if config.atlas_name else ""
        hint = " Add a batch dimension: connectivity[None]." if connectivity.dim() == 2 else ""
        raise ValueError(
            f"{name} must have shape (batch_size, {r}, {r}) for this model{atlas}; got {tuple(connectivity.shape)}."
            f"{hint} Use time series parcellated with the atlas the checkpoint was trained on."
        )


def _check_time_series_shape(time_series: torch.Tensor, time_mask, config: BrainMassConfig):
    r = config.num_rois
    if time_series.dim() != 3 or time_series.shape[-1] != r:
        hint = " Add a batch dimension (time_series[None])." if time_series.dim() == 2 else ""
        raise ValueError(
            f"time_series must have shape (batch_size, num_timepoints, {r}); got {tuple(time_series.shape)}. The "
            f"checkpoint expects {r} ROIs (time × ROI per scan).{hint} BrainMassFeatureExtractor pads and checks scans."
        )
    if time_mask is not None and tuple(time_mask.shape) != tuple(time_series.shape[:2]):
        raise ValueError(
            f"time_mask must have shape (batch_size, num_timepoints) = {tuple(time_series.shape[:2])} to match "
            f"time_series; got {tuple(time_mask.shape)}. Pass the time_mask that pad_time_series returned."
        )


# ----------------------------------------------------------------------------------------------------------------
# Attention, feed-forward, layer, encoder
# ----------------------------------------------------------------------------------------------------------------
def inverted_dropout(hidden_states: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout of a tensor of any shape, as ``F.dropout``.

    On CPU in eager mode the keep mask is drawn as 16-bit slices of 64-bit random words from the default generator
    (four draws per generator call) instead of torch's per-element Bernoulli draw, which takes about a third of a
    CPU pretraining step: same step, about a third less time (``benchmarks/results/cpu_reference.md``). A value
    is dropped with probability ``round(p · 65536) / 65536`` (0.1 → 0.100006) and the kept ones are scaled by the
    inverse of that keep rate, so the expectation is unchanged. On accelerators (whose fused kernels draw their own
    random numbers cheaply) and under ``torch.compile`` (which cannot trace the in-place draw) this is ``F.dropout``,
    so an eager and a compiled CPU step draw different dropout masks."""
    if not training or p == 0.0:
        return hidden_states
    if hidden_states.device.type != "cpu" or torch.compiler.is_compiling() or p >= 1.0:
        return F.dropout(hidden_states, p, True)
    numel = hidden_states.numel()
    words = torch.empty((numel + 3) // 4, dtype=torch.int64).random_(-(2**63), None)  # all 64 bits random
    draws = words.view(torch.int16)[:numel].view(hidden_states.shape)  # uniform on [-32768, 32767]
    dropped = round(p * 65536)
    scale = 65536 / (65536 - dropped)
    # the comparison writes 0/1 straight into a float tensor, scaled in place: two passes over the mask, the fewest
    # bytes moved of the variants measured (the step is memory-bound on this kind of CPU)
    keep = torch.ge(draws, dropped - 32768, out=torch.empty_like(hidden_states))
    return hidden_states * keep.mul_(scale)


class BrainMassDropout(nn.Dropout):
    """``nn.Dropout`` through :func:`inverted_dropout` (the fast CPU mask)."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return inverted_dropout(hidden_states, self.p, self.training)


def eager_attention_forward(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, scaling: float, dropout: float = 0.0, **kwargs):
    """Plain softmax attention. ``query/key/value``: ``(batch, heads, tokens, head_dim)``.
    Returns ``(output (batch, tokens, heads, head_dim), weights (batch, heads, tokens, tokens))``."""
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = F.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = inverted_dropout(weights, dropout, module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


class BrainMassSelfAttention(nn.Module):
    """Multi-head self-attention over ROI tokens with one fused input projection, parameter-for-parameter
    ``torch.nn.MultiheadAttention`` (``in_proj`` ``(3R, R)`` + bias, ``out_proj`` ``(R, R)`` + bias)."""

    def __init__(self, config: BrainMassConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.num_rois // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_probs_dropout_prob
        self.is_causal = False
        self.in_proj = nn.Linear(config.num_rois, 3 * config.num_rois)
        self.out_proj = nn.Linear(config.num_rois, config.num_rois)

    def forward(self, hidden_states: torch.Tensor, output_attentions: bool = False):
        """``hidden_states`` ``(batch, tokens, R)`` → ``(output (batch, tokens, R), weights or None)``."""
        batch, tokens, _ = hidden_states.shape
        qkv = self.in_proj(hidden_states).view(batch, tokens, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attention_interface: Callable = eager_attention_forward
        # On CPU, SDPA with dropout is slower than the eager softmax + F.dropout (same maths, same dropout on the
        # attention weights): 10-25 % per attention forward + backward on a 2-core CPU (issue 9 item 3). On
        # accelerators, or without dropout, SDPA's fused kernels win.
        cpu_dropout = self.training and self.attention_dropout > 0 and hidden_states.device.type == "cpu"
        if not (output_attentions or cpu_dropout) and self.config._attn_implementation != "eager":
            attention_interface = ALL_ATTENTION_FUNCTIONS[self.config._attn_implementation]
        dropout = self.attention_dropout if self.training else 0.0
        output, weights = attention_interface(self, query, key, value, None, dropout=dropout, scaling=self.scaling)
        output = self.out_proj(output.reshape(batch, tokens, -1))
        return output, weights


class BrainMassFeedForward(nn.Module):
    def __init__(self, config: BrainMassConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.num_rois, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]
        self.dropout = BrainMassDropout(config.hidden_dropout_prob)
        self.fc2 = nn.Linear(config.intermediate_size, config.num_rois)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.act(self.fc1(hidden_states))))


class BrainMassLayer(GradientCheckpointingLayer):
    """Post-norm encoder layer (``torch.nn.TransformerEncoderLayer`` with ``norm_first=False``):
    ``x = LN1(x + Dropout(SelfAttn(x)))``; ``x = LN2(x + Dropout(FFN(x)))``."""

    def __init__(self, config: BrainMassConfig):
        super().__init__()
        self.attention = BrainMassSelfAttention(config)
        self.dropout1 = BrainMassDropout(config.hidden_dropout_prob)
        self.norm1 = nn.LayerNorm(config.num_rois, eps=config.layer_norm_eps)
        self.feed_forward = BrainMassFeedForward(config)
        self.dropout2 = BrainMassDropout(config.hidden_dropout_prob)
        self.norm2 = nn.LayerNorm(config.num_rois, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor, output_attentions: bool = False):
        attention_output, weights = self.attention(hidden_states, output_attentions=output_attentions)
        hidden_states = self.norm1(hidden_states + self.dropout1(attention_output))
        hidden_states = self.norm2(hidden_states + self.dropout2(self.feed_forward(hidden_states)))
        return hidden_states, weights


class BrainMassInputEmbeddings(nn.Module):
    """FC ``(batch, R, R)`` → the ROI tokens ``(batch, R, R)`` the encoder reads, by ``config.input_space``:

    * ``"correlation"`` (the paper): the FC rows as they are; no parameters, no buffers.
    * ``"tangent"``: the rows of ``log(W C W)`` (:func:`brainmass_hf.connectivity.tangent_tokens`), ``W = G^-1/2``
      for the reference point ``G``. ``whitening`` ``(R, R)`` is a persistent buffer (saved and loaded with the
      weights, never trained), the identity until :meth:`BrainMassPreTrainedModel.set_tangent_reference` sets it.
    """

    def __init__(self, config: BrainMassConfig):
        super().__init__()
        self.input_space = config.input_space
        if self.input_space == "tangent":
            self.register_buffer("whitening", torch.eye(config.num_rois))

    def forward(self, connectivity: torch.Tensor) -> torch.Tensor:
        if self.input_space == "tangent":
            return tangent_tokens(connectivity, self.whitening)
        return connectivity


class BrainMassEncoder(nn.Module):
    def __init__(self, config: BrainMassConfig):
        super().__init__()
        self.layers = nn.ModuleList([BrainMassLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(self, hidden_states: torch.Tensor, output_attentions: bool = False, output_hidden_states: bool = False):
        """``hidden_states`` ``(batch, tokens, R)`` → ``(last (batch, tokens, R), all_hidden or None, attentions or None)``."""
        all_hidden = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layers:
            hidden_states, weights = layer(hidden_states, output_attentions=output_attentions)
            if output_hidden_states:
                all_hidden = all_hidden + (hidden_states,)
            if output_attentions:
                all_attentions = all_attentions + (weights,)
        return hidden_states, all_hidden, all_attentions


class BrainMassReadout(nn.Module):
    """Per-ROI ``Linear(R → readout_dim)`` + LeakyReLU, flattened: ``(batch, R, R)`` → ``(batch, R * readout_dim)``."""

    def __init__(self, config: BrainMassConfig):
        super().__init__()
        self.dense = nn.Linear(config.num_rois, config.readout_dim)
        self.negative_slope = config.readout_negative_slope

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.dense(hidden_states), self.negative_slope).flatten(1)


class BrainMassMLPHead(nn.Sequential):
    """``Linear → BatchNorm1d → ReLU → Linear``: the projection head ``g`` and the BYOL predictor ``q``."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int):
        super().__init__(
            nn.Linear(in_features, hidden_features),
            nn.BatchNorm1d(hidden_features),
            nn.ReLU(),
            nn.Linear(hidden_features, out_features),
        )


class BrainMassMaskedRoiHead(nn.Sequential):
    """``Linear(R → F) → LeakyReLU → Linear(F → R)``: predicts a masked ROI's FC row from its encoded token."""

    def __init__(self, config: BrainMassConfig):
        super().__init__(
            nn.Linear(config.num_rois, config.masked_roi_head_hidden_size),
            nn.LeakyReLU(config.masked_roi_head_negative_slope),
            nn.Linear(config.masked_roi_head_hidden_size, config.num_rois),
        )


# ----------------------------------------------------------------------------------------------------------------
# Pretrained base
# ----------------------------------------------------------------------------------------------------------------
class BrainMassPreTrainedModel(PreTrainedModel):
    config_class = BrainMassConfig
    config: BrainMassConfig
    base_model_prefix = "brainmass"
    main_input_name = "connectivity"
    supports_gradient_checkpointing = True
    _no_split_modules = ["BrainMassLayer"]
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_attention_backend = True
    # Every loss here is a mean over the micro-batch and takes no `num_items_in_batch`: the Trainer must divide it by
    # the accumulation steps itself (and not scale it by the world size). Stated, not inferred from the signature.
    accepts_loss_kwargs = False

    @torch.no_grad()
    def _init_weights(self, module):
        # PyTorch's own initialisation, as in torch.nn.TransformerEncoderLayer and the authors' code. The
        # `transformers.initialization` functions skip tensors that `from_pretrained` already loaded; everything the
        # checkpoint does not hold (the position table, BatchNorm statistics of missing heads) is rebuilt here.
        if isinstance(module, BrainMassSelfAttention):
            init.xavier_uniform_(module.in_proj.weight)
            init.zeros_(module.in_proj.bias)
            init.zeros_(module.out_proj.bias)
        elif isinstance(module, (nn.Linear, nn.LayerNorm)):
            module.reset_parameters()  # its torch.nn.init calls are guarded by from_pretrained
        elif isinstance(module, nn.BatchNorm1d):
            # not `reset_parameters()`: its running-statistics reset is unguarded and would wipe loaded statistics
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)
        elif isinstance(module, BrainMassInputEmbeddings) and module.input_space == "tangent":
            init.copy_(module.whitening, torch.eye(module.whitening.shape[0]))
        elif isinstance(module, BrainMassForPreTraining):
            for token in (*module.prefix_tokens(), module.mask_embedding):
                init.xavier_normal_(token)
            table = sinusoidal_position_table(*module.position_embeddings.shape[1:])
            init.copy_(module.position_embeddings, table[None])

    # An override, not a hook: transformers has no public hook that runs after loading with the keys the checkpoint
    # lacked, nor one that rewrites a loading error. It relies on `output_loading_info=True` returning
    # `(model, info)` with `info["missing_keys"]`; tests/test_framework_hooks.py fails if that changes.
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, allow_partial_loading: bool = False,
                        **kwargs):
        """``PreTrainedModel.from_pretrained`` that refuses a checkpoint lacking encoder weights the config needs
        (e.g. fewer layers than ``num_hidden_layers``) or whose ``preprocessor_config.json`` disagrees with its
        ``config.json`` (``ValueError`` naming both values), and re-applies what the weights do not hold (frozen EMA
        target, frozen masked-ROI modules, a target copied from the online network when the folder has none).

        Args:
            allow_partial_loading (`bool`, defaults to `False`): keep the encoder weights the checkpoint lacks at
                their random initialisation instead of raising (e.g. to grow a model by adding layers).
        """
        output_loading_info = kwargs.pop("output_loading_info", False)
        try:
            model, info = super().from_pretrained(pretrained_model_name_or_path, *model_args,
                                                  output_loading_info=True, **kwargs)
        except Exception as error:
            # safetensors' own message ("incomplete metadata, file not fully covered") names neither file nor fix;
            # matched by module name because remote code may import only torch, transformers and numpy
            unreadable = type(error).__module__.startswith("safetensors") or (
                isinstance(error, OSError) and "not a valid JSON" in str(error))
            if not unreadable:
                raise
            raise OSError(
                f"Cannot read the checkpoint {pretrained_model_name_or_path}: {error} The file is truncated or "
                "corrupt (an interrupted download or save): delete it (or its Hugging Face cache entry) and "
                "download or save the checkpoint again."
            ) from error
        model._after_loading(set(info["missing_keys"]), str(pretrained_model_name_or_path), allow_partial_loading)
        # the config owns the preprocessing settings; a folder whose preprocessor_config.json says otherwise is refused
        preprocessor = read_json_beside(pretrained_model_name_or_path, "preprocessor_config.json", kwargs)
        config = read_json_beside(pretrained_model_name_or_path, "config.json", kwargs) if preprocessor else None
        if config is not None:
            check_preprocessor_agrees(config, preprocessor, str(pretrained_model_name_or_path))
        return (model, info) if output_loading_info else model

    def _after_loading(self, missing_keys: set[str], source: str, allow_partial_loading: bool):
        """Runs after every ``from_pretrained`` with the keys the checkpoint lacked (model-relative names)."""
        prefix = "" if isinstance(self, BrainMassModel) else f"{self.base_model_prefix}."
        missing = sorted(k for k in missing_keys
                         if k.startswith((f"{prefix}encoder.", f"{prefix}readout.", f"{prefix}embeddings.")))
        if f"{prefix}embeddings.whitening" in missing and not allow_partial_loading:
            raise ValueError(
                f"The checkpoint {source} has no tangent reference (embeddings.whitening) but its config says "
                "input_space='tangent': its tokens would be log C, not the tangent space it was trained in. Load it "
                "with its own config, or pass allow_partial_loading=True and call set_tangent_reference (or "
                "brainmass_hf.training.fit_tangent_reference) before use."
            )
        if missing and not allow_partial_loading:
            layers = sorted({int(m.group(1)) for k in missing if (m := re.search(r"encoder\.layers\.(\d+)\.", k))})
            what = f"encoder layers {layers} (config num_hidden_layers={self.config.num_hidden_layers})" if layers \
                else f"{len(missing)} encoder weights (e.g. {missing[0]})"
            raise ValueError(
                f"The checkpoint {source} has no weights for {what}: they would stay random. Load it with its own "
                "config (do not override num_hidden_layers), or pass allow_partial_loading=True to from_pretrained "
                "to keep them randomly initialised on purpose."
            )

    @torch.no_grad()
    def set_tangent_reference(self, reference, num_scans: int) -> None:
        """Set the tangent reference point ``G`` ``(R, R)`` (SPD, e.g. the geometric mean of the pretraining scans'
        FC) of every encoder in this model (online and target alike): their ``embeddings.whitening`` becomes
        ``G^-1/2`` and ``config.tangent_reference_scans`` becomes ``num_scans``. Only for ``input_space="tangent"``."""
        from .connectivity import spd_inverse_sqrt

        if self.config.input_space != "tangent":
            raise ValueError(f"set_tangent_reference needs input_space='tangent'; this model's is "
                             f"{self.config.input_space!r}.")
        r = self.config.num_rois
        if tuple(torch.as_tensor(reference).shape) != (r, r):
            raise ValueError(f"The tangent reference must be ({r}, {r}); got {tuple(torch.as_tensor(reference).shape)}.")
        whitening = spd_inverse_sqrt(reference)
        for module in self.modules():
            if isinstance(module, BrainMassInputEmbeddings):
                module.whitening.copy_(whitening.to(module.whitening.dtype))
        self.config.tangent_reference_scans = int(num_scans)

    def _a_weight(self) -> torch.Tensor:
        """One weight, for the model's device and dtype (``self.device`` walks every parameter on each call)."""
        return (self if isinstance(self, BrainMassModel) else self.brainmass).readout.dense.weight

    def _time_series_on_device(self, time_series, time_mask):
        """Shape-checked ``time_series`` and ``time_mask`` on the model's device, and the model's float dtype."""
        weight = self._a_weight()
        _check_time_series_shape(time_series, time_mask, self.config)
        time_mask = None if time_mask is None else time_mask.to(weight.device)
        return time_series.to(weight.device), time_mask, weight.dtype

    def _checks_values(self) -> bool:
        """Whether this forward is an inference call a user makes (eval mode, not traced or compiled): then its input
        values are checked like the feature extractor's (``_check_input_values``). The training forward never is:
        a value check needs a host synchronisation, and training inputs were checked by the collator."""
        return not self.training and not torch.compiler.is_compiling() and not torch.jit.is_tracing()

    def _check_input_values(self, connectivity, time_series, time_mask):
        """Eval-mode inputs through :mod:`brainmass_hf.validation`: connectivity finite (and at most 1e15) and
        symmetric; each time series' valid points finite, not constant in every ROI, at least
        ``min_scan_length(config, pfc=False)`` of them. One error naming every bad batch item."""
        def host(tensor):
            tensor = tensor.detach().cpu()
            return (tensor.float() if tensor.is_floating_point() and tensor.dtype != torch.float64 else tensor).numpy()

        if connectivity is not None:
            validate_connectivity(host(connectivity), [f"batch item {k}" for k in range(connectivity.shape[0])],
                                  positive_definite=self.config.input_space == "tangent")
            return
        scans = list(host(time_series))
        if time_mask is not None:  # the valid points only: padding may hold anything
            scans = [x[m] for x, m in zip(scans, host(time_mask).astype(bool))]
        validate_time_series(scans, [f"batch item {k}" for k in range(len(scans))], num_rois=self.config.num_rois,
                             min_timepoints=min_scan_length(self.config, pfc=False), warn_constant_rois=False)

    def _connectivity_from_inputs(self, connectivity, time_series, time_mask):
        """FC ``(batch, R, R)`` from either input: ``connectivity`` as given, or the FC of ``time_series`` over the
        points ``time_mask`` keeps (``config.fc_kind``, ``config.fisher_z``), computed on the model's device; values
        checked only at inference (``_checks_values``)."""
        if (connectivity is None) == (time_series is None):
            raise ValueError("Pass exactly one of connectivity (batch_size, R, R) or time_series (batch_size, T, R).")
        if connectivity is not None:
            weight = self._a_weight()
            _check_connectivity_shape(connectivity, self.config)
            if self._checks_values():
                self._check_input_values(connectivity, None, None)
            return connectivity.to(device=weight.device, dtype=weight.dtype)
        if self._checks_values():
            _check_time_series_shape(time_series, time_mask, self.config)
            self._check_input_values(None, time_series, time_mask)
        time_series, time_mask, dtype = self._time_series_on_device(time_series, time_mask)
        return connectivity_view(time_series, time_mask, settings=self.config, pfc=False).to(dtype)


# ----------------------------------------------------------------------------------------------------------------
# Encoder model (what downstream users load)
# ----------------------------------------------------------------------------------------------------------------
class BrainMassModel(BrainMassPreTrainedModel):
    """The BrainMass encoder: ``L`` post-norm transformer layers over ROI tokens + the per-ROI readout.

    ``pooler_output`` ``(batch_size, num_rois * readout_dim)`` (800 for R = 100) is the representation the paper
    evaluates downstream.
    """

    # a pretraining or classification checkpoint holds the encoder under this model's names plus their own parts
    _keys_to_ignore_on_load_unexpected = [
        r"^(projection|predictor|target_encoder|target_projection|mrm_head|mrc_head|classifier)\.",
        r"^(cls_token|dist_token|mask_embedding)$",
    ]

    def __init__(self, config: BrainMassConfig):
        super().__init__(config)
        self.embeddings = BrainMassInputEmbeddings(config)
        self.encoder = BrainMassEncoder(config)
        self.readout = BrainMassReadout(config)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        connectivity: torch.Tensor | None = None,
        time_series: torch.Tensor | None = None,
        time_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> BaseModelOutputWithPooling:
        """
        Args:
            connectivity: FC matrices ``(batch_size, num_rois, num_rois)``.
            time_series: alternatively ROI signals ``(batch_size, num_timepoints, num_rois)``; FC is computed here
                with the config's FC settings over the points ``time_mask`` keeps, in training and eval mode alike
                (a pFC view comes from the collator as a ``time_mask``: ``DataCollatorForConnectomeClassification``).
            time_mask: bool ``(batch_size, num_timepoints)``, the time points FC uses (``True`` = use): the valid
                points of a padded batch, or those of a pFC view. Default: all.
            inputs_embeds: alternatively the ROI tokens ``(batch_size, num_rois, num_rois)`` themselves, what
                ``self.embeddings`` makes of FC (equal to FC unless ``config.input_space="tangent"``); shape checked,
                values not.
            output_attentions: return per-layer attention maps ``(batch_size, heads, num_rois, num_rois)``
                (computed with eager attention).
            output_hidden_states: return the input tokens and every layer's output ``(batch_size, num_rois, num_rois)``.
            return_dict: ``False`` gives a tuple (handled by ``can_return_tuple``).
        Raises:
            BrainMassDataError: in eval mode only (not traced or compiled), input values that would give NaN or
                meaningless features: connectivity with NaN/Inf or values above 1e15 in size or not symmetric (or,
                with ``input_space="tangent"``, not positive definite);
                time series (their ``time_mask`` points) with NaN/Inf, values above 1e15, every ROI constant, or too
                few time points. Checked by :mod:`brainmass_hf.validation`, as the feature extractor does; the training
                forward checks shapes only (no host synchronisation).
        Returns:
            ``BaseModelOutputWithPooling`` with ``last_hidden_state`` ``(batch_size, num_rois, num_rois)`` and
            ``pooler_output`` ``(batch_size, num_rois * readout_dim)``.
        """
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        if inputs_embeds is not None:
            if connectivity is not None or time_series is not None:
                raise ValueError("Pass exactly one of connectivity, time_series or inputs_embeds.")
            _check_connectivity_shape(inputs_embeds, self.config, "inputs_embeds")
            weight = self._a_weight()
            tokens = inputs_embeds.to(device=weight.device, dtype=weight.dtype)
        else:
            tokens = self.embeddings(self._connectivity_from_inputs(connectivity, time_series, time_mask))
        last, hidden, attentions = self.encoder(tokens, output_attentions, output_hidden_states)
        return BaseModelOutputWithPooling(
            last_hidden_state=last, pooler_output=self.readout(last), hidden_states=hidden, attentions=attentions
        )


# ----------------------------------------------------------------------------------------------------------------
# Pretraining
# ----------------------------------------------------------------------------------------------------------------
class BrainMassForPreTraining(BrainMassPreTrainedModel):
    """BrainMass pretraining: BYOL latent alignment (LRA) + masked-ROI reconstruction (MRM, MSE) + masked-ROI
    classification (MRC, InfoNCE), SPEC §3.

    Modules: online encoder ``brainmass`` + projection ``projection`` (g); ``predictor`` (q); the EMA target
    ``target_encoder`` + ``target_projection`` (no gradients; updated by :meth:`update_target` after every optimizer
    step); ``mrm_head`` and ``mrc_head``; ``config.num_prefix_tokens`` learned tokens (``cls_token``, ``dist_token``)
    and ``mask_embedding`` (``(1, 1, R)`` each); a fixed sinusoidal position table ``(1, R + prefix, R)``, a
    non-persistent buffer that ``_init_weights`` rebuilds on every load. The target is part of the state dict, so
    training checkpoints resume exactly; a folder without one (an encoder checkpoint) gets a copy of the online
    network. :meth:`save_encoder` writes the online encoder as a :class:`BrainMassModel` checkpoint.
    """

    def __init__(self, config: BrainMassConfig):
        super().__init__(config)
        r, num_prefix = config.num_rois, config.num_prefix_tokens
        self.brainmass = BrainMassModel(config)
        self.projection = BrainMassMLPHead(config.pooled_size, config.projection_hidden_size, config.projection_size)
        self.predictor = BrainMassMLPHead(config.projection_size, config.predictor_hidden_size, config.projection_size)
        self.target_encoder = BrainMassModel(config)
        self.target_projection = BrainMassMLPHead(
            config.pooled_size, config.projection_hidden_size, config.projection_size
        )
        self.mrm_head = BrainMassMaskedRoiHead(config)
        self.mrc_head = BrainMassMaskedRoiHead(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, r)) if num_prefix >= 1 else None
        self.dist_token = nn.Parameter(torch.zeros(1, 1, r)) if num_prefix >= 2 else None
        self.mask_embedding = nn.Parameter(torch.zeros(1, 1, r))
        self.register_buffer("position_embeddings", torch.empty(1, r + num_prefix, r), persistent=False)
        self.post_init()
        self.reset_target()
        self._freeze()

    # -- EMA target -------------------------------------------------------------------------------------------
    def online_modules(self) -> tuple[nn.Module, nn.Module]:
        return self.brainmass, self.projection

    def target_modules(self) -> tuple[nn.Module, nn.Module]:
        return self.target_encoder, self.target_projection

    def prefix_tokens(self) -> list[nn.Parameter]:
        """The learned tokens prepended to the masked-ROI sequences (cls, dist), ``config.num_prefix_tokens``."""
        return [t for t in (self.cls_token, self.dist_token) if t is not None]

    def masked_roi_parameters(self) -> list[nn.Parameter]:
        """The parameters only the masked-ROI objectives use (the authors' optimizer never updates them)."""
        return [*self.mrm_head.parameters(), *self.mrc_head.parameters(), *self.prefix_tokens(), self.mask_embedding]

    def _paired_parameters(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        online = [p for m in self.online_modules() for p in m.parameters()]
        target = [p for m in self.target_modules() for p in m.parameters()]
        return online, target

    def _paired_buffers(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        online = [b for m in self.online_modules() for b in m.buffers()]
        target = [b for m in self.target_modules() for b in m.buffers()]
        return online, target

    def _freeze(self):
        """Frozen parts, re-applied after every load (``from_pretrained`` builds fresh parameters)."""
        for module in self.target_modules():
            module.requires_grad_(False)
        if not self.config.train_masked_roi_modules:
            for p in self.masked_roi_parameters():
                p.requires_grad_(False)

    def _after_loading(self, missing_keys: set[str], source: str, allow_partial_loading: bool):
        super()._after_loading(missing_keys, source, allow_partial_loading)
        if any(k.startswith(("target_encoder.", "target_projection.")) for k in missing_keys):
            self.reset_target()  # an encoder folder: the target starts as the online network, as in from_encoder
        self._freeze()

    @torch.no_grad()
    def reset_target(self):
        """Copy the online network (parameters and BatchNorm statistics) into the target and freeze the target."""
        for online, target in zip(self.online_modules(), self.target_modules()):
            target.load_state_dict(online.state_dict())
            target.requires_grad_(False)

    @torch.no_grad()
    def update_target(self, momentum: float | None = None):
        """EMA step ``θ_target ← m · θ_target + (1 − m) · θ_online`` (``m = config.ema_momentum``) over every
        parameter and floating-point buffer (BatchNorm running mean/var) of the online/target pair, in one
        ``torch._foreach_lerp_`` call (one fused kernel per dtype, not a Python loop of small ops); integer buffers
        (``num_batches_tracked``) are copied."""
        m = self.config.ema_momentum if momentum is None else momentum
        online, target = self._paired_parameters()
        online_buffers, target_buffers = self._paired_buffers()
        is_float = [b.is_floating_point() for b in online_buffers]
        online += [b for b, f in zip(online_buffers, is_float) if f]
        target += [b for b, f in zip(target_buffers, is_float) if f]
        torch._foreach_lerp_(target, online, 1.0 - m)
        counters = [(t, o) for t, o, f in zip(target_buffers, online_buffers, is_float) if not f]
        if counters:
            torch._foreach_copy_([t for t, _ in counters], [o for _, o in counters])

    @classmethod
    def from_encoder(cls, encoder: BrainMassModel | str, **kwargs) -> "BrainMassForPreTraining":
        """Continue pretraining from an encoder checkpoint: heads fresh, target = copy of the online network."""
        if isinstance(encoder, str):
            encoder = BrainMassModel.from_pretrained(encoder, **kwargs)
        model = cls(encoder.config)
        model.brainmass.load_state_dict(encoder.state_dict())
        model.reset_target()
        return model

    def save_encoder(self, save_directory: str, **kwargs):
        """Save the online encoder alone as a :class:`BrainMassModel` checkpoint (what users load)."""
        self.brainmass.save_pretrained(save_directory, **kwargs)

    # -- objectives -------------------------------------------------------------------------------------------
    @staticmethod
    def _alignment_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``2 − 2 cos(prediction, target)`` per scan ``(batch,)``."""
        return 2.0 - 2.0 * F.cosine_similarity(prediction, target.detach(), dim=-1)

    def _mask_tokens(self, connectivity: torch.Tensor, indices: torch.LongTensor) -> torch.Tensor:
        """Masked token sequence ``(B, prefix + R, R)``: the rows ``indices`` ``(B, k)`` of ``connectivity``
        ``(B, R, R)`` replaced by the mask embedding. Mask, then prepend the prefix tokens, then add positions (the
        authors' order, so each masked slot keeps its position). ``config.mask_roi_columns`` also zeroes column ``i``
        of every token (FC is symmetric: it holds row ``i``)."""
        batch, r, _ = connectivity.shape
        is_masked = torch.zeros(batch, r, dtype=torch.bool, device=connectivity.device).scatter_(1, indices, True)
        if self.config.mask_roi_columns:
            connectivity = connectivity.masked_fill(is_masked[:, None, :], 0.0)
        tokens = torch.where(is_masked[..., None], self.mask_embedding.to(connectivity.dtype), connectivity)
        prefix = [t.to(tokens.dtype).expand(batch, -1, -1) for t in self.prefix_tokens()]
        tokens = torch.cat([*prefix, tokens], dim=1)
        return tokens + self.position_embeddings.to(tokens.dtype)

    def _pretraining_views(self, connectivity_view1, connectivity_view2, time_series, time_mask, view_time_masks):
        """The two views ``(B, R, R)`` from either input, on the model's device: given, or the FC of ``time_series``
        over each view's kept points (both at once: they share one ``R × R`` product per scan). Shape checks only."""
        if time_series is None:
            if connectivity_view1 is None or connectivity_view2 is None:
                raise ValueError("BrainMassForPreTraining needs connectivity_view1 and connectivity_view2, or "
                                 "time_series + view_time_masks.")
            if connectivity_view1.shape != connectivity_view2.shape:
                raise ValueError(
                    f"The two views must have the same shape; got {tuple(connectivity_view1.shape)} and "
                    f"{tuple(connectivity_view2.shape)}."
                )
            return (self._connectivity_from_inputs(connectivity_view1, None, None),
                    self._connectivity_from_inputs(connectivity_view2, None, None))
        if connectivity_view1 is not None or connectivity_view2 is not None:
            raise ValueError("Pass either two connectivity views or time_series, not both.")
        if view_time_masks is None:
            raise ValueError(
                "BrainMassForPreTraining draws nothing: with time_series, pass view_time_masks (batch_size, 2, "
                "num_timepoints), the points each pFC view keeps, and the masked ROIs, as DataCollatorForPseudoFC "
                "returns them (brainmass_hf.draw_pretraining_choices(time_mask, model.config, generator) draws "
                "them for a batch you built)."
            )
        time_series, time_mask, dtype = self._time_series_on_device(time_series, time_mask)
        expected = (time_series.shape[0], 2, time_series.shape[1])
        if tuple(view_time_masks.shape) != expected:
            raise ValueError(f"view_time_masks must have shape (batch_size, 2, num_timepoints) = {expected}; got "
                             f"{tuple(view_time_masks.shape)}.")
        views = connectivity_views(time_series, time_mask, settings=self.config,
                                   view_time_masks=view_time_masks.to(time_series.device))
        return views[0].to(dtype), views[1].to(dtype)

    def _mixup_alignment_loss(self, tokens: torch.Tensor, target2: torch.Tensor, permutation, lambdas) -> torch.Tensor:
        """Un-Mix latent alignment (``config.fc_mixup_alpha > 0``): view-1 tokens ``tokens[:B]`` mixed across scans,
        ``λ_i x_i + (1 − λ_i) x_π(i)``, through the online network; its prediction is aligned with scan ``i``'s
        view-2 target ``target2`` ``(B, P)`` by ``λ_i`` and with scan ``π(i)``'s by ``1 − λ_i``. Returns the batch
        mean (a scalar)."""
        batch = target2.shape[0]
        if permutation is None or lambdas is None:
            raise ValueError(
                "config.fc_mixup_alpha > 0 needs mixup_permutation and mixup_lambdas (batch_size,) in the batch: "
                "build the collator with DataCollatorForPseudoFC.from_config(model.config) (or pass "
                "fc_mixup_alpha=config.fc_mixup_alpha), or draw them with brainmass_hf.draw_pretraining_choices."
            )
        if tuple(permutation.shape) != (batch,) or tuple(lambdas.shape) != (batch,):
            raise ValueError(f"mixup_permutation and mixup_lambdas must have shape (batch_size,) = ({batch},); got "
                             f"{tuple(permutation.shape)} and {tuple(lambdas.shape)}.")
        permutation = permutation.to(device=tokens.device, dtype=torch.long)
        weight = lambdas.to(device=tokens.device, dtype=tokens.dtype)
        view1 = tokens[:batch]
        mixed = weight[:, None, None] * view1 + (1.0 - weight[:, None, None]) * view1[permutation]
        prediction = self.predictor(self.projection(self.brainmass(inputs_embeds=mixed).pooler_output))
        loss = weight * self._alignment_loss(prediction, target2) + \
            (1.0 - weight) * self._alignment_loss(prediction, target2[permutation])
        return loss.mean()

    def _masked_roi_indices(self, indices, name: str, num_masked: int, batch: int, device) -> torch.LongTensor:
        """``indices`` ``(batch, num_masked)`` on ``device``, shape-checked against the config."""
        if indices is None:
            raise ValueError(
                f"BrainMassForPreTraining draws nothing: pass {name} (batch_size, {num_masked}), as "
                "DataCollatorForPseudoFC returns it (brainmass_hf.draw_pretraining_choices draws it for a batch you "
                "built)."
            )
        if tuple(indices.shape) != (batch, num_masked):
            raise ValueError(
                f"{name} must have shape (batch_size, {num_masked}) = ({batch}, {num_masked}) for this config; got "
                f"{tuple(indices.shape)}. Build the collator with DataCollatorForPseudoFC.from_config(model.config)."
            )
        return indices.to(device=device, dtype=torch.long)

    @can_return_tuple
    def forward(
        self,
        connectivity_view1: torch.Tensor | None = None,
        connectivity_view2: torch.Tensor | None = None,
        time_series: torch.Tensor | None = None,
        time_mask: torch.Tensor | None = None,
        view_time_masks: torch.Tensor | None = None,
        mrm_masked_roi_indices: torch.LongTensor | None = None,
        mrc_masked_roi_indices: torch.LongTensor | None = None,
        mixup_permutation: torch.LongTensor | None = None,
        mixup_lambdas: torch.Tensor | None = None,
    ) -> BrainMassPreTrainingOutput:
        """
        The random choices of the step come in the batch (:class:`~brainmass_hf.DataCollatorForPseudoFC` draws
        them): the model draws nothing, so with dropout off the same batch gives the same loss.

        Args:
            connectivity_view1, connectivity_view2: two pFC views ``(batch_size, num_rois, num_rois)``.
            time_series: alternatively ROI signals ``(batch_size, num_timepoints, num_rois)`` with ``time_mask``
                ``(batch_size, num_timepoints)`` (the valid points) and ``view_time_masks``
                ``(batch_size, 2, num_timepoints)`` (the points each view keeps; with ``pfc_mask_way="drop"`` a view
                drops at most ``int(pfc_drop_ratio * num_timepoints)`` points, as every draw with the config does);
                the two views are computed here, on the model's device. Inputs must have passed the entry-point
                checks (feature extractor / collator): no values are checked here, so the step never waits for the
                host.
            mrm_masked_roi_indices: ``(batch_size, mrm_num_masked)`` distinct ROIs hidden for reconstruction.
            mrc_masked_roi_indices: ``(batch_size, mrc_num_masked)`` distinct ROIs hidden for classification.
            mixup_permutation, mixup_lambdas: ``(batch_size,)`` each, only with ``config.fc_mixup_alpha > 0``: scan
                ``i``'s view-1 tokens are mixed with those of scan ``mixup_permutation[i]`` with weight
                ``mixup_lambdas[i]`` on its own (see ``BrainMassConfig.fc_mixup_alpha``).
            return_dict: ``False`` gives a tuple.
        Returns:
            :class:`BrainMassPreTrainingOutput` with the total ``loss`` and every part.
        """
        cfg = self.config
        view1, view2 = self._pretraining_views(connectivity_view1, connectivity_view2, time_series, time_mask,
                                               view_time_masks)
        batch = view1.shape[0]
        mrm_indices = self._masked_roi_indices(mrm_masked_roi_indices, "mrm_masked_roi_indices", cfg.mrm_num_masked,
                                               batch, view1.device)
        mrc_indices = self._masked_roi_indices(mrc_masked_roi_indices, "mrc_masked_roi_indices", cfg.mrc_num_masked,
                                               batch, view1.device)
        if batch < 2 and self.training:
            raise ValueError("Pretraining needs at least 2 scans per batch (BatchNorm in the heads).")

        # The ROI tokens of both views (FC rows, or their tangent-space map: config.input_space), made once and read by
        # every objective; the target encoder's reference point is the online one's (set together, never trained).
        tokens = self.brainmass.embeddings(torch.cat([view1, view2]))
        view1 = tokens[:batch]
        # LRA: both views through the online encoder in one pass (no batch interaction in a transformer);
        # projection/predictor per view, so BatchNorm sees each view on its own, as in the authors' code.
        online = self.brainmass(inputs_embeds=tokens).pooler_output
        projection1 = self.projection(online[:batch])
        pred1 = self.predictor(projection1)
        pred2 = self.predictor(self.projection(online[batch:]))
        with torch.no_grad():
            target = self.target_encoder(inputs_embeds=tokens).pooler_output
            target1 = self.target_projection(target[:batch])
            target2 = self.target_projection(target[batch:])
        lra_loss = (self._alignment_loss(pred1, target2) + self._alignment_loss(pred2, target1)).mean()
        if cfg.fc_mixup_alpha > 0:
            mixed_loss = self._mixup_alignment_loss(tokens, target2, mixup_permutation, mixup_lambdas)
            lra_loss = 0.5 * (lra_loss + 2.0 * mixed_loss)

        # MRM and MRC: both masked sequences of view 1 through the online layers in one pass (no readout).
        mrm_tokens, mrc_tokens = self._mask_tokens(view1, mrm_indices), self._mask_tokens(view1, mrc_indices)
        encoded, _, _ = self.brainmass.encoder(torch.cat([mrm_tokens, mrc_tokens]))
        encoded_rois = encoded[:, cfg.num_prefix_tokens:]
        mrm_pred = self.mrm_head(_gather_rows(encoded_rois[:batch], mrm_indices))
        mrm_loss = F.mse_loss(mrm_pred, _gather_rows(view1, mrm_indices))

        mrc_pred = self.mrc_head(_gather_rows(encoded_rois[batch:], mrc_indices))  # (B, k, R)
        originals = _gather_rows(view1, mrc_indices).detach()  # (B, k, R)
        logits = originals @ mrc_pred.transpose(1, 2)  # [b, i, j] = original_i · prediction_j
        mrc_loss = -torch.diagonal(F.log_softmax(logits.float(), dim=-1), dim1=1, dim2=2).mean()
        picks = logits.argmax(dim=1)  # for each prediction j, the original it matches best
        mrc_accuracy = (picks == torch.arange(cfg.mrc_num_masked, device=picks.device)).float().mean()

        loss = cfg.lra_loss_weight * lra_loss + cfg.mrc_loss_weight * mrc_loss + cfg.mrm_loss_weight * mrm_loss
        return BrainMassPreTrainingOutput(
            loss=loss, lra_loss=lra_loss.detach(), mrm_loss=mrm_loss.detach(), mrc_loss=mrc_loss.detach(),
            mrc_accuracy=mrc_accuracy.detach(), masked_roi_indices=mrm_indices,
            online_projection=None if self.training else projection1.detach(),
            # representation health (training.HEALTH_METRICS), detached: no gradient, no host synchronisation
            feature_std=feature_std(online[:batch].detach()), pooled_output=online[:batch].detach(),
            online_target_cosine=F.cosine_similarity(online.detach().float(), target.float(), dim=-1).mean(),
        )


# ----------------------------------------------------------------------------------------------------------------
# Classification
# ----------------------------------------------------------------------------------------------------------------
class BrainMassForConnectomeClassification(BrainMassPreTrainedModel):
    """Encoder + the authors' fine-tuning head: readout ``(B, 8R)`` → LeakyReLU → [Linear → BatchNorm1d →
    LeakyReLU → Dropout(0.3)] for each of ``config.classifier_hidden_sizes`` (256, 32) → Linear(→ num_labels);
    slopes ``config.classifier_negative_slope``.

    ``labels`` give a loss by ``config.problem_type`` (transformers' ``ForSequenceClassificationLoss``):
    ``"single_label_classification"`` (cross-entropy), ``"multi_label_classification"`` (BCE with logits),
    ``"regression"`` (MSE); inferred from ``num_labels`` and the labels' dtype when unset.
    """

    def __init__(self, config: BrainMassConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.brainmass = BrainMassModel(config)
        layers: list[nn.Module] = []
        width = config.pooled_size
        for hidden in config.classifier_hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden),
                       nn.LeakyReLU(config.classifier_negative_slope), nn.Dropout(config.classifier_dropout)]
            width = hidden
        layers.append(nn.Linear(width, config.num_labels))
        self.classifier = nn.Sequential(*layers)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        connectivity: torch.Tensor | None = None,
        time_series: torch.Tensor | None = None,
        time_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> SequenceClassifierOutput:
        """
        Args:
            connectivity: FC ``(batch_size, num_rois, num_rois)``, or ``time_series``
                ``(batch_size, num_timepoints, num_rois)`` + ``time_mask`` ``(batch_size, num_timepoints)``, the
                points FC uses in either mode. Fine-tuning on pFC views (the authors' protocol) gets its view from
                ``DataCollatorForConnectomeClassification(view="pfc")``, as a ``time_mask``; evaluation uses the
                full FC (``view="full"``).
            labels: ``(batch_size,)`` class indices, ``(batch_size, num_labels)`` multi-hot, or
                ``(batch_size,)``/``(batch_size, num_labels)`` floats for regression.
            return_dict: ``False`` gives a tuple.
        Returns:
            ``SequenceClassifierOutput`` with ``logits`` ``(batch_size, num_labels)`` and the batch-mean ``loss``.
        """
        outputs = self.brainmass(connectivity=connectivity, time_series=time_series, time_mask=time_mask,
                                 output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        logits = self.classifier(F.leaky_relu(outputs.pooler_output, self.config.classifier_negative_slope))
        loss = None
        if labels is not None:
            if not labels.is_floating_point():
                labels = labels.long()
            if self.num_labels == 1 or self.config.problem_type in ("regression", "multi_label_classification"):
                labels = labels.float()
            loss = ForSequenceClassificationLoss(labels, logits, self.config)
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
