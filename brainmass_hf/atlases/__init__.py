"""Atlas tables shipped with the package: ROI names, label values, MNI centroids and a grouping per ROI.

``aal116.csv`` (AAL, Tzourio-Mazoyer et al. 2002, label values 2001…9170, grouped by lobe) and
``schaefer100_7networks.csv`` (Schaefer et al. 2018, 100 parcels, grouped by Yeo-7 network). README.md beside
this file says where every coordinate comes from. A checkpoint names its atlas in ``config.atlas_name`` (copied
into its ``BrainMassFeatureExtractor``), so ``atlas_table(feature_extractor.atlas_name)`` puts names and
coordinates next to the model's ROI columns.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import pandas as pd

__all__ = ["ATLASES", "atlas_table", "roi_table"]

_HERE = Path(__file__).resolve().parent

# canonical name → file; aliases are matched after lower-casing and dropping everything but letters and digits
ATLASES = {"aal116": "aal116.csv", "schaefer100_7networks": "schaefer100_7networks.csv"}
_ALIASES = {
    "aal116": "aal116", "aal": "aal116", "aalspm12": "aal116", "aal1": "aal116",
    "schaefer100": "schaefer100_7networks", "schaefer1007networks": "schaefer100_7networks",
    "schaefer2018100parcels7networks": "schaefer100_7networks", "schaefer2018100": "schaefer100_7networks",
}
COLUMNS = ("index0", "label_value", "name", "group", "hemisphere", "x_mni", "y_mni", "z_mni", "source")


def _canonical(atlas_name: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", str(atlas_name).lower())
    if key not in _ALIASES:
        raise ValueError(
            f"No shipped atlas table for atlas_name={atlas_name!r}; shipped: {sorted(ATLASES)}. Pass roi_names and "
            "coordinates yourself (a table with columns name, x_mni, y_mni, z_mni) for other atlases."
        )
    return _ALIASES[key]


@lru_cache(maxsize=None)
def _read(canonical: str) -> pd.DataFrame:
    table = pd.read_csv(_HERE / ATLASES[canonical])
    # one name for the ordering column: lobes for AAL, Yeo networks for Schaefer
    return table.rename(columns={"lobe": "group", "network": "group"})[list(COLUMNS)]


def atlas_table(atlas_name: str) -> pd.DataFrame:
    """The shipped table of an atlas, one row per ROI in the atlas's column order.

    Columns: ``index0`` (column of the time series), ``label_value`` (value in the label image), ``name``,
    ``group`` (lobe or network, for ordering plots), ``hemisphere`` (``L``/``R``/``midline``), ``x_mni``,
    ``y_mni``, ``z_mni`` (centroid, mm), ``source`` (where the coordinate came from; see README.md).
    """
    return _read(_canonical(atlas_name)).copy()


def roi_table(
    num_rois: int,
    atlas_name: str | None = None,
    roi_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The atlas rows for a model's ``num_rois`` columns, in column order.

    With ``roi_names`` the rows are looked up by name (so a checkpoint whose columns are a subset or a reordering
    of the atlas still gets the right coordinates); without, the atlas's own order is used and must have
    ``num_rois`` rows. Without ``atlas_name`` the result has names (given or ``ROI_<i>``) and NaN coordinates,
    so plots that need coordinates can say so.
    """
    if atlas_name is None:
        names = list(roi_names) if roi_names is not None else [f"ROI_{i}" for i in range(num_rois)]
        if len(names) != num_rois:
            raise ValueError(f"roi_names has {len(names)} names but the model has {num_rois} ROIs.")
        table = pd.DataFrame({"index0": range(num_rois), "label_value": pd.NA, "name": names, "group": "all"})
        for column in ("hemisphere", "x_mni", "y_mni", "z_mni", "source"):
            table[column] = float("nan") if column.endswith("_mni") else pd.NA
        return table[list(COLUMNS)]
    table = atlas_table(atlas_name)
    if roi_names is None:
        if len(table) != num_rois:
            raise ValueError(
                f"Atlas {atlas_name!r} has {len(table)} ROIs but the model has {num_rois}; pass roi_names to pick "
                "the atlas rows the model's columns are."
            )
        return table
    names = list(roi_names)
    if len(names) != num_rois:
        raise ValueError(f"roi_names has {len(names)} names but the model has {num_rois} ROIs.")
    by_name = table.set_index("name")
    missing = [n for n in names if n not in by_name.index]
    if missing:
        raise ValueError(
            f"{len(missing)} ROI names are not in atlas {atlas_name!r} (first: {missing[:5]}); check atlas_name "
            "and roi_names in the checkpoint's config."
        )
    out = by_name.loc[names].reset_index()
    out["index0"] = range(num_rois)
    return out[list(COLUMNS)]
