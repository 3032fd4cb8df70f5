"""ROI values as a brain image: each region of an atlas label image filled with its ROI's value."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["roi_values_image"]


def roi_values_image(values: Sequence[float], atlas_image: Any, label_values: Sequence[Any] | None = None):
    """A float32 NIfTI image in the atlas's space (same grid and affine) whose voxels of region ``r`` hold
    ``values[r]`` and whose background (label 0) is 0.

    Args:
        values: one value per model column ``(R,)`` (ROI importance, a Hedges' g, ...).
        atlas_image: the 3D integer label image (path or nibabel image), checked as ``brainmass extract`` checks it.
        label_values: the atlas label value of each column ``(R,)`` (``roi_table(...)["label_value"]``); when
            absent or unknown (NA), column ``r`` is the ``r``-th smallest non-zero label of the image, which then
            must hold exactly ``R`` labels.
    Returns:
        ``nibabel.Nifti1Image``.
    """
    import nibabel as nib
    import pandas as pd

    from ..data.nifti import _load_atlas
    from ..validation import BrainMassDataError

    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 1:
        raise ValueError(f"values must be one value per ROI (R,); got shape {values.shape}.")
    atlas, labels = _load_atlas(atlas_image)
    known = label_values is not None and not pd.isna(pd.Series(list(label_values), dtype=object)).any()
    if known:
        wanted = np.asarray([int(v) for v in label_values])
        missing = sorted(set(wanted.tolist()) - set(labels.tolist()))
        if len(wanted) != len(values) or missing:
            raise BrainMassDataError(
                f"The atlas image does not hold the model's {len(values)} regions: label values {missing[:5]} are "
                "absent from it. Pass the label image of the atlas the model was trained on."
            )
    else:
        if labels.size != len(values):
            raise BrainMassDataError(
                f"The atlas image holds {labels.size} regions but the model has {len(values)} ROIs; without the "
                "atlas's label values (config.atlas_name) its regions are matched to the columns in label order."
            )
        wanted = labels
    grid = np.asanyarray(atlas.dataobj)
    lookup = np.zeros(int(grid.max()) + 1, dtype=np.float32)  # label value → value; everything else stays 0
    lookup[wanted] = values
    return nib.Nifti1Image(lookup[grid], atlas.affine)
