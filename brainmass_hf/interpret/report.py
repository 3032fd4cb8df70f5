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
from .attention import attention_maps, attention_received, attention_rollout
from .attribution import (
    edge_attributions,
    encoder_feature_function,
    integrated_gradients,
    permutation_importance,
    roi_importance,
    top_edges,
)
from .plots import mean_and_spread, plot_matrices, plot_roi_markers, plot_top_edges, plot_top_regions
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


def _rollout_per_scan(model: torch.nn.Module, fc: np.ndarray, residual: float, batch_size: int = 16) -> np.ndarray:
    """Attention rollout ``(N, R, R)`` computed batch by batch (all layers × heads of all scans may not fit)."""
    chunks = [fc[s:s + batch_size] for s in range(0, len(fc), batch_size)]
    return np.concatenate([attention_rollout(attention_maps(model, chunk), residual) for chunk in chunks])


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


def _importance(model, fc, codes, class_names, *, n_splits, n_permutations, ig_steps, seed) -> _Importance:
    """Integrated gradients for a fine-tuned classifier; permutation importance (frozen features + SVM) else."""
    if hasattr(model, "classifier"):
        edges = edge_attributions(integrated_gradients(model, fc, baseline="identity", steps=ig_steps))
        per_scan = roi_importance(edges)
        return _Importance(
            per_row=per_scan,
            edge_scores=np.abs(edges).mean(axis=0),
            class_values=per_scan,
            method=f"integrated gradients on the FC (identity-FC baseline, {ig_steps} steps), |attribution| summed "
            "over each ROI's edges",
            measure="per-scan integrated-gradients ROI attribution",
            edge_measure="mean |IG edge attribution| over scans",
            rows="scans",
            error="sem",
        )
    result = permutation_importance(
        fc, codes, encoder_feature_function(model), n_splits=n_splits, n_permutations=n_permutations, seed=seed
    )
    return _Importance(
        per_row=result.importance,
        edge_scores=_edge_group_effect(fc, codes),
        class_values=roi_fc_strength(fc),
        method="permutation importance for frozen BrainMass features + SVM: drop in held-out AUC when the ROI's FC "
        f"row/column is permuted across scans ({n_permutations} permutations × {n_splits} splits; held-out AUC "
        f"{result.baseline_auc.mean():.3f} ± {result.baseline_auc.std():.3f})",
        measure="ROI FC strength (mean |FC| to the other ROIs)",
        edge_measure=f"Hedges' g of the edge's FC, {class_names[1]} vs {class_names[0]}",
        rows="splits",
        error="sd",
    )


def _figures(out, table, importance, fc, rollout, codes, class_names, top_k, residual, group_label) -> dict[str, Path]:
    """The five figures of an explanation (the two brain plots only when the ROIs have coordinates)."""
    files: dict[str, Path] = {}
    per_row, rows = importance.per_row, importance.rows
    files["top_regions"] = out / "top_regions.png"
    plot_top_regions(
        per_row, table["name"].tolist(), files["top_regions"], title=f"The {top_k} most important regions",
        rows=rows, error=importance.error, k=top_k,
        value_label="Importance (" + ("|IG attribution|" if rows == "scans" else "drop in held-out AUC") + ")",
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


def explain(
    model: Any,
    data: Any,
    *,
    label_column: str = "label",
    out_dir: str | os.PathLike = "brainmass_explain",
    atlas_name: str | None = None,
    n_splits: int = 5,
    n_permutations: int = 3,
    n_group_permutations: int = 5000,
    ig_steps: int = 32,
    rollout_residual: float = 0.5,
    top_k: int = 10,
    alpha: float = 0.05,
    seed: int = 0,
    device: str | None = None,
) -> ExplainResult:
    """Explain a BrainMass model's two-class decision on a cohort; writes ``explain.md``, CSVs and figures.

    Importance: a fine-tuned classifier (``BrainMassForConnectomeClassification``) is explained per scan by
    integrated gradients on the FC (identity-FC baseline); an encoder by the permutation importance of each ROI
    for frozen features + SVM over ``n_splits`` repeated stratified splits. The class statistic per ROI is a
    label-permutation test (``n_group_permutations``) with Benjamini–Hochberg FDR on the per-scan integrated-
    gradients ROI attribution (classifier) or the ROI's FC strength, mean ``|FC|`` (encoder).

    Args:
        model: a model object, or a checkpoint folder / Hub id (see :func:`load_model_for_explain`).
        data: a ``datasets.Dataset``, ``"devfmri"``, a data folder, an ``.npz`` bundle or a saved dataset.
        label_column: the two-class column.
        out_dir: output folder.
        atlas_name: names + centroids table (``brainmass_hf.atlases``); default the checkpoint's
            ``config.atlas_name`` (and ``config.roi_names`` for the column order).
    Returns:
        :class:`ExplainResult`.
    """
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
    table = roi_table(config.num_rois, atlas_name or config.atlas_name, config.roi_names)
    names = table["name"].tolist()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    importance = _importance(
        model, fc, codes, class_names, n_splits=n_splits, n_permutations=n_permutations, ig_steps=ig_steps, seed=seed
    )
    stats = group_difference(
        importance.class_values, codes, roi_names=names, class_names=class_names,
        n_permutations=n_group_permutations, alpha=alpha, seed=seed,
    )
    mean, spread = mean_and_spread(importance.per_row, importance.error)
    full = pd.concat(
        [
            table[["index0", "label_value", "name", "group", "hemisphere", "x_mni", "y_mni", "z_mni"]],
            pd.DataFrame({"importance": mean, f"importance_{importance.error}": spread}),
            stats.drop(columns=["roi", "name"]),
        ],
        axis=1,
    )
    full = full.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)
    full.insert(0, "rank", np.arange(1, len(full) + 1))
    strongest = top_edges(importance.edge_scores, k=50)

    files: dict[str, Path] = {}
    files["roi_table"] = out / "roi_importance.csv"
    full.to_csv(files["roi_table"], index=False)
    files["edges"] = out / "edges.csv"
    pd.DataFrame(
        [(names[i], names[j], i, j, s) for i, j, s in strongest],
        columns=["roi_a", "roi_b", "index_a", "index_b", "score"],
    ).to_csv(files["edges"], index=False)
    files["importance_rows"] = out / f"importance_per_{importance.rows[:-1]}.csv"
    pd.DataFrame(importance.per_row, columns=names).to_csv(files["importance_rows"], index=False)
    rollout = _rollout_per_scan(model, fc, rollout_residual)
    files["attention_stats"] = out / "attention_received.csv"
    group_difference(
        attention_received(rollout), codes, roi_names=names, class_names=class_names,
        n_permutations=n_group_permutations, alpha=alpha, seed=seed,
    ).to_csv(files["attention_stats"], index=False)
    group_label = "network" if "schaefer" in str(atlas_name or config.atlas_name or "").lower() else "lobe"
    files.update(
        _figures(out, table, importance, fc, rollout, codes, class_names, top_k, rollout_residual, group_label)
    )

    result = ExplainResult(
        table=full, top=full.head(top_k), edges=strongest, class_names=list(class_names),
        class_counts=[int((codes == c).sum()) for c in (0, 1)], method=importance.method,
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
        for k in ("roi_table", "edges", "importance_rows", "attention_stats")
    ]
    lines.append(
        "Tables: " + ", ".join(f"[{t}]({t})" for t in tables) + " (the last: attention each region receives from the "
        "others in the encoder's rollout, per class, with the same test)."
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
