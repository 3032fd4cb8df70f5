"""``explain``: which regions and connections drive a classification, as a folder of tables, figures and
``explain.md``; ``interpretation_section`` puts the same into another report (the demo's)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..atlases import roi_table
from .attention import attention_received, compose_layers, encoder_passes_with_attention
from .attribution import (
    edge_attributions,
    encoder_feature_function,
    integrated_gradients,
    permutation_importance,
    probe_gradient_importance,
    roi_importance,
    top_edges,
)
from .plots import mean_and_spread, plot_matrices, plot_roi_markers, plot_top_edges, plot_top_regions
from .nifti import roi_values_image
from .stats import group_difference, hedges_g, roi_fc_strength

__all__ = ["ExplainResult", "explain", "interpretation_section", "load_model_for_explain"]


@dataclass
class ExplainResult:
    """What :func:`explain` computed and wrote.

    ``table``: every ROI (name, group, MNI centroid, importance mean/spread, class statistics), ranked by
    importance; ``top``: its first ``top_k`` rows; ``edges``: the strongest edges ``(i, j, score)``;
    ``method``/``measure``: what importance and the class statistic are; ``files``: name → path written.
    """

    table: pd.DataFrame
    top: pd.DataFrame
    edges: list[tuple[int, int, float]]
    class_names: list[str]
    class_counts: list[int]
    method: str
    measure: str
    edge_measure: str
    error: str
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)


def load_model_for_explain(model: Any) -> torch.nn.Module:
    """A model object as is; a path / Hub id → ``BrainMassForConnectomeClassification`` when the checkpoint is a
    fine-tuned classifier (``config.architectures``), else the ``BrainMassModel`` encoder. Eval mode."""
    from ..configuration_brainmass import BrainMassConfig
    from ..modeling_brainmass import BrainMassForConnectomeClassification, BrainMassModel

    if isinstance(model, torch.nn.Module):
        return model.eval()
    if not isinstance(model, (str, os.PathLike)):
        raise ValueError(f"model must be a BrainMass model or a checkpoint path / Hub id; got {type(model).__name__}.")
    config = BrainMassConfig.from_pretrained(str(model))
    if "BrainMassForConnectomeClassification" in (config.architectures or []):
        return BrainMassForConnectomeClassification.from_pretrained(str(model)).eval()
    return BrainMassModel.from_pretrained(str(model)).eval()


def _features_and_rollout(model: torch.nn.Module, fc: np.ndarray, residual: float, batch_size: int = 16
                          ) -> tuple[np.ndarray, np.ndarray]:
    """One encoder pass over every scan: the frozen features ``pooler_output`` ``(N, F)`` and the attention rollout
    ``(N, R, R)``, batch by batch (all layers × heads of all scans may not fit)."""
    features, rollout = [], []
    for outputs in encoder_passes_with_attention(model, fc, batch_size):
        features.append(outputs.pooler_output.float().cpu().numpy())
        # the head mean in torch first: a quarter of the maps (small) to convert and compose in float64
        layers = torch.stack(outputs.attentions, dim=1).float().mean(dim=2)
        rollout.append(compose_layers(layers.cpu().numpy(), residual))
    return np.concatenate(features), np.concatenate(rollout)


def _edge_group_effect(fc: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Hedges' g of every FC edge between the two classes, ``(N, R, R)`` → symmetric ``(R, R)``, zero diagonal."""
    r = fc.shape[-1]
    flat = fc.reshape(len(fc), r * r)
    classes = np.unique(labels)
    g = hedges_g(flat[labels == classes[0]], flat[labels == classes[1]]).reshape(r, r)
    np.fill_diagonal(g, 0.0)
    return g


@dataclass
class _Importance:
    """Model importance: ``per_row`` ``(rows, R)`` (rows = scans or splits), ``edge_scores`` ``(R, R)``, the per-scan
    values the class test runs on ``(N, R)``, and the words that describe them in the report."""

    per_row: np.ndarray
    edge_scores: np.ndarray
    class_values: np.ndarray
    method: str
    measure: str
    edge_measure: str
    rows: str
    error: str
    value_label: str


ENCODER_METHODS = ("gradient", "permutation")
_FC_STRENGTH = "ROI FC strength (mean |FC| to the other ROIs)"


def _classifier_importance(model, fc, ig_steps) -> _Importance:
    """Integrated gradients of a fine-tuned classifier, per scan."""
    edges = edge_attributions(integrated_gradients(model, fc, baseline="identity", steps=ig_steps))
    per_scan = roi_importance(edges)
    return _Importance(
        per_row=per_scan, edge_scores=np.abs(edges).mean(axis=0), class_values=per_scan,
        method=f"integrated gradients on the FC (identity-FC baseline, {ig_steps} steps), |attribution| summed "
        "over each ROI's edges",
        measure="per-scan integrated-gradients ROI attribution", edge_measure="mean |IG edge attribution| over scans",
        rows="scans", error="sem", value_label="|IG attribution|",
    )


def _auc_words(auc: np.ndarray) -> str:
    return f"held-out AUC {auc.mean():.3f} ± {auc.std():.3f}"


def _encoder_importance(model, fc, codes, class_names, features, *, method, n_splits, n_permutations, seed,
                        show_progress) -> _Importance:
    """Frozen features ``(N, F)`` + SVM: gradient × input of the SVM's score (default) or permutation importance."""
    if method == "permutation":
        result = permutation_importance(
            fc, codes, encoder_feature_function(model), n_splits=n_splits, n_permutations=n_permutations, seed=seed
        )
        return _Importance(
            per_row=result.importance, edge_scores=_edge_group_effect(fc, codes), class_values=roi_fc_strength(fc),
            method="permutation importance for frozen BrainMass features + SVM: drop in held-out AUC when the ROI's "
            f"FC row/column is permuted across scans ({n_permutations} permutations × {n_splits} splits; "
            f"{_auc_words(result.baseline_auc)})",
            measure=_FC_STRENGTH, edge_measure=f"Hedges' g of the edge's FC, {class_names[1]} vs {class_names[0]}",
            rows="splits", error="sd", value_label="drop in held-out AUC",
        )
    result = probe_gradient_importance(model, fc, codes, n_splits=n_splits, seed=seed, features=features,
                                       show_progress=show_progress)
    return _Importance(
        per_row=result.importance, edge_scores=result.edges, class_values=roi_fc_strength(fc),
        method="gradient × input for frozen BrainMass features + SVM: on each split the SVM is fitted on the "
        "training scans' features and its decision score is differentiated through the encoder with respect to "
        "each held-out scan's FC; |attribution| summed over each ROI's edges, averaged over the held-out scans "
        f"({n_splits} splits; {_auc_words(result.baseline_auc)})",
        measure=_FC_STRENGTH, edge_measure="mean |gradient × input edge attribution| over held-out scans",
        rows="splits", error="sd", value_label="|gradient × input| of the SVM score",
    )


def _figures(out, table, importance, fc, rollout, codes, class_names, top_k, residual, group_label) -> dict[str, Path]:
    """The five figures of an explanation (the two brain plots only when the ROIs have coordinates)."""
    files: dict[str, Path] = {}
    per_row, rows = importance.per_row, importance.rows
    files["top_regions"] = out / "top_regions.png"
    plot_top_regions(
        per_row, table["name"].tolist(), files["top_regions"], title=f"The {top_k} most important regions",
        rows=rows, error=importance.error, k=top_k,
        value_label=f"Importance ({importance.value_label})",
    )
    if np.isfinite(table[["x_mni", "y_mni", "z_mni"]].to_numpy(dtype=float)).all():
        files["glass_brain"] = out / "roi_importance_glass_brain.png"
        plot_roi_markers(
            per_row.mean(axis=0), table, files["glass_brain"], title="Region importance at each region's centroid",
            value_label=f"Importance (mean over {rows}; below 0 drawn as 0)",
        )
        files["edges_brain"] = out / "top_edges_glass_brain.png"
        plot_top_edges(
            importance.edge_scores, table, files["edges_brain"], title="The 20 strongest connections",
            value_label=importance.edge_measure, k=20, node_values=per_row.mean(axis=0),
        )
    counts = [int((codes == c).sum()) for c in (0, 1)]
    means = [fc[codes == c].mean(axis=0) for c in (0, 1)]
    files["fc"] = out / "fc_by_class.png"
    plot_matrices(
        [
            (f"Mean FC, {class_names[0]} (n={counts[0]})", means[0], "Correlation (r)"),
            (f"Mean FC, {class_names[1]} (n={counts[1]})", means[1], "Correlation (r)"),
            (f"{class_names[1]} − {class_names[0]}", means[1] - means[0], "Difference in r"),
        ],
        table, files["fc"], title="Functional connectivity by class", group_label=group_label,
        symmetric=[True, True, True],
    )
    attention = [rollout[codes == c].mean(axis=0) for c in (0, 1)]
    for a in attention:
        # the residual term puts most of the flow on the diagonal (a token keeps itself); blank it so the colour
        # scale shows the flow between ROIs
        np.fill_diagonal(a, np.nan)
    flow = "Attention flow from column ROI to row ROI"
    files["attention"] = out / "attention_rollout_by_class.png"
    plot_matrices(
        [
            (f"Attention rollout, {class_names[0]}", attention[0], flow),
            (f"Attention rollout, {class_names[1]}", attention[1], flow),
            (f"{class_names[1]} − {class_names[0]}", attention[1] - attention[0], "Difference in attention flow"),
        ],
        table, files["attention"], group_label=group_label, symmetric=[False, False, True],
        title=f"Encoder attention rollout by class (residual weight {residual}; diagonal, a ROI's flow to itself, "
        "left blank)",
    )
    return files


@dataclass
class _Cohort:
    """What :func:`explain` reads: the model, FC ``(N, R, R)``, class codes ``(N,)`` (0/1), the two class names and
    the atlas table of the model's columns."""

    model: torch.nn.Module
    fc: np.ndarray
    codes: np.ndarray
    class_names: list[str]
    table: pd.DataFrame
    group_label: str


def _load_cohort(model, data, label_column, atlas_name, device) -> _Cohort:
    """The model (loaded, on ``device``), the cohort's full-scan FC with the checkpoint's FC settings, its two
    classes and the ROI table; a clear error when the label column does not hold two classes."""
    from ..data import resolve_dataset, time_series_list
    from ..evaluation import labels_from_dataset
    from ..processing_brainmass import BrainMassFeatureExtractor

    model = load_model_for_explain(model)
    if device is not None:
        model.to(device)
    config = model.config  # every BrainMass model (encoder, classifier) carries the encoder config
    dataset = resolve_dataset(data)
    codes, class_names = labels_from_dataset(dataset, label_column)
    if len(class_names) != 2:
        raise ValueError(
            f"explain compares two classes; column {label_column!r} has {len(class_names)} ({class_names}). "
            "Filter the dataset to two classes first."
        )
    ids = dataset["subject_id"] if "subject_id" in dataset.column_names else None
    scans = time_series_list(dataset)
    fc = BrainMassFeatureExtractor.from_config(config)(scans, view="full", subject_ids=ids)["connectivity"].numpy()
    atlas = atlas_name or config.atlas_name
    return _Cohort(
        model=model, fc=fc, codes=np.asarray(codes), class_names=list(class_names),
        table=roi_table(config.num_rois, atlas, config.roi_names),
        group_label="network" if "schaefer" in str(atlas or "").lower() else "lobe",
    )


def _ranked_table(cohort: _Cohort, importance: _Importance, stats: pd.DataFrame) -> pd.DataFrame:
    """Every ROI with its atlas columns, importance mean ± spread and class statistics, ranked by importance."""
    mean, spread = mean_and_spread(importance.per_row, importance.error)
    full = pd.concat(
        [
            cohort.table[["index0", "label_value", "name", "group", "hemisphere", "x_mni", "y_mni", "z_mni"]],
            pd.DataFrame({"importance": mean, f"importance_{importance.error}": spread}),
            stats.drop(columns=["roi", "name"]),
        ],
        axis=1,
    )
    full = full.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)
    full.insert(0, "rank", np.arange(1, len(full) + 1))
    return full


def _write_tables(out: Path, cohort: _Cohort, full, strongest, importance, attention_stats, atlas_image
                  ) -> dict[str, Path]:
    """``roi_importance.csv``, ``edges.csv``, ``importance_per_<row>.csv``, ``attention_received.csv``, and with an
    ``atlas_image`` the mean importance as ``roi_importance.nii.gz`` in its space."""
    names = cohort.table["name"].tolist()
    files = {"roi_table": out / "roi_importance.csv", "edges": out / "edges.csv",
             "importance_rows": out / f"importance_per_{importance.rows[:-1]}.csv",
             "attention_stats": out / "attention_received.csv"}
    full.to_csv(files["roi_table"], index=False)
    pd.DataFrame(
        [(names[i], names[j], i, j, s) for i, j, s in strongest],
        columns=["roi_a", "roi_b", "index_a", "index_b", "score"],
    ).to_csv(files["edges"], index=False)
    pd.DataFrame(importance.per_row, columns=names).to_csv(files["importance_rows"], index=False)
    attention_stats.to_csv(files["attention_stats"], index=False)
    if atlas_image is not None:
        files["nifti"] = out / "roi_importance.nii.gz"
        image = roi_values_image(importance.per_row.mean(axis=0), atlas_image, cohort.table["label_value"])
        image.to_filename(str(files["nifti"]))
    return files


def explain(
    model: Any,
    data: Any,
    *,
    label_column: str = "label",
    out_dir: str | os.PathLike = "brainmass_explain",
    atlas_name: str | None = None,
    atlas_image: Any = None,
    encoder_method: str = "gradient",
    n_splits: int = 5,
    n_permutations: int = 3,
    n_group_permutations: int = 5000,
    ig_steps: int = 32,
    rollout_residual: float = 0.5,
    top_k: int = 10,
    alpha: float = 0.05,
    seed: int = 0,
    device: str | None = None,
    show_progress: bool = True,
) -> ExplainResult:
    """Explain a BrainMass model's two-class decision on a cohort; writes ``explain.md``, CSVs and figures.

    Importance: a fine-tuned classifier (``BrainMassForConnectomeClassification``) is explained per scan by
    integrated gradients on the FC (identity-FC baseline); an encoder through frozen features + SVM over ``n_splits``
    repeated stratified splits, by gradient × input of the SVM's score on each split's held-out scans
    (``encoder_method="gradient"``, one backward pass per held-out scan) or by permutation importance
    (``"permutation"``, ``n_permutations`` per ROI and split: ``R`` times the encoder passes). The class statistic
    per ROI is a label-permutation test (``n_group_permutations``) with Benjamini–Hochberg FDR on the per-scan
    integrated-gradients ROI attribution (classifier) or the ROI's FC strength, mean ``|FC|`` (encoder).

    Args:
        model: a model object, or a checkpoint folder / Hub id (see :func:`load_model_for_explain`).
        data: a ``datasets.Dataset``, ``"devfmri"``, a data folder, an ``.npz`` bundle or a saved dataset.
        label_column: the two-class column.
        out_dir: output folder.
        atlas_name: names + centroids table (``brainmass_hf.atlases``); default the checkpoint's
            ``config.atlas_name`` (and ``config.roi_names`` for the column order).
        atlas_image: the atlas's 3D label image (path or nibabel image): the mean importance is also written as
            ``roi_importance.nii.gz`` in its space (:func:`roi_values_image`). show_progress: a progress bar.
    Returns:
        :class:`ExplainResult`.
    """
    from tqdm.auto import tqdm

    if encoder_method not in ENCODER_METHODS:
        raise ValueError(f"encoder_method must be one of {ENCODER_METHODS}; got {encoder_method!r}.")
    stages = tqdm(total=6, desc="explain", disable=not show_progress)
    stages.set_postfix_str("model, cohort and FC of every scan")
    cohort = _load_cohort(model, data, label_column, atlas_name, device)
    model, fc, codes, class_names, names = (cohort.model, cohort.fc, cohort.codes, cohort.class_names,
                                            cohort.table["name"].tolist())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stages.update()
    stages.set_postfix_str("features and attention rollout")
    features, rollout = _features_and_rollout(model, fc, rollout_residual)
    stages.update()
    stages.set_postfix_str("importance")
    importance = _classifier_importance(model, fc, ig_steps) if hasattr(model, "classifier") else _encoder_importance(
        model, fc, codes, class_names, features, method=encoder_method, n_splits=n_splits,
        n_permutations=n_permutations, seed=seed, show_progress=show_progress)
    stages.update()
    stages.set_postfix_str("class statistics")
    test = {"class_names": class_names, "n_permutations": n_group_permutations, "alpha": alpha, "seed": seed}
    full = _ranked_table(cohort, importance, group_difference(importance.class_values, codes, roi_names=names, **test))
    strongest = top_edges(importance.edge_scores, k=50)
    files = _write_tables(out, cohort, full, strongest, importance,
                          group_difference(attention_received(rollout), codes, roi_names=names, **test), atlas_image)
    stages.update()
    stages.set_postfix_str("figures")
    files.update(_figures(out, cohort.table, importance, fc, rollout, codes, class_names, top_k, rollout_residual,
                          cohort.group_label))
    stages.update()
    result = _written_result(out, cohort, importance, full, strongest, files, top_k, alpha)
    stages.update()
    stages.close()
    return result


def _written_result(out, cohort, importance, full, strongest, files, top_k, alpha) -> ExplainResult:
    """The :class:`ExplainResult`, after writing its ``explain.md``."""
    result = ExplainResult(
        table=full, top=full.head(top_k), edges=strongest, class_names=cohort.class_names,
        class_counts=[int((cohort.codes == c).sum()) for c in (0, 1)], method=importance.method,
        measure=importance.measure, edge_measure=importance.edge_measure,
        # the count shows when the spread means nothing (one split gives ± 0)
        error=f"{ {'sem': 's.e.m.', 'sd': 'SD'}[importance.error]} over {len(importance.per_row)} "
        + (importance.rows if len(importance.per_row) > 1 else importance.rows[:-1]),
        out_dir=out, files=files,
    )
    files["markdown"] = out / "explain.md"
    files["markdown"].write_text("# Which regions drive the classification\n\n" + _body(result, out, alpha, 2) + "\n")
    return result


def _fmt(value: float, digits: int = 3) -> str:
    """``digits`` significant digits; 0 → a whole number (coordinates); NaN → ``n/a``."""
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:.0f}" if digits == 0 else f"{value:.{digits}g}"


def _body(result: ExplainResult, relative_to: Path, alpha: float, level: int) -> str:
    """The markdown of an explanation: methods, the top-k table, the figures (paths relative to ``relative_to``)."""
    h = "#" * level
    c0, c1 = result.class_names
    err_col = [c for c in result.table.columns if c.startswith("importance_")][0]
    lines = [
        f"Classes: **{c0}** (n={result.class_counts[0]}) vs **{c1}** (n={result.class_counts[1]}).",
        f"Importance: {result.method}.",
        f"Class statistic per region: {result.measure}, {c1} − {c0}; two-sided label-permutation p-value, "
        f"Benjamini–Hochberg q over all {len(result.table)} regions (q < {alpha} is marked *). Effect: Hedges' g.",
        "",
        f"{h} Top {len(result.top)} regions",
        "",
        f"| rank | region | lobe/network | MNI x, y, z (mm) | importance (± {result.error}) | Hedges' g | p | q |",
        "|---:|---|---|---|---|---:|---:|---:|",
    ]
    for _, row in result.top.iterrows():
        xyz = ", ".join(_fmt(float(v), 0) for v in row[["x_mni", "y_mni", "z_mni"]])
        star = " *" if row["significant"] else ""
        lines.append(
            f"| {row['rank']} | {row['name']} | {row['group']} | {xyz} | {_fmt(row['importance'])} ± "
            f"{_fmt(row[err_col], 2)} | {row['hedges_g']:+.2f} | {_fmt(row['p_value'], 2)} | "
            f"{_fmt(row['q_value'], 2)}{star} |"
        )
    lines += ["", f"{h} Figures", ""]
    captions = {
        "top_regions": "Top regions",
        "glass_brain": "Region importance on a glass brain",
        "edges_brain": f"Strongest connections ({result.edge_measure})",
        "fc": "Functional connectivity by class",
        "attention": "Encoder attention rollout by class",
    }
    for key, caption in captions.items():
        if key in result.files:
            lines.append(f"![{caption}]({os.path.relpath(result.files[key], relative_to)})")
            lines.append("")
    tables = [
        os.path.relpath(result.files[k], relative_to)
        for k in ("roi_table", "edges", "importance_rows", "attention_stats", "nifti") if k in result.files
    ]
    lines.append(
        "Tables: " + ", ".join(f"[{t}]({t})" for t in tables) + " (`attention_received.csv`: attention each region "
        "receives from the others in the encoder's rollout, per class, with the same test; `roi_importance.nii.gz`, "
        "when written: the importance in the atlas image's space)."
    )
    lines.append("")
    lines.append(
        "Importance says what this model uses, not what causes the condition; with few scans per class the "
        "ranks below the first few are unstable (see the error bars)."
    )
    return "\n".join(lines)


def interpretation_section(
    model: Any,
    data: Any,
    report_dir: str | os.PathLike,
    *,
    label_column: str = "label",
    subdir: str = "interpretation",
    level: int = 2,
    **kwargs,
) -> str:
    """Runs :func:`explain` into ``report_dir/subdir`` and returns a markdown section (heading level ``level``)
    whose links are relative to ``report_dir``, for another report (the demo's ``report.md``) to append."""
    report_dir = Path(report_dir)
    result = explain(model, data, label_column=label_column, out_dir=report_dir / subdir, **kwargs)
    alpha = kwargs.get("alpha", 0.05)
    return f"{'#' * level} Interpretation: which regions drive the classification\n\n" + _body(
        result, report_dir, alpha, level + 1
    )
