"""Interpretation of BrainMass models: attention maps and rollout, ROI and edge importance, group statistics with
FDR, brain plots, and ``explain`` (the ``brainmass explain`` command). See ``docs/interpretation.md``."""

from .attention import attention_maps, attention_received, attention_rollout, class_means
from .attribution import (
    PermutationImportance,
    ProbeAttribution,
    edge_attributions,
    edge_permutation_importance,
    encoder_feature_function,
    gradient_x_input,
    integrated_gradients,
    permutation_importance,
    probe_gradient_importance,
    probe_score_function,
    raw_fc_feature_function,
    roi_importance,
    top_edges,
)
from .nifti import roi_values_image
from .plots import group_order, plot_matrices, plot_roi_markers, plot_top_edges, plot_top_regions
from .report import ExplainResult, explain, interpretation_section, load_model_for_explain
from .stats import group_difference, hedges_g, roi_fc_strength

__all__ = [
    "ExplainResult",
    "PermutationImportance",
    "ProbeAttribution",
    "attention_maps",
    "attention_received",
    "attention_rollout",
    "class_means",
    "edge_attributions",
    "edge_permutation_importance",
    "encoder_feature_function",
    "explain",
    "gradient_x_input",
    "group_difference",
    "group_order",
    "hedges_g",
    "integrated_gradients",
    "interpretation_section",
    "load_model_for_explain",
    "permutation_importance",
    "plot_matrices",
    "plot_roi_markers",
    "plot_top_edges",
    "plot_top_regions",
    "probe_gradient_importance",
    "probe_score_function",
    "raw_fc_feature_function",
    "roi_fc_strength",
    "roi_importance",
    "roi_values_image",
    "top_edges",
]
