"""BrainMass model configuration."""

from __future__ import annotations

import json
import logging

from transformers import PreTrainedConfig

logger = logging.getLogger(__name__)

# The config fields that decide how a scan becomes the matrix the encoder sees (FC kind, pFC views, minimum length):
# the feature extractor and the model card copy exactly these.
FC_SETTING_NAMES = ("fc_kind", "fisher_z", "pfc_drop_ratio", "pfc_mask_way", "pfc_crop_length", "min_timepoints")
# Everything preprocessor_config.json repeats from config.json. The config owns them: the feature extractor is built
# from it (BrainMassFeatureExtractor.from_config), and a folder whose two files disagree does not load.
PREPROCESSOR_SETTING_NAMES = ("num_rois", *FC_SETTING_NAMES, "atlas_name", "roi_names")
# What the ROI tokens are: FC rows (the paper) or rows of FC in the tangent space at a fitted reference point.
INPUT_SPACES = ("correlation", "tangent")


# Paper presets (BrainMass, IEEE TMI 2024, Table I) for R = 100 ROIs: layers, heads, feed-forward size.
BRAINMASS_PRESETS: dict[str, dict] = {
    "small": dict(num_hidden_layers=8, num_attention_heads=5, intermediate_size=1024),
    "base": dict(num_hidden_layers=16, num_attention_heads=10, intermediate_size=2048),
    "large": dict(num_hidden_layers=32, num_attention_heads=20, intermediate_size=4096),
    # not in the paper: a two-layer model for tests and quick CPU runs
    "tiny": dict(
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        projection_hidden_size=256,
        projection_size=128,
        predictor_hidden_size=256,
    ),
}


_AUTO_MAP = {
    "AutoConfig": "configuration_brainmass.BrainMassConfig",
    "AutoModel": "modeling_brainmass.BrainMassModel",
    "AutoModelForPreTraining": "modeling_brainmass.BrainMassForPreTraining",
    "AutoModelForSequenceClassification": "modeling_brainmass.BrainMassForConnectomeClassification",
}


class BrainMassConfig(PreTrainedConfig):
    r"""Configuration of a BrainMass model: the ROI-token transformer encoder, its pretraining objectives and the
    connectivity preprocessing a checkpoint was trained with.

    Tokens are ROIs and a token's features are its row of the functional-connectivity (FC) matrix, so the model
    width is the number of ROIs ``R`` of the atlas.

    Args:
        num_rois (`int`, defaults to 100): ``R``, the atlas size; also the model width (``d_model``).
        num_hidden_layers (`int`, defaults to 8): post-norm transformer encoder layers ``L``.
        num_attention_heads (`int`, defaults to 5): heads ``H``; must divide ``num_rois``.
        intermediate_size (`int`, defaults to 1024): feed-forward size ``F``.
        hidden_act (`str`, defaults to ``"relu"``), hidden_dropout_prob / attention_probs_dropout_prob
            (defaults 0.1), layer_norm_eps (1e-5): ``torch.nn.TransformerEncoderLayer`` semantics.
        readout_dim (`int`, defaults to 8): per-ROI readout width; the pooled representation has
            ``num_rois * readout_dim`` features (800 for R = 100).
        readout_negative_slope (`float`, defaults to 0.01): LeakyReLU slope of the readout.
        masked_roi_head_negative_slope (`float`, defaults to 0.01): LeakyReLU slope inside both masked-ROI heads.
        classifier_negative_slope (`float`, defaults to 0.01): LeakyReLU slope of the fine-tuning head (applied to
            the readout and after every hidden classifier layer).
        num_prefix_tokens (`int`, defaults to 2): learned tokens prepended to the masked-ROI sequences in
            pretraining: 2 = cls + dist (the authors), 1 = cls only, 0 = none. The position table has
            ``num_rois + num_prefix_tokens`` rows.
        projection_hidden_size (`int`, *optional*): hidden size of the projection head ``g``; defaults to
            ``2 * num_rois * readout_dim`` (1600 for R = 100).
        projection_size (`int`, defaults to 1024): output of ``g`` and of the predictor ``q``.
        predictor_hidden_size (`int`, defaults to 2048): hidden size of the BYOL predictor ``q``.
        masked_roi_head_hidden_size (`int`, *optional*): hidden size of both masked-ROI heads; defaults to
            ``intermediate_size`` (as in the authors' code).
        mrm_num_masked (`int`, defaults to 5): ROIs masked for masked-ROI reconstruction (MSE).
        mrc_num_masked (`int`, defaults to 10): ROIs masked for masked-ROI classification (InfoNCE).
        mask_roi_columns (`bool`, defaults to `False`): in both masked-ROI objectives, also zero column ``i`` of
            every visible token for each masked ROI ``i``. FC is symmetric, so with `False` (the authors') the
            masked row stays readable from the visible tokens' columns; `True` hides it. Targets stay the
            original rows either way.
        fc_mixup_alpha (`float`, defaults to 0.0): FC mixup in latent alignment (off at 0; not in the paper). When
            above 0, each step also mixes every scan's view-1 tokens with those of another scan of the batch,
            ``λ · x_i + (1 − λ) · x_j`` with ``λ ~ Beta(α, α)`` per scan (mixup, Zhang et al., ICLR 2018), and the
            online prediction of the mixed input is aligned with both targets in proportion,
            ``λ · d(p_mix, z_i) + (1 − λ) · d(p_mix, z_j)`` (Un-Mix, Shen et al., AAAI 2022); ``lra_loss`` is then
            the mean of the usual symmetric loss and this mixed loss (scaled to the same two-direction size). The
            collator draws the partners and the weights (``mixup_permutation``, ``mixup_lambdas``).
        lra_loss_weight / mrc_loss_weight / mrm_loss_weight (defaults 1.0 / 0.1 / 2.0): total loss
            ``lra + 0.1 * infonce + 2 * mrm``, the authors' config.
        ema_momentum (`float`, defaults to 0.996): target network ``θ_t ← m θ_t + (1 − m) θ_online`` after every
            optimizer step, in ``[0, 1]``.
        train_masked_roi_modules (`bool`, defaults to `True`): train the masked-ROI heads, the mask embedding
            and the cls/dist tokens. The authors' optimizer never receives them, so they stay at their
            initialisation there (a bug); `False` reproduces that.
        fc_kind (`str`, defaults to ``"ledoit_wolf"``): ``"ledoit_wolf"`` (nilearn's
            ``ConnectivityMeasure(kind="correlation")`` default, the authors' choice) or ``"pearson"``.
        fisher_z (`bool`, defaults to `False`): Fisher z-transform FC (the authors do not).
        pfc_drop_ratio (`float`, defaults to 0.2): pFC drops ``int(ratio * T)`` random time points.
        pfc_mask_way (`str`, defaults to ``"drop"``): ``"drop"`` (non-contiguous, the paper), ``"crop"``
            (a contiguous window of ``pfc_crop_length`` points, the authors' ``random`` option) or ``"window"``
            (a random contiguous window keeping as many points as ``"drop"``: the two views of a scan then come
            from different, overlapping time spans; ``pfc_drop_ratio=0.5`` halves them).
        pfc_crop_length (`int`, defaults to 30).
        input_space (`str`, defaults to ``"correlation"``): what the ROI tokens are. ``"correlation"`` (the paper):
            the rows of the FC matrix ``C``. ``"tangent"``: the rows of ``log(W C W)``, FC in the tangent space at a
            reference point ``G`` with ``W = G^-1/2`` (Varoquaux et al., MICCAI 2010; Dadi et al., NeuroImage 2019:
            the strongest classical connectome pipeline). ``W`` is a buffer of the model (``embeddings.whitening``,
            saved with the weights), fitted once to the geometric mean of the pretraining scans' FC
            (:func:`brainmass_hf.training.fit_tangent_reference`, which ``pretrain`` calls), so every input (FC
            given, time series, pFC views, the feature extractor's output) is mapped the same way in pretraining and
            inference. Needs ``fc_kind="ledoit_wolf"`` and ``fisher_z=False`` (positive definite FC). Not a
            setting of the paper.
        tangent_reference_scans (`int`, defaults to 0): how many scans the tangent reference ``G`` was fitted on; 0
            means it is still the identity (``log C``, the log-Euclidean map). Set by ``fit_tangent_reference``.
        min_timepoints (`int`, defaults to 10): fewest time points a pFC view may keep (at least 2); shorter
            scans are rejected with an error that names them. With ``pfc_mask_way="crop"``, ``pfc_crop_length``
            must be at least this.
        atlas_name (`str`, *optional*), roi_names (`list[str]`, *optional*): the parcellation the checkpoint
            expects; inputs are checked against ``num_rois``.
        classifier_hidden_sizes (`list[int]`, defaults to ``[256, 32]``) and classifier_dropout (0.3): the
            authors' fine-tuning head.
        initializer_range (`float`, defaults to 0.02): unused by the encoder, which keeps PyTorch's own
            initialisation (as ``torch.nn.TransformerEncoderLayer``); kept for transformers utilities.

    Example:

    ```python
    >>> from brainmass_hf import BrainMassConfig, BrainMassModel
    >>> config = BrainMassConfig.from_preset("small", num_rois=100)
    >>> model = BrainMassModel(config)
    ```
    """

    model_type = "brainmass"

    num_rois: int = 100
    num_hidden_layers: int = 8
    num_attention_heads: int = 5
    intermediate_size: int = 1024
    hidden_act: str = "relu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    layer_norm_eps: float = 1e-5
    readout_dim: int = 8
    readout_negative_slope: float = 0.01
    masked_roi_head_negative_slope: float = 0.01
    classifier_negative_slope: float = 0.01
    num_prefix_tokens: int = 2
    projection_hidden_size: int | None = None
    projection_size: int = 1024
    predictor_hidden_size: int = 2048
    masked_roi_head_hidden_size: int | None = None
    mrm_num_masked: int = 5
    mrc_num_masked: int = 10
    mask_roi_columns: bool = False
    fc_mixup_alpha: float = 0.0
    lra_loss_weight: float = 1.0
    mrc_loss_weight: float = 0.1
    mrm_loss_weight: float = 2.0
    ema_momentum: float = 0.996
    train_masked_roi_modules: bool = True
    fc_kind: str = "ledoit_wolf"
    fisher_z: bool = False
    pfc_drop_ratio: float = 0.2
    pfc_mask_way: str = "drop"
    pfc_crop_length: int = 30
    min_timepoints: int = 10
    input_space: str = "correlation"
    tangent_reference_scans: int = 0
    atlas_name: str | None = None
    roi_names: list[str] | None = None
    classifier_hidden_sizes: list[int] | tuple[int, ...] = (256, 32)
    classifier_dropout: float = 0.3
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        if self.projection_hidden_size is None:
            self.projection_hidden_size = 2 * self.num_rois * self.readout_dim
        if self.masked_roi_head_hidden_size is None:
            self.masked_roi_head_hidden_size = self.intermediate_size
        self.classifier_hidden_sizes = [int(s) for s in self.classifier_hidden_sizes]
        super().__post_init__(**kwargs)
        # every Auto class, so a folder saved by any one model class loads as any other with trust_remote_code
        self.auto_map = {**_AUTO_MAP, **(getattr(self, "auto_map", None) or {})}
        self._check()

    def _check(self):
        """Range checks, one ``ValueError`` per problem naming the field, the value and what is allowed."""
        from transformers.activations import ACT2FN

        for name in ("num_rois", "num_hidden_layers", "num_attention_heads", "intermediate_size", "readout_dim",
                     "projection_hidden_size", "projection_size", "predictor_hidden_size",
                     "masked_roi_head_hidden_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}.")
        if self.num_rois < 2:
            raise ValueError(f"num_rois must be at least 2; got {self.num_rois}.")
        if self.num_rois % self.num_attention_heads != 0:
            divisors = [h for h in range(1, self.num_rois + 1) if self.num_rois % h == 0]
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} does not divide num_rois={self.num_rois} "
                f"(the model width is the ROI count). Choose one of {divisors}."
            )
        if self.hidden_act not in ACT2FN:
            raise ValueError(f"hidden_act={self.hidden_act!r} is not a transformers activation; use one of "
                             f"{sorted(ACT2FN)}.")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1); got {getattr(self, name)}.")
        if not 0.0 <= self.ema_momentum <= 1.0:
            raise ValueError(f"ema_momentum must be in [0, 1] (0.996 in the paper); got {self.ema_momentum}.")
        if self.num_prefix_tokens not in (0, 1, 2):
            raise ValueError(f"num_prefix_tokens must be 0, 1 (cls) or 2 (cls + dist); got {self.num_prefix_tokens}.")
        check_fc_settings(self)
        self._check_input_space()
        for name in ("mrm_num_masked", "mrc_num_masked"):
            k = getattr(self, name)
            if not 1 <= k <= self.num_rois:
                raise ValueError(f"{name}={k} must be between 1 and num_rois={self.num_rois}.")
        if isinstance(self.fc_mixup_alpha, bool) or not isinstance(self.fc_mixup_alpha, (int, float)) \
                or not 0.0 <= self.fc_mixup_alpha < float("inf"):
            raise ValueError(f"fc_mixup_alpha must be a finite number >= 0 (0 = no mixup); got {self.fc_mixup_alpha!r}.")
        if not isinstance(self.mask_roi_columns, bool):
            raise ValueError(f"mask_roi_columns must be True or False; got {self.mask_roi_columns!r}.")
        if self.roi_names is not None and len(self.roi_names) != self.num_rois:
            raise ValueError(f"roi_names has {len(self.roi_names)} names but num_rois={self.num_rois}.")

    def _check_input_space(self):
        if self.input_space not in INPUT_SPACES:
            raise ValueError(f"input_space must be one of {INPUT_SPACES}; got {self.input_space!r}.")
        if isinstance(self.tangent_reference_scans, bool) or not isinstance(self.tangent_reference_scans, int) \
                or self.tangent_reference_scans < 0:
            raise ValueError(f"tangent_reference_scans must be a non-negative integer; got "
                             f"{self.tangent_reference_scans!r}.")
        if self.input_space == "tangent" and (self.fc_kind != "ledoit_wolf" or self.fisher_z):
            raise ValueError(
                f"input_space='tangent' maps FC by its matrix logarithm, which needs positive definite FC: use "
                f"fc_kind='ledoit_wolf' and fisher_z=False (got fc_kind={self.fc_kind!r}, fisher_z={self.fisher_z})."
            )

    @property
    def hidden_size(self) -> int:
        """The model width, which is the number of ROIs."""
        return self.num_rois

    @property
    def pooled_size(self) -> int:
        """Size of the readout representation, ``num_rois * readout_dim``."""
        return self.num_rois * self.readout_dim

    @classmethod
    def from_preset(cls, name: str, num_rois: int = 100, **kwargs) -> "BrainMassConfig":
        """A paper preset (``"small"``, ``"base"``, ``"large"``; ``"tiny"`` for tests) for an atlas of
        ``num_rois`` regions. If the preset's head count does not divide ``num_rois``, the nearest divisor is
        used and logged (the paper's presets assume R = 100). ``kwargs`` override any field."""
        if name not in BRAINMASS_PRESETS:
            raise ValueError(f"Unknown preset {name!r}; choose one of {sorted(BRAINMASS_PRESETS)}.")
        values = {**BRAINMASS_PRESETS[name], **kwargs}
        heads = values["num_attention_heads"]
        if "num_attention_heads" not in kwargs and num_rois % heads != 0:
            divisors = [h for h in range(1, num_rois + 1) if num_rois % h == 0]
            chosen = min(divisors, key=lambda h: (abs(h - heads), h))
            logger.warning(
                "Preset %r has %d heads, which do not divide num_rois=%d; using %d heads.", name, heads, num_rois, chosen
            )
            values["num_attention_heads"] = chosen
        return cls(num_rois=num_rois, **values)


# --------------------------------------------------------------------------------------------------------------
# The settings the config owns, checked where they are copied
# --------------------------------------------------------------------------------------------------------------
def check_fc_settings(settings) -> None:
    """The one range check of the FC settings (:data:`FC_SETTING_NAMES`) of a config or a feature extractor: a
    ``ValueError`` naming the field, the value and what is allowed."""
    from .connectivity import FC_KINDS, PFC_MASK_WAYS, min_scan_length

    if settings.fc_kind not in FC_KINDS:
        raise ValueError(f"fc_kind must be one of {FC_KINDS}; got {settings.fc_kind!r}.")
    if settings.pfc_mask_way not in PFC_MASK_WAYS:
        raise ValueError(f"pfc_mask_way must be one of {PFC_MASK_WAYS}; got {settings.pfc_mask_way!r}.")
    if not 0.0 <= settings.pfc_drop_ratio < 1.0:
        raise ValueError(f"pfc_drop_ratio must be in [0, 1); got {settings.pfc_drop_ratio}.")
    if settings.min_timepoints < 2:
        raise ValueError(f"min_timepoints must be at least 2 (a correlation needs two points); got "
                         f"{settings.min_timepoints}.")
    min_scan_length(settings)  # raises when no scan could give a long enough pFC view (crop shorter than the minimum)


def check_preprocessor_agrees(config: dict, preprocessor: dict, source: str,
                              names: tuple[str, str] = ("preprocessor_config.json", "config.json")) -> None:
    """Raise a ``ValueError`` naming both values when ``preprocessor`` (a feature extractor's dict, e.g. its
    ``preprocessor_config.json``) holds a :data:`PREPROCESSOR_SETTING_NAMES` value other than ``config`` (the model
    config's dict) of ``source`` (a folder). ``names``: what the two are called in the message. A setting the
    preprocessor dict lacks is not a disagreement (the extractor takes the config's)."""
    clashes = [f"{name}: {names[0]} has {preprocessor[name]!r}, {names[1]} has {config.get(name)!r}"
               for name in PREPROCESSOR_SETTING_NAMES
               if name in preprocessor and _normalised(preprocessor[name]) != _normalised(config.get(name))]
    if clashes:
        raise ValueError(
            f"{source}: {names[0]} disagrees with {names[1]} ({'; '.join(clashes)}). The model config owns these "
            "settings: build the feature extractor from it (BrainMassFeatureExtractor.from_config(config); for a "
            "folder, .save_pretrained(folder) rewrites preprocessor_config.json) or fix the config."
        )


def read_json_beside(pretrained_model_name_or_path, filename: str, kwargs: dict) -> dict | None:
    """The JSON file ``filename`` of a folder or Hub repo (with the load's hub arguments from ``kwargs``), or None
    when it has none."""
    from transformers.utils import cached_file

    hub = {k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only", "subfolder") if k in kwargs}
    path = cached_file(str(pretrained_model_name_or_path), filename, _raise_exceptions_for_missing_entries=False,
                       _raise_exceptions_for_connection_errors=False, **hub)
    if path is None:
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _normalised(value):
    return list(value) if isinstance(value, tuple) else value


__all__ = ["BrainMassConfig", "BRAINMASS_PRESETS", "FC_SETTING_NAMES", "INPUT_SPACES", "PREPROCESSOR_SETTING_NAMES",
           "check_fc_settings", "check_preprocessor_agrees", "read_json_beside"]
