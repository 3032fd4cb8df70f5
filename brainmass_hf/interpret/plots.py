"""Figures for a reader: every one has a title, labelled axes and labelled colour bars (matplotlib Agg backend).

Glass-brain views use nilearn's ``plot_markers`` / ``plot_connectome`` drawn into our own figure with our own
colour bar, so the colour bar can carry a label. Each function saves a PNG and returns the (closed) Figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # noqa: E402  (no display on servers and CI)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402

from .attribution import top_edges  # noqa: E402

__all__ = ["group_order", "mean_and_spread", "plot_matrices", "plot_roi_markers", "plot_top_edges", "plot_top_regions"]

_DPI = 150


def _save(fig: plt.Figure, path: str | Path) -> plt.Figure:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    plt.close(fig)
    return fig


def _coordinates(table: pd.DataFrame) -> np.ndarray:
    coords = table[["x_mni", "y_mni", "z_mni"]].to_numpy(dtype=float)
    if not np.isfinite(coords).all():
        raise ValueError(
            "These ROIs have no MNI coordinates, so they cannot be drawn on a brain. Set the checkpoint's "
            "config.atlas_name to a shipped atlas (brainmass_hf.atlases.ATLASES) or pass a table with "
            "x_mni/y_mni/z_mni."
        )
    return coords


def _colorbar(fig: plt.Figure, cmap: str, vmin: float, vmax: float, label: str, rect=(0.91, 0.2, 0.015, 0.6)):
    cax = fig.add_axes(list(rect))
    bar = fig.colorbar(ScalarMappable(Normalize(vmin, vmax), cmap), cax=cax)
    bar.set_label(label)
    return bar


def plot_roi_markers(
    values: np.ndarray, table: pd.DataFrame, path: str | Path, *, title: str, value_label: str, top_k: int = 5
) -> plt.Figure:
    """ROI values ``(R,)`` as markers at the ROI centroids on a glass brain (size and colour = value), with the
    ``top_k`` ROIs named under the brain."""
    from nilearn import plotting

    values = np.asarray(values, dtype=float)
    coords = _coordinates(table)
    # a negative importance (permuting the ROI helped by chance) is noise around 0: drawn as 0, smallest marker
    shown = np.clip(values, 0.0, None)
    vmax = float(shown.max()) or 1.0
    vmin = 0.0
    sizes = 10 + 140 * shown / vmax
    fig = plt.figure(figsize=(10, 4))
    plotting.plot_markers(
        shown, coords, node_size=sizes, node_cmap="viridis", node_vmin=vmin, node_vmax=vmax,
        display_mode="ortho", figure=fig, axes=[0.0, 0.12, 0.88, 0.78], colorbar=False,
    )
    _colorbar(fig, "viridis", vmin, vmax, value_label)
    order = np.argsort(-values, kind="stable")[:top_k]
    names = ", ".join(f"{i + 1}. {table['name'].iloc[o]}" for i, o in enumerate(order))
    fig.text(0.02, 0.04, f"Highest: {names}", fontsize=9)
    fig.suptitle(title)
    return _save(fig, path)


def plot_top_edges(
    edge_scores: np.ndarray,
    table: pd.DataFrame,
    path: str | Path,
    *,
    title: str,
    value_label: str,
    k: int = 20,
    node_values: np.ndarray | None = None,
) -> plt.Figure:
    """The ``k`` strongest edges of a symmetric ``(R, R)`` score matrix on a glass brain, with the top 5 named."""
    from nilearn import plotting

    scores = np.asarray(edge_scores, dtype=float)
    coords = _coordinates(table)
    strongest = top_edges(scores, k)
    kept = np.zeros_like(scores)
    for i, j, s in strongest:
        kept[i, j] = kept[j, i] = s
    vmax = max(abs(s) for _, _, s in strongest) or 1.0
    signed = any(s < 0 for _, _, s in strongest)
    cmap = "RdBu_r" if signed else "Reds"
    vmin = -vmax if signed else 0.0
    node_sizes = 10.0 if node_values is None else 10 + 90 * np.abs(node_values) / (np.abs(node_values).max() or 1)
    fig = plt.figure(figsize=(10, 4))
    plotting.plot_connectome(
        kept, coords, node_color="0.35", node_size=node_sizes, edge_cmap=cmap, edge_vmin=vmin, edge_vmax=vmax,
        display_mode="ortho", figure=fig, axes=[0.0, 0.12, 0.88, 0.78], colorbar=False,
    )
    _colorbar(fig, cmap, vmin, vmax, value_label)
    names = table["name"].tolist()
    listing = "; ".join(f"{n + 1}. {names[i]}–{names[j]}" for n, (i, j, _) in enumerate(strongest[:5]))
    fig.text(0.02, 0.04, f"Strongest: {listing}", fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def group_order(table: pd.DataFrame) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
    """ROI order grouped by ``table.group`` (groups in order of first appearance, ROIs stable within a group) and
    the ``(group, start, stop)`` blocks of that order."""
    groups = table["group"].astype(str).to_numpy()
    first = {g: i for i, g in reversed(list(enumerate(groups)))}
    order = np.array(sorted(range(len(groups)), key=lambda i: (first[groups[i]], i)))
    blocks, start = [], 0
    for stop in range(1, len(order) + 1):
        if stop == len(order) or groups[order[stop]] != groups[order[start]]:
            blocks.append((groups[order[start]], start, stop))
            start = stop
    return order, blocks


def plot_matrices(
    panels: Sequence[tuple[str, np.ndarray, str]],
    table: pd.DataFrame,
    path: str | Path,
    *,
    title: str,
    group_label: str = "lobe",
    symmetric: Sequence[bool] | None = None,
) -> plt.Figure:
    """Side-by-side ``(R, R)`` matrices ordered by ROI group, each with a labelled colour bar.

    Args:
        panels: ``(panel title, matrix (R, R), colour-bar label)`` per panel.
        table: the ROI table (``name``, ``group``) in the matrices' order.
        group_label: what the groups are (``"lobe"``, ``"network"``), for the axis labels.
        symmetric: per panel, centre the colour scale on 0 (diverging map); default: when the matrix has both signs.
            NaN entries (e.g. a masked diagonal) are left blank.
    """
    order, blocks = group_order(table)
    names = table["name"].to_numpy()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.8), squeeze=False)
    for n, (ax, (panel_title, matrix, label)) in enumerate(zip(axes[0], panels)):
        m = np.asarray(matrix, dtype=float)[np.ix_(order, order)]
        centred = (np.nanmin(m) < 0 < np.nanmax(m)) if symmetric is None else symmetric[n]
        if centred:
            v = float(np.nanmax(np.abs(m))) or 1.0
            image = ax.imshow(m, cmap="RdBu_r", vmin=-v, vmax=v, interpolation="nearest")
        else:
            image = ax.imshow(m, cmap="viridis", interpolation="nearest")
        bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        bar.set_label(label)
        if len(order) <= 40:
            ax.set_xticks(range(len(order)), names[order], rotation=90, fontsize=6)
            ax.set_yticks(range(len(order)), names[order], fontsize=6)
        else:
            centres = [(a + b - 1) / 2 for _, a, b in blocks]
            ax.set_xticks(centres, [g for g, _, _ in blocks], rotation=60, ha="right", fontsize=7)
            ax.set_yticks(centres, [g for g, _, _ in blocks], fontsize=7)
        for _, a, _ in blocks[1:]:
            ax.axhline(a - 0.5, color="k", lw=0.4)
            ax.axvline(a - 0.5, color="k", lw=0.4)
        ax.set_xlabel(f"ROI (grouped by {group_label})")
        ax.set_ylabel(f"ROI (grouped by {group_label})")
        ax.set_title(panel_title, fontsize=10)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def mean_and_spread(values: np.ndarray, error: str = "sd") -> tuple[np.ndarray, np.ndarray]:
    """Mean over rows of ``(S, R)`` values and its spread: ``"sd"`` (one SD over rows, the spread across splits)
    or ``"sem"`` (SD / sqrt(S), the uncertainty of a mean over scans); 0 for a single row."""
    if error not in ("sd", "sem"):
        raise ValueError(f"error must be 'sd' or 'sem'; got {error!r}.")
    values = np.atleast_2d(np.asarray(values, dtype=float))
    count = values.shape[0]
    spread = values.std(axis=0, ddof=1) if count > 1 else np.zeros(values.shape[1])
    return values.mean(axis=0), spread / np.sqrt(count) if error == "sem" else spread


def plot_top_regions(
    values: np.ndarray,
    names: Sequence[str],
    path: str | Path,
    *,
    title: str,
    value_label: str,
    rows: str = "splits",
    error: str = "sd",
    k: int = 10,
) -> plt.Figure:
    """Horizontal bars of the ``k`` largest mean ROI values with error bars.

    Args:
        values: ``(S, R)``, one row per split (or per scan); bars are the mean over rows.
        names: ``R`` ROI names.
        rows: what a row is (``"splits"``, ``"scans"``), for the caption.
        error: ``"sd"`` (one SD over rows: the spread across splits) or ``"sem"`` (SD / sqrt(S): the uncertainty
            of the mean over scans).
    """
    values = np.atleast_2d(np.asarray(values, dtype=float))
    count = values.shape[0]
    mean, spread = mean_and_spread(values, error)
    caption = f"error bars: ± 1 {'SD' if error == 'sd' else 's.e.m.'} over {count} {rows}"
    order = np.argsort(-mean, kind="stable")[:k]
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(order) + 1.6))
    positions = np.arange(len(order))[::-1]
    ax.barh(positions, mean[order], xerr=spread[order], color="tab:blue", ecolor="k", capsize=3)
    ax.set_yticks(positions, [names[o] for o in order])
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xlabel(value_label)
    ax.set_ylabel("Region")
    ax.set_title(f"{title}\n({caption})", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
