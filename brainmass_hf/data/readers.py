"""Reading one per-scan file into a 2D array, and orienting a cohort's arrays as time × ROI.

Orientation is decided once for the whole cohort (:func:`orient_time_series`), never per file, so one odd file
cannot silently be read the other way round.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..validation import BrainMassDataError, format_names

__all__ = ["TIME_SERIES_SUFFIXES", "read_time_series_file", "orient_time_series"]

# Per-scan file formats the folder loader reads, keyed by lower-case suffix.
TIME_SERIES_SUFFIXES = (".npy", ".1d", ".txt", ".csv", ".tsv", ".mat")
ORIENTATIONS = ("auto", "time_by_roi", "roi_by_time")


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    """Raise a :class:`BrainMassDataError` naming ``name`` and its allowed values unless ``value`` is one."""
    if value not in choices:
        raise BrainMassDataError(f"{name} must be one of {list(choices)}; got {value!r}.")


def separator(path: Path) -> str | None:
    """The column separator a table's suffix implies (``None``: let pandas sniff it)."""
    return {".tsv": "\t", ".csv": ","}.get(path.suffix.lower())


def _first_data_lines(path: Path, count: int = 1) -> list[str]:
    """The first ``count`` lines that are neither blank nor ``#`` comments."""
    lines = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.strip() and not line.lstrip().startswith("#"):
                lines.append(line.rstrip("\n"))
                if len(lines) == count:
                    break
    return lines


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


_INTEGER = re.compile(r"[+-]?\d+")


def _has_header(lines: Sequence[str], sep: str) -> bool:
    """Whether the first data row is a header.

    A row with a non-numeric cell is a header (ROI names). A row of bare integers is a header only when it reads
    as column labels: ``0 … R-1`` or ``1 … R`` (what pandas and R write) or, with at least 4 columns, strictly
    increasing label values (atlas labels such as ``2001 2002 …``). Anything else is data: a headerless file of
    integer signal must not lose its first time point."""
    first = [f.strip().strip('"') for f in lines[0].split(sep)]
    if any(f and not _is_number(f) for f in first):
        return True
    if not all(_INTEGER.fullmatch(f) for f in first):
        return False
    values = [int(f) for f in first]
    if values in (list(range(len(values))), list(range(1, len(values) + 1))):
        return True
    return len(values) >= 4 and all(b > a for a, b in zip(values, values[1:]))


def _read_delimited(path: Path, sep: str) -> np.ndarray:
    lines = _first_data_lines(path)
    if not lines:
        raise BrainMassDataError(f"Could not read {path}: the file has no data rows; fill it or remove it.")
    # Empty cells become NaN (and are then reported by the finite check), hence pandas, not loadtxt.
    table = pd.read_csv(path, sep=sep, header=0 if _has_header(lines, sep) else None, comment="#")
    try:
        return table.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise BrainMassDataError(
            f"Could not read {path}: a cell is not a number ({exc}); fix or remove that cell (ROI names belong in "
            "the first row only)."
        ) from exc


def _read_mat(path: Path, mat_key: str | None) -> np.ndarray:
    import scipy.io

    try:
        content = scipy.io.loadmat(path)
    except NotImplementedError as exc:  # scipy says so for MATLAB v7.3 (HDF5) files
        raise BrainMassDataError(
            f"Could not read {path}: it is a MATLAB v7.3 (HDF5) file, which scipy cannot read. Re-save it in "
            "MATLAB with save(..., '-v7') or convert it to .npy."
        ) from exc
    variables = {k: v for k, v in content.items() if not k.startswith("__")}
    listing = ", ".join(f"{k!r} {getattr(v, 'shape', '')}" for k, v in variables.items()) or "none"
    if mat_key is None:
        numeric = [k for k, v in variables.items()
                   if isinstance(v, np.ndarray) and v.ndim == 2 and v.dtype.kind in "biuf" and v.size > 1]
        if len(numeric) != 1:
            raise BrainMassDataError(
                f"{path} holds {len(numeric)} 2D numeric variables; pass mat_key= to choose one. "
                f"Variables available: {listing}."
            )
        mat_key = numeric[0]
    if mat_key not in variables:
        raise BrainMassDataError(
            f"{path} has no variable {mat_key!r}; variables available: {listing}. Pass the right mat_key=."
        )
    return variables[mat_key]


def read_time_series_file(path: str | Path, mat_key: str | None = None) -> np.ndarray:
    """Read one per-scan file into a 2D float array, not yet oriented.

    Formats by suffix: ``.npy``; ``.1D`` (AFNI/ABIDE) and ``.txt``: whitespace-separated, ``#`` lines are
    comments (the ABIDE ``#2001 #2002 …`` header included); ``.csv``/``.tsv``: with or without a header row
    (a first row with a non-numeric cell, or of integer column labels, is a header; see ``_has_header``), empty
    cells are NaN; ``.mat``: the variable
    ``mat_key`` (or the only 2D numeric variable).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TIME_SERIES_SUFFIXES:
        raise BrainMassDataError(
            f"Could not read {path}: unsupported suffix {path.suffix!r}; supported: {list(TIME_SERIES_SUFFIXES)} "
            "(and a single .npz bundle via load_npz_bundle)."
        )
    try:
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif suffix in (".1d", ".txt"):
            array = np.loadtxt(path, comments="#", ndmin=2, dtype=np.float64)
        elif suffix == ".csv":
            array = _read_delimited(path, ",")
        elif suffix == ".tsv":
            array = _read_delimited(path, "\t")
        else:
            array = _read_mat(path, mat_key)
    except BrainMassDataError:
        raise
    except Exception as exc:  # any parser failure becomes one message that names the file
        raise BrainMassDataError(
            f"Could not read {path}: {type(exc).__name__}: {exc}. Check that the file is what its suffix says, or "
            "re-save it as a 2D numeric table (np.save, or text with one row per time point)."
        ) from exc
    array = np.asarray(array)
    if array.ndim == 1:
        # One column (a single ROI or a single time point) is still a table: keep it 2D, decide later.
        array = array[:, None]
    # complex arrays pass here and are refused by validate_time_series, which says what to do about them
    if array.ndim != 2 or array.dtype.kind not in "biufc":
        raise BrainMassDataError(
            f"{path} must hold a 2D numeric table (time × ROI or ROI × time); got shape {array.shape}, "
            f"dtype {array.dtype}. Save one scan per file as a 2D float array."
        )
    return array


# ----------------------------------------------------------------------------------------------------------
# Orientation: decide once for the cohort, then transpose.
# ----------------------------------------------------------------------------------------------------------


def _axis_summary(shapes: Sequence[tuple[int, int]], keys: Sequence[str], axis: int) -> str:
    sizes = [s[axis] for s in shapes]
    majority, count = collections.Counter(sizes).most_common(1)[0]
    odd = [k for k, s in zip(keys, sizes) if s != majority]
    text = f"axis {axis}: {majority} in {count} file(s)"
    return text + (f", different in {format_names(odd, 5)}" if odd else "")


def _orient_by_roi_count(arrays: list[np.ndarray], keys: Sequence[str], num_rois: int,
                         convention_time_by_roi: bool) -> list[np.ndarray]:
    """``orientation="auto"`` with ``num_rois``: one orientation for the whole cohort, from the files whose shape
    allows only one reading. Files that allow only opposite readings (e.g. ``(40, 12)`` beside ``(12, 30)`` with
    ``num_rois=12``: the second may be ROI × time, or 12 time points of another atlas) are an error, never a guess;
    square files follow the cohort."""
    readings = {}
    for key, a in zip(keys, arrays):
        rows, cols = a.shape
        if num_rois not in (rows, cols):
            raise BrainMassDataError(
                f"Inconsistent ROI count: {key!r} has shape {a.shape}, neither axis has num_rois={num_rois}. "
                "Check the atlas used for this scan, or drop it."
            )
        if rows != cols:
            readings[key] = "time_by_roi" if cols == num_rois else "roi_by_time"
    found = collections.Counter(readings.values())
    if len(found) > 1:
        minority = found.most_common()[-1][0]
        odd = [f"{k!r} {a.shape}" for k, a in zip(keys, arrays) if readings.get(k) == minority]
        raise BrainMassDataError(
            f"Cannot tell the orientation: with num_rois={num_rois}, {found['time_by_roi']} file(s) read only as time "
            f"× ROI and {found['roi_by_time']} only as ROI × time, e.g. {', '.join(odd[:5])}; such a file may be "
            f"stored the other way round or hold {num_rois} time points of another atlas. Pass "
            "orientation='time_by_roi' or 'roi_by_time' (the layout of your files) and drop the files that do not fit."
        )
    if found:
        orientation = next(iter(found))
    elif convention_time_by_roi:
        orientation = "time_by_roi"  # every scan square (T == R): the bundle convention is all there is to go on
    else:
        raise BrainMassDataError(
            f"Cannot tell the orientation of {keys[0]!r}: it is square ({num_rois} × {num_rois}) and num_rois="
            f"{num_rois}, like every file. Pass orientation='time_by_roi' or 'roi_by_time'."
        )
    return arrays if orientation == "time_by_roi" else [a.T for a in arrays]


def orient_time_series(
    arrays: Sequence[np.ndarray],
    keys: Sequence[str],
    orientation: str = "auto",
    num_rois: int | None = None,
    *,
    convention_time_by_roi: bool = False,
) -> list[np.ndarray]:
    """Return the arrays as ``(num_timepoints, num_rois)``.

    ``"time_by_roi"`` keeps them, ``"roi_by_time"`` transposes them. ``"auto"`` with ``num_rois`` reads the whole
    cohort one way, the way its non-square files allow (files allowing opposite readings are an error, square files
    follow the cohort; an all-square cohort is an error); without ``num_rois`` it takes the axis whose
    size is the same in every file as the ROI axis. When both axes (e.g. a single file, or a fixed-length cohort)
    or neither are constant, it raises and asks for ``orientation=`` or ``num_rois=``.

    ``convention_time_by_roi`` (``.npz`` bundles, stored time × ROI by convention) reads an all-square cohort time ×
    ROI when ``num_rois`` is given, and equal shapes with at least as many rows as columns time × ROI. Equal shapes
    with fewer rows than columns stay an error: that is how a bundle stored ROI × time looks (116 × 168 would
    otherwise load as T = 116, R = 168).
    """
    check_choice("orientation", orientation, ORIENTATIONS)
    arrays = list(arrays)
    if orientation == "time_by_roi":
        return arrays
    if orientation == "roi_by_time":
        return [a.T for a in arrays]
    if num_rois is not None:
        return _orient_by_roi_count(arrays, keys, num_rois, convention_time_by_roi)
    shapes = [a.shape for a in arrays]
    rows_constant = len({s[0] for s in shapes}) == 1
    cols_constant = len({s[1] for s in shapes}) == 1
    if cols_constant and not rows_constant:
        return arrays
    if rows_constant and not cols_constant:
        return [a.T for a in arrays]
    if rows_constant and convention_time_by_roi and shapes[0][0] >= shapes[0][1]:
        return arrays
    if rows_constant:
        reason = (f"all {len(arrays)} file(s) have shape {shapes[0]}, so the ROI axis cannot be told from the "
                  "shapes" + (" (fewer rows than columns: stored ROI × time?)" if convention_time_by_roi else ""))
    else:
        reason = ("neither axis has the same size in every file (" + _axis_summary(shapes, keys, 0) + "; "
                  + _axis_summary(shapes, keys, 1) + "), so the ROI count is inconsistent or files differ in "
                  "orientation")
    raise BrainMassDataError(
        f"Cannot detect the orientation: {reason}. Pass orientation='time_by_roi' (rows are time points, the "
        "nilearn and ABIDE convention) or 'roi_by_time', or num_rois=R."
    )
