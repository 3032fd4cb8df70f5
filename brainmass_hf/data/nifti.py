"""NIfTI → ROI time series: average 4D fMRI scans within the regions of a label atlas (nilearn)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..validation import BrainMassDataError, check_unique_ids, format_names, warn
from .readers import check_choice

logger = logging.getLogger(__name__)

__all__ = ["extract_time_series"]


def _scan_id_from_path(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _check_file_names(subject_ids: Sequence[str]) -> None:
    """Refuse ids that are not plain file names: ``<id>.npy`` must land inside ``output_dir``.

    Refused rather than rewritten, because a silently renamed file would no longer match its phenotype row."""
    bad = [i for i in subject_ids
           if not i or i in (".", "..") or i.startswith(".") or any(c in i for c in ("/", "\\", "\0", ":"))]
    if bad:
        raise BrainMassDataError(
            f"subject_ids {format_names(bad)} cannot be used as file names in output_dir: an id must not be empty, "
            "start with '.', or hold '/', '\\', ':' or NUL (it would write outside output_dir or hide the file). "
            "Pass subject_ids= with plain names such as 'sub-01'."
        )


def _load_atlas(atlas_img: Any) -> tuple[Any, np.ndarray]:
    import nibabel as nib

    if isinstance(atlas_img, (str, Path)):
        if not Path(atlas_img).is_file():
            raise BrainMassDataError(f"Atlas {atlas_img} does not exist; check the path.")
        atlas_img = nib.load(str(atlas_img))
    data = np.asanyarray(atlas_img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise BrainMassDataError(
            f"The atlas must be a 3D label image (one integer per voxel); got shape {data.shape}. A 4D atlas "
            "of probability maps needs nilearn's NiftiMapsMasker instead."
        )
    if data.dtype.kind == "f":
        with np.errstate(invalid="ignore"):  # NaN and ±inf give a NaN remainder: not labels either
            integral = bool(np.all(np.mod(data, 1.0) == 0.0))
        if not integral:
            raise BrainMassDataError(
                "The atlas holds non-integer values, so it is not a label image (it may be a probability map). "
                "Pass a 3D image whose voxels hold integer region labels (0 = background)."
            )
    elif data.dtype.kind not in "biu":
        raise BrainMassDataError(
            f"The atlas must hold integer labels; got dtype {data.dtype}. Pass a 3D integer label image."
        )
    data = data.astype(np.int64)
    if (data < 0).any():
        raise BrainMassDataError("The atlas holds negative labels; labels must be >= 0 (0 = background).")
    labels = np.unique(data)
    labels = labels[labels != 0]
    if labels.size == 0:
        raise BrainMassDataError("The atlas holds no region: every voxel is 0 (background).")
    atlas = nib.Nifti1Image(data.astype(np.int32), atlas_img.affine)
    return atlas, labels


def _check_scan_inputs(imgs: list, subject_ids, confounds, output_dir) -> tuple[list[str], list]:
    """The scan ids (given, else from the file names) and one confounds entry per scan, checked."""
    if not imgs:
        raise BrainMassDataError("img_paths is empty; pass at least one 4D NIfTI scan.")
    if subject_ids is None:
        subject_ids = [_scan_id_from_path(Path(i)) if isinstance(i, (str, Path)) else f"scan{k:03d}"
                       for k, i in enumerate(imgs)]
    subject_ids = [str(s) for s in subject_ids]
    if len(subject_ids) != len(imgs):
        raise BrainMassDataError(f"Got {len(imgs)} scans but {len(subject_ids)} subject_ids; pass one id per scan.")
    check_unique_ids(subject_ids, what="subject_ids")
    if output_dir is not None:
        _check_file_names(subject_ids)
    if confounds is None:
        return subject_ids, [None] * len(imgs)
    confounds = list(confounds)
    if len(confounds) != len(imgs):
        raise BrainMassDataError(
            f"confounds must hold one entry (path, array or None) per scan: got {len(confounds)} for "
            f"{len(imgs)} scans."
        )
    for scan_id, c in zip(subject_ids, confounds):
        if isinstance(c, (str, Path)) and not Path(c).is_file():
            raise BrainMassDataError(
                f"Confounds file {c} for scan {scan_id!r} does not exist; check the path (or pass None)."
            )
    return subject_ids, confounds


def _read_headers(imgs: list, subject_ids: list[str]) -> list[Any]:
    """Every scan as a nibabel image, checked from its header (no voxel data read) before any extraction."""
    import nibabel as nib

    missing = [str(i) for i in imgs if isinstance(i, (str, Path)) and not Path(i).is_file()]
    if missing:
        raise BrainMassDataError(f"Scan files do not exist: {format_names(missing)}; check the paths.")
    headers = []
    for scan_id, img in zip(subject_ids, imgs):
        try:
            loaded = nib.load(str(img)) if isinstance(img, (str, Path)) else img
        except Exception as exc:
            raise BrainMassDataError(
                f"Could not read scan {scan_id!r} ({img}): {exc}. Pass a 4D NIfTI file (.nii or .nii.gz)."
            ) from exc
        if len(loaded.shape) != 4:
            raise BrainMassDataError(
                f"Scan {scan_id!r} has shape {loaded.shape}; a 4D image (x, y, z, time) is needed."
            )
        headers.append(loaded)
    return headers


def _grid_masker(img, scan_id: str, atlas, labels: np.ndarray, roi_names: list[str], cleaning: dict) -> tuple:
    """A fitted ``NiftiLabelsMasker`` for the grid of ``img`` (the atlas resampled to it by nearest neighbour when
    the grids differ) and the label values present on that grid; a label lost in resampling is warned about."""
    from nilearn.image import resample_to_img
    from nilearn.maskers import NiftiLabelsMasker

    same = img.shape[:3] == atlas.shape and np.allclose(img.affine, atlas.affine, atol=1e-5)
    grid_atlas = atlas
    if not same:
        # Label values must survive resampling, hence nearest neighbour (nilearn's choice for labels).
        grid_atlas = resample_to_img(atlas, img, interpolation="nearest", force_resample=True, copy_header=True)
        logger.info("Resampled the atlas to the grid of scan %r (nearest neighbour).", scan_id)
    present = [int(v) for v in np.unique(np.asanyarray(grid_atlas.dataobj)) if v != 0]
    lost = [name for v, name in zip(labels, roi_names) if int(v) not in present]
    if lost:
        warn(f"Scan {scan_id!r} (and any scan on the same grid): {len(lost)} atlas label(s) cover no voxel after "
             f"resampling to the scan: {format_names(lost)}. Their columns are zeros.")
    masker = NiftiLabelsMasker(
        # nilearn spells "no standardization" None (False is deprecated there).
        labels_img=grid_atlas, background_label=0, resampling_target=None, keep_masked_labels=False, **cleaning,
    ).fit()
    return masker, present


def _scan_series(masker, source, conf, scan_id: str, column_of: dict[int, int]) -> np.ndarray:
    """``(T, R)`` float32 of one scan: the masker's signals in the atlas's column order, zeros for lost labels."""
    try:
        signals = masker.transform(str(source) if isinstance(source, Path) else source, confounds=conf)
    except Exception as exc:
        raise BrainMassDataError(f"Extraction failed for scan {scan_id!r}: {type(exc).__name__}: {exc}") from exc
    region_ids = masker.region_ids_  # nilearn: column k of the signals -> its label value
    series = np.zeros((signals.shape[0], len(column_of)), dtype=np.float32)
    for k in range(signals.shape[1]):
        series[:, column_of[int(region_ids[k])]] = signals[:, k]
    return series


def _save_series(series: np.ndarray, scan_id: str, output_dir: Path) -> Path:
    target = output_dir / f"{scan_id}.npy"
    # _check_file_names already refused separators; this guards against anything it did not foresee.
    if target.resolve().parent != output_dir.resolve():
        raise BrainMassDataError(f"subject id {scan_id!r} would write outside {output_dir}; rename it.")
    np.save(target, series)
    return target


def _roi_names_for(labels: np.ndarray, roi_names: Sequence[str] | None) -> list[str]:
    names = [str(v) for v in labels] if roi_names is None else [str(n) for n in roi_names]
    if len(names) != len(labels):
        raise BrainMassDataError(
            f"roi_names has {len(names)} names but the atlas has {len(labels)} labels; give one name per "
            "label, in sorted label order."
        )
    return names


def extract_time_series(
    img_paths: str | Path | Any | Sequence[str | Path | Any],
    atlas_img: str | Path | Any,
    *,
    roi_names: Sequence[str] | None = None,
    confounds: Sequence[Any] | None = None,
    standardize: str | bool = "zscore_sample",
    detrend: bool = False,
    low_pass: float | None = None,
    high_pass: float | None = None,
    t_r: float | None = None,
    subject_ids: Sequence[str] | None = None,
    output_dir: str | Path | None = None,
    show_progress: bool = True,
) -> list[np.ndarray] | list[Path]:
    """Average 4D fMRI scans within the regions of a label atlas (nilearn ``NiftiLabelsMasker``).

    Args:
        img_paths: 4D NIfTI paths (or nibabel images), one per scan.
        atlas_img: 3D integer label image (path or nibabel image); 0 is background. Columns follow the sorted
            label values.
        roi_names: one name per label (sorted label order); default the label values as text.
        confounds: one entry per scan: ``None``, a path to a confounds table or a ``(T, k)`` array; regressed
            out by nilearn.
        standardize: ``"zscore_sample"`` (default), ``"zscore"``, ``"psc"`` or ``False``, per ROI over time.
        detrend, low_pass, high_pass: nilearn signal cleaning; filters (Hz) need ``t_r`` (seconds), which
            falls back to the scan header's fourth zoom.
        subject_ids: ids of the scans; default the file names without ``.nii``/``.nii.gz``.
        output_dir: if given, writes ``<subject_id>.npy`` (float32 ``(T, R)``) per scan and ``rois.csv``
            (``index0, label_value, name``) there, readable with :func:`load_time_series_folder`.
        show_progress: tqdm progress bar over scans.

    Returns:
        Without ``output_dir``: a list of float32 ``(num_timepoints, num_rois)`` arrays. With it: the written
        ``.npy`` paths.

    When a scan's grid (shape or affine) differs from the atlas', the atlas is resampled to the scan with
    nearest-neighbour interpolation (once per grid). A label that then covers no voxel is reported in a
    :class:`BrainMassDataWarning` and its column is filled with zeros, so every scan keeps R columns (the
    loaders count it as a constant ROI).
    """
    from tqdm.auto import tqdm

    single = isinstance(img_paths, (str, Path)) or hasattr(img_paths, "affine")
    imgs = [img_paths] if single else list(img_paths)
    subject_ids, confounds = _check_scan_inputs(imgs, subject_ids, confounds, output_dir)
    if standardize is True:
        standardize = "zscore_sample"
    if standardize is None:
        standardize = False
    check_choice("standardize", standardize, (False, "zscore_sample", "zscore", "psc"))
    headers = _read_headers(imgs, subject_ids)
    if (low_pass is not None or high_pass is not None) and t_r is None:
        t_r = float(headers[0].header.get_zooms()[3])
        if t_r <= 0:
            raise BrainMassDataError("low_pass/high_pass need t_r (seconds) and the scan header has none; pass t_r=.")
        logger.info("Using t_r=%.3f s from the header of %r", t_r, subject_ids[0])
    atlas, labels = _load_atlas(atlas_img)
    roi_names = _roi_names_for(labels, roi_names)
    column_of = {int(v): k for k, v in enumerate(labels)}
    cleaning = dict(standardize=standardize or None, detrend=detrend, low_pass=low_pass, high_pass=high_pass, t_r=t_r)
    if output_dir is not None:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
    maskers: dict[tuple, tuple[Any, list[int]]] = {}
    outputs: list[Any] = []
    for scan_id, source, img, conf in tqdm(list(zip(subject_ids, imgs, headers, confounds)),
                                           desc="Extracting time series", unit="scan", disable=not show_progress):
        grid = (tuple(img.shape[:3]), np.round(img.affine, 5).tobytes())
        if grid not in maskers:
            maskers[grid] = _grid_masker(img, scan_id, atlas, labels, roi_names, cleaning)
        series = _scan_series(maskers[grid][0], source, conf, scan_id, column_of)
        outputs.append(series if output_dir is None else _save_series(series, scan_id, output_dir))
    if output_dir is not None:
        pd.DataFrame({"index0": range(len(labels)), "label_value": labels, "name": roi_names}).to_csv(
            output_dir / "rois.csv", index=False
        )
    return outputs
