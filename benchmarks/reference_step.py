"""A straightforward per-scan implementation of the authors' pretraining step, written from SPEC §2–3.

It is the yardstick of ``benchmark_pretraining.py --reference`` and ``benchmark_pfc.py``: the step the way the
method reads, with nothing vectorised across scans that the authors' code does not vectorise (SPEC §3, "Masking
and losses are computed with Python loops over the batch"):

* data path (:func:`reference_pfc_views`): per scan, drop ``int(0.2 * T)`` random time points in numpy, then
  ``nilearn.connectome.ConnectivityMeasure(kind="correlation")`` (Ledoit-Wolf, its default) on what is left, NaN
  set to 0; twice per scan for the two pFC views;
* model (:class:`ReferencePreTraining`): a stack of ``torch.nn.TransformerEncoderLayer`` (post-norm, ReLU,
  dropout 0.1) + per-ROI readout ``Linear(R → 8)`` + LeakyReLU; projection ``g`` and predictor ``q``
  (Linear → BatchNorm1d → ReLU → Linear); an EMA target copy of encoder + ``g``; LRA on each view through the
  online network separately; masked-ROI reconstruction (5 ROIs, MSE) and classification (10 ROIs, InfoNCE) with
  the masking, the heads and the losses in a Python loop over the scans;
* optimiser: ``torch.optim.AdamW`` (lr 3e-4, weight decay 5e-5) with its defaults; the EMA update as a Python
  loop over parameter pairs (:meth:`ReferencePreTraining.update_target`).

Unlike the authors' optimiser, the masked-ROI heads and tokens are trained (SPEC §3 calls that a bug), so both
sides of a comparison update the same parameters. Sizes come from :class:`brainmass_hf.BrainMassConfig`, so a
preset means the same model on both sides; the total parameter count equals ``BrainMassForPreTraining``'s.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from brainmass_hf import BrainMassConfig
from brainmass_hf.modeling_brainmass import sinusoidal_position_table

__all__ = ["nilearn_fc", "drop_timepoints", "reference_pfc_views", "ReferencePreTraining", "reference_step"]


def _connectivity_measure(kind: str):
    """nilearn's ``ConnectivityMeasure(kind="correlation")``: Ledoit-Wolf covariance (its default,
    ``LedoitWolf(store_precision=False)``) for ``"ledoit_wolf"``, the empirical covariance for ``"pearson"``."""
    from nilearn.connectome import ConnectivityMeasure
    from sklearn.covariance import EmpiricalCovariance

    if kind == "ledoit_wolf":
        return ConnectivityMeasure(kind="correlation")
    if kind == "pearson":
        # store_precision=False as nilearn's own LedoitWolf default: no matrix inverse the correlation never uses
        return ConnectivityMeasure(kind="correlation", cov_estimator=EmpiricalCovariance(store_precision=False))
    raise ValueError(f"Unknown FC kind {kind!r}; choose ledoit_wolf or pearson.")


def nilearn_fc(time_series: np.ndarray, kind: str = "ledoit_wolf") -> np.ndarray:
    """FC of one scan ``(T, R)`` → ``(R, R)`` float32, with a fresh ``ConnectivityMeasure`` per scan (as a
    per-scan ``Dataset.__getitem__`` does); NaN (constant ROIs) set to 0 as the authors do."""
    with warnings.catch_warnings():  # nilearn warns about its changing ``standardize`` default on every call
        warnings.simplefilter("ignore")
        fc = _connectivity_measure(kind).fit_transform([np.asarray(time_series, dtype=np.float64)])[0]
    return np.nan_to_num(fc, nan=0.0).astype(np.float32)


def drop_timepoints(time_series: np.ndarray, rng: np.random.Generator, drop_ratio: float = 0.2) -> np.ndarray:
    """The pFC drop of one scan ``(T, R)``: ``int(drop_ratio * T)`` time points chosen uniformly without
    replacement (not contiguous) removed → ``(T - int(drop_ratio * T), R)``."""
    num_timepoints = time_series.shape[0]
    dropped = rng.choice(num_timepoints, int(drop_ratio * num_timepoints), replace=False)
    return np.delete(time_series, dropped, axis=0)


def reference_pfc_views(scans, rng: np.random.Generator, drop_ratio: float = 0.2, kind: str = "ledoit_wolf"):
    """Two pFC views of every scan, one scan at a time: ``scans`` a list of ``(T_i, R)`` arrays →
    ``(view1, view2)``, each a float32 tensor ``(N, R, R)``."""
    views = ([], [])
    for ts in scans:
        for view in views:
            view.append(nilearn_fc(drop_timepoints(ts, rng, drop_ratio), kind))
    return tuple(torch.from_numpy(np.stack(v)) for v in views)


def _mlp(in_features: int, hidden: int, out_features: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                         nn.Linear(hidden, out_features))


class _ReferenceEncoder(nn.Module):
    """``L`` × ``nn.TransformerEncoderLayer`` + per-ROI readout: FC ``(B, R, R)`` → ``(B, 8R)``."""

    def __init__(self, config: BrainMassConfig):
        super().__init__()
        r = config.num_rois
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(r, config.num_attention_heads, config.intermediate_size,
                                       dropout=config.hidden_dropout_prob, activation="relu",
                                       layer_norm_eps=config.layer_norm_eps, batch_first=True, norm_first=False)
            for _ in range(config.num_hidden_layers)
        )
        self.readout = nn.Linear(r, config.readout_dim)
        self.negative_slope = config.readout_negative_slope

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, R)`` → ``(B, N, R)``: the transformer layers only (the masked-ROI paths skip the readout)."""
        for layer in self.layers:
            tokens = layer(tokens)
        return tokens

    def forward(self, connectivity: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.readout(self.encode(connectivity)), self.negative_slope).flatten(1)


class ReferencePreTraining(nn.Module):
    """The pretraining system of SPEC §2–3, per scan where the authors' code is per scan.

    ``forward(view1, view2)`` with two pFC views ``(B, R, R)`` → ``(loss, parts)``, ``parts`` a dict of the
    detached LRA, MRM and MRC losses and the MRC accuracy.
    """

    def __init__(self, config: BrainMassConfig):
        super().__init__()
        r, hidden = config.num_rois, config.masked_roi_head_hidden_size
        self.config = config
        self.online = _ReferenceEncoder(config)
        self.projection = _mlp(config.pooled_size, config.projection_hidden_size, config.projection_size)
        self.predictor = _mlp(config.projection_size, config.predictor_hidden_size, config.projection_size)
        self.target = copy.deepcopy(self.online).requires_grad_(False)
        self.target_projection = copy.deepcopy(self.projection).requires_grad_(False)
        self.mrm_head = nn.Sequential(nn.Linear(r, hidden), nn.LeakyReLU(), nn.Linear(hidden, r))
        self.mrc_head = nn.Sequential(nn.Linear(r, hidden), nn.LeakyReLU(), nn.Linear(hidden, r))
        self.cls_token = nn.Parameter(nn.init.xavier_normal_(torch.empty(1, r)))
        self.dist_token = nn.Parameter(nn.init.xavier_normal_(torch.empty(1, r)))
        self.mask_token = nn.Parameter(nn.init.xavier_normal_(torch.empty(1, r)))
        self.register_buffer("positions", sinusoidal_position_table(r + 2, r))

    @torch.no_grad()
    def update_target(self, momentum: float | None = None):
        """EMA of the online network, one parameter pair at a time."""
        m = self.config.ema_momentum if momentum is None else momentum
        pairs = zip([*self.online.parameters(), *self.projection.parameters()],
                    [*self.target.parameters(), *self.target_projection.parameters()])
        for online, target in pairs:
            target.mul_(m).add_(online.detach(), alpha=1.0 - m)

    def _masked_sequences(self, connectivity: torch.Tensor, num_masked: int):
        """Per scan: ``num_masked`` random ROIs replaced by the mask token, cls + dist prepended, positions added.
        Returns the encoded sequences ``(B, R + 2, R)`` and the list of masked ROI indices."""
        sequences, masked = [], []
        for fc in connectivity:
            indices = torch.randperm(fc.shape[0], device=fc.device)[:num_masked]
            tokens = fc.clone()
            tokens[indices] = self.mask_token.to(tokens.dtype)
            sequences.append(torch.cat([self.cls_token, self.dist_token, tokens]) + self.positions)
            masked.append(indices)
        return self.online.encode(torch.stack(sequences)), masked

    def forward(self, view1: torch.Tensor, view2: torch.Tensor):
        cfg = self.config
        pred1 = self.predictor(self.projection(self.online(view1)))
        pred2 = self.predictor(self.projection(self.online(view2)))
        with torch.no_grad():
            target1 = self.target_projection(self.target(view1))
            target2 = self.target_projection(self.target(view2))
        lra = ((2 - 2 * F.cosine_similarity(pred1, target2, dim=-1))
               + (2 - 2 * F.cosine_similarity(pred2, target1, dim=-1))).mean()

        encoded, masked = self._masked_sequences(view1, cfg.mrm_num_masked)
        mrm = sum(F.mse_loss(self.mrm_head(encoded[i, idx + 2]), view1[i, idx]) for i, idx in enumerate(masked))
        mrm = mrm / len(masked)

        encoded, masked = self._masked_sequences(view1, cfg.mrc_num_masked)
        mrc, correct = 0.0, 0.0
        labels = torch.arange(cfg.mrc_num_masked, device=view1.device)
        for i, idx in enumerate(masked):
            prediction = self.mrc_head(encoded[i, idx + 2])  # (k, R)
            logits = (view1[i, idx] @ prediction.T).float()  # [i, j] = original_i · prediction_j
            mrc = mrc + F.cross_entropy(logits, labels)
            correct = correct + (logits.argmax(dim=0) == labels).float().mean().detach()
        mrc = mrc / len(masked)

        loss = cfg.lra_loss_weight * lra + cfg.mrc_loss_weight * mrc + cfg.mrm_loss_weight * mrm
        parts = {"lra_loss": lra.detach(), "mrm_loss": mrm.detach(), "mrc_loss": mrc.detach(),
                 "mrc_accuracy": correct / len(masked)}
        return loss, parts


def reference_step(model: ReferencePreTraining, optimizer: torch.optim.Optimizer, scans, rng: np.random.Generator,
                   device: torch.device, autocast) -> torch.Tensor:
    """One full reference step from raw scans: per-scan nilearn pFC views (CPU, numpy) → device → forward →
    backward → AdamW → EMA loop. ``autocast`` is a context manager factory (fp32 or bf16). Returns the loss."""
    view1, view2 = reference_pfc_views(scans, rng, model.config.pfc_drop_ratio)
    view1, view2 = view1.to(device), view2.to(device)
    optimizer.zero_grad(set_to_none=True)
    with autocast():
        loss, _ = model(view1, view2)
    loss.backward()
    optimizer.step()
    model.update_target()
    return loss.detach()
