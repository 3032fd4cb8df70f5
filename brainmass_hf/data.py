"""Real data in: region time series from files, bundles, the bundled cohort or NIfTI scans.

Every loader returns a :class:`datasets.Dataset` with one row per scan and this schema (the rest of the
package relies on it):

=====================  ==================================================  ===================================
column                 feature                                             meaning
=====================  ==================================================  ===================================
``subject_id``         ``Value("string")``                                 the scan id
``time_series``        ``Array2D(shape=(None, R), dtype="float32")``       ``(num_timepoints, num_rois)``
``num_timepoints``     ``Value("int32")``                                  rows of ``time_series``
``num_constant_rois``  ``Value("int32")``                                  ROIs with std < 1e-8 over time
``label``              ``ClassLabel(names=...)`` or ``Value("float32")``   only when a label column is chosen
``site``               ``Value("string")``                                 only when a site column is chosen
other columns          as pandas inferred them from the phenotype table    only when a phenotype table is given
=====================  ==================================================  ===================================

**ID matching rule** (files or ``.npz`` keys ↔ the phenotype id column). A file's key is its name without the
extension (an ``.npz`` key without its ``ts_`` prefix). A key and an id match when

1. they are equal, or else
2. the id's tokens occur as a contiguous run in the key's tokens. Tokens are the pieces between
   non-alphanumeric characters, compared case-insensitively, with numbers compared by value (``0051456`` ==
   ``51456``); an id's leading BIDS ``sub-`` may be absent when the rest of the id starts the key. So
   ``Caltech_0051456`` and ``51456`` both match ``Caltech_0051456_rois_aal.1D``, ``sub-pixar001`` matches key
   ``pixar001``, but ``sub-1`` does not match ``sub-10``. When several ids match one file, the one with the most
   tokens wins.

Each file must match one id and each id at most one file; anything else (a file matching two ids equally well,
two files matching one id) is a :class:`BrainMassDataError` naming the files; files without an id and ids
without a file are errors too unless ``on_missing`` says to drop them. With a phenotype table the dataset's
``subject_id`` is the table's id (one row per scan); without one it is the file key.

The phenotype table and the id matching are checked before any file is read, the arrays before anything is
computed from them; every failure is one :class:`BrainMassDataError` (a ``ValueError``) that names the file or
scan and says what to change.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

__all__ = [
    "resolve_dataset",
    "BrainMassDataError",
    "BrainMassDataWarning",
    "bundled_roi_names",
    "check_unique_ids",
    "count_constant_rois",
    "extract_time_series",
    "find_phenotype_file",
    "load_dataset_auto",
    "load_devfmri",
    "load_npz_bundle",
    "load_time_series_folder",
    "match_ids",
    "orient_time_series",
    "read_time_series_file",
    "time_series_list",
    "validate_time_series",
]

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
_BUNDLED_ATLASES = {"aal116": BUNDLED_DIR / "devfmri_aal116"}

# Per-scan file formats the folder loader reads, keyed by lower-case suffix.
TIME_SERIES_SUFFIXES = (".npy", ".1d", ".txt", ".csv", ".tsv", ".mat")
# Below this standard deviation over time a ROI carries no signal (e.g. outside the field of view);
# FC with it is undefined, so it is counted, not silently kept.
CONSTANT_ROI_STD = 1e-8
# Tried in this order when ``id_column`` is not given: ours, then BIDS, then ABIDE phenotype names.
ID_COLUMN_CANDIDATES = ("subject_id", "scan_id", "scan", "participant_id", "subject", "FILE_ID", "SUB_ID")
# Phenotype tables found next to the data by ``load_dataset_auto``.
PHENOTYPE_FILENAMES = ("subjects.csv", "subjects.tsv", "participants.tsv", "participants.csv", "phenotype.csv",
                       "phenotypes.csv", "phenotypic.csv")
RESERVED_COLUMNS = ("subject_id", "time_series", "num_timepoints", "num_constant_rois", "label", "site")
_ORIENTATIONS = ("auto", "time_by_roi", "roi_by_time")
_ON_MISSING = ("error", "warn", "drop")
_LABEL_TYPES = ("auto", "categorical", "continuous")


class BrainMassDataError(ValueError):
    """Input data that cannot be used as given; the message names the file or scan and the fix."""


class BrainMassDataWarning(UserWarning):
    """Usable input with something worth knowing (constant ROIs, dropped scans, resampled atlas)."""


def _warn(message: str) -> None:
    """Warn with the user's calling line as the location, however deep in this module the cause was found."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, BrainMassDataWarning, stacklevel=level)


def _names(items: Sequence[Any], limit: int = 10) -> str:
    """``'a', 'b', 'c' (and 4 more)`` for error messages that must stay readable on big cohorts."""
    items = list(items)
    shown = ", ".join(repr(str(x)) for x in items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


# ----------------------------------------------------------------------------------------------------------
# Validation: one function per check, all reused by the loaders and by the model code.
# ----------------------------------------------------------------------------------------------------------


def check_unique_ids(ids: Sequence[str], what: str = "scan ids") -> None:
    """Raise if any id occurs twice; ``what`` names the source (e.g. the phenotype file) in the message."""
    counts = collections.Counter(ids)
    dups = [i for i, c in counts.items() if c > 1]
    if dups:
        raise BrainMassDataError(
            f"Duplicated {what}: {_names(dups)} occur more than once. Each scan needs a unique id; "
            "remove the duplicates or choose a per-scan id column."
        )


def _check_roi_counts(arrays: Sequence[np.ndarray], ids: Sequence[str], num_rois: int | None) -> int:
    rois = [a.shape[1] for a in arrays]
    if num_rois is None:
        # The majority is the atlas the cohort was meant to use; the minority are the scans to fix.
        num_rois = collections.Counter(rois).most_common(1)[0][0]
        expected = f"most scans have R={num_rois} ROIs (columns)"
    else:
        expected = f"num_rois={num_rois} was requested"
    odd = [f"{i!r} (R={r})" for i, r in zip(ids, rois) if r != num_rois]
    if odd:
        shown = ", ".join(odd[:10]) + (f" (and {len(odd) - 10} more)" if len(odd) > 10 else "")
        raise BrainMassDataError(
            f"Inconsistent ROI count: {expected}, but scan {shown} differ. All scans must be extracted with "
            "the same atlas; re-extract or drop these scans (or check the orientation)."
        )
    return num_rois


def _check_min_timepoints(arrays: Sequence[np.ndarray], ids: Sequence[str], min_timepoints: int) -> None:
    short = [f"{i!r} (T={a.shape[0]})" for i, a in zip(ids, arrays) if a.shape[0] < min_timepoints]
    if short:
        raise BrainMassDataError(
            f"Too few time points: scan {', '.join(short[:10])}{' ...' if len(short) > 10 else ''} "
            f"has fewer than min_timepoints={min_timepoints}. Functional connectivity needs a usable series; "
            "drop these scans or lower min_timepoints (or check the orientation)."
        )


def _check_finite(arrays: Sequence[np.ndarray], ids: Sequence[str]) -> None:
    bad = []
    for scan_id, a in zip(ids, arrays):
        nonfinite = ~np.isfinite(a)
        if nonfinite.any():
            t, r = np.argwhere(nonfinite)[0]
            counts = {"NaN": int(np.isnan(a).sum()), "Inf": int(np.isinf(a).sum())}
            kinds = " and ".join(f"{n} {kind}" for kind, n in counts.items() if n)
            bad.append(f"{scan_id!r} ({kinds} values, first at time point {t}, ROI {r})")
    if bad:
        raise BrainMassDataError(
            f"Non-finite values in scan {'; '.join(bad[:10])}{' ...' if len(bad) > 10 else ''}. "
            "Fix the extraction (e.g. an empty parcel or a division by zero) or drop these scans."
        )


def count_constant_rois(array: np.ndarray) -> int:
    """Number of ROIs (columns of a ``(num_timepoints, num_rois)`` array) whose std over time is < 1e-8."""
    # float64 so that raw-scale data (values ~1e3) does not lose the variance to rounding.
    return int((np.asarray(array, dtype=np.float64).std(axis=0) < CONSTANT_ROI_STD).sum())


def validate_time_series(
    arrays: Sequence[np.ndarray],
    ids: Sequence[str],
    num_rois: int | None = None,
    min_timepoints: int = 10,
) -> dict[str, Any]:
    """Check a cohort of ``(num_timepoints, num_rois)`` arrays before any computation.

    Args:
        arrays: one array per scan, already oriented time × ROI; ``num_timepoints`` may differ per scan.
        ids: one id per scan, used in every message.
        num_rois: the expected ROI count; ``None`` takes the majority across scans.
        min_timepoints: the shortest acceptable scan (default 10).

    Returns:
        ``{"num_rois": int, "num_timepoints": list[int], "num_constant_rois": list[int],
        "scans_with_constant_rois": list[str]}``.

    Raises:
        BrainMassDataError: on a count mismatch between ``arrays`` and ``ids``, duplicated ids, a non-2D or
            non-numeric array, an inconsistent ROI count (naming the odd scans and the majority R), fewer than
            ``min_timepoints`` rows, or NaN/Inf (naming scan, count and first position).

    Constant ROIs are not an error: they are counted per scan and reported with a
    :class:`BrainMassDataWarning` naming the scans.
    """
    arrays = list(arrays)
    ids = [str(i) for i in ids]
    if len(arrays) != len(ids):
        raise BrainMassDataError(f"Got {len(arrays)} arrays but {len(ids)} ids; pass one id per scan.")
    if not arrays:
        raise BrainMassDataError("No scans to validate: the list of arrays is empty.")
    check_unique_ids(ids)
    for scan_id, a in zip(ids, arrays):
        if not isinstance(a, np.ndarray) or a.ndim != 2 or a.dtype.kind not in "biuf":
            shape = getattr(a, "shape", None)
            raise BrainMassDataError(
                f"Scan {scan_id!r} must be a 2D numeric numpy array (num_timepoints, num_rois); "
                f"got {type(a).__name__} with shape {shape} and dtype {getattr(a, 'dtype', None)}."
            )
    num_rois = _check_roi_counts(arrays, ids, num_rois)
    _check_min_timepoints(arrays, ids, min_timepoints)
    _check_finite(arrays, ids)
    constant = [count_constant_rois(a) for a in arrays]
    flagged = [i for i, c in zip(ids, constant) if c]
    if flagged:
        detail = ", ".join(f"{i!r} ({c})" for i, c in zip(ids, constant) if c)
        message = (f"{len(flagged)} scan(s) have constant ROIs (std < {CONSTANT_ROI_STD:g} over time; "
                   f"count in brackets): {detail}. They are kept; see the num_constant_rois column.")
        _warn(message)
    return {
        "num_rois": int(num_rois),
        "num_timepoints": [int(a.shape[0]) for a in arrays],
        "num_constant_rois": constant,
        "scans_with_constant_rois": flagged,
    }


def _check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise BrainMassDataError(f"{name} must be one of {list(choices)}; got {value!r}.")


# ----------------------------------------------------------------------------------------------------------
# Reading one per-scan file into a 2D array (orientation is decided later, across all files).
# ----------------------------------------------------------------------------------------------------------


def _first_data_lines(path: Path, count: int = 2) -> list[str]:
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
    """A first row with a non-numeric cell is a header (ROI names). So is a row of bare integers (column
    indices as pandas writes them, or atlas label values) above a row that is not all integers."""
    first = [f.strip().strip('"') for f in lines[0].split(sep)]
    if any(f and not _is_number(f) for f in first):
        return True
    if len(lines) > 1 and all(_INTEGER.fullmatch(f) for f in first):
        second = [f.strip().strip('"') for f in lines[1].split(sep)]
        return not all(_INTEGER.fullmatch(f) for f in second if f)
    return False


def _read_delimited(path: Path, sep: str) -> np.ndarray:
    lines = _first_data_lines(path)
    if not lines:
        raise BrainMassDataError(f"Could not read {path}: the file has no data rows.")
    # Empty cells become NaN (and are then reported by the finite check), hence pandas, not loadtxt.
    table = pd.read_csv(path, sep=sep, header=0 if _has_header(lines, sep) else None, comment="#")
    try:
        return table.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise BrainMassDataError(f"Could not read {path}: a cell is not a number ({exc}).") from exc


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
    (a first row with a non-numeric cell, or of bare integers above a row of non-integers, is a header), empty
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
        raise BrainMassDataError(f"Could not read {path}: {type(exc).__name__}: {exc}") from exc
    array = np.asarray(array)
    if array.ndim == 1:
        # One column (a single ROI or a single time point) is still a table: keep it 2D, decide later.
        array = array[:, None]
    if array.ndim != 2 or array.dtype.kind not in "biuf":
        raise BrainMassDataError(
            f"{path} must hold a 2D numeric table (time × ROI or ROI × time); got shape {array.shape}, "
            f"dtype {array.dtype}."
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
    return text + (f", different in {_names(odd, 5)}" if odd else "")


def orient_time_series(
    arrays: Sequence[np.ndarray],
    keys: Sequence[str],
    orientation: str = "auto",
    num_rois: int | None = None,
) -> list[np.ndarray]:
    """Return the arrays as ``(num_timepoints, num_rois)``.

    ``"time_by_roi"`` keeps them, ``"roi_by_time"`` transposes them. ``"auto"`` with ``num_rois`` takes the
    axis of that size as ROIs in each file (a square array is ambiguous); without ``num_rois`` it takes the
    axis whose size is the same in every file as the ROI axis. When both axes (e.g. a single file, or a
    fixed-length cohort) or neither are constant, it raises and asks for ``orientation=`` or ``num_rois=``.
    """
    _check_choice("orientation", orientation, _ORIENTATIONS)
    arrays = list(arrays)
    if orientation == "time_by_roi":
        return arrays
    if orientation == "roi_by_time":
        return [a.T for a in arrays]
    if num_rois is not None:
        out = []
        for key, a in zip(keys, arrays):
            rows, cols = a.shape
            if rows == cols == num_rois:
                raise BrainMassDataError(
                    f"Cannot tell the orientation of {key!r}: it is square ({rows} × {cols}) and num_rois="
                    f"{num_rois}. Pass orientation='time_by_roi' or 'roi_by_time'."
                )
            if cols == num_rois:
                out.append(a)
            elif rows == num_rois:
                out.append(a.T)
            else:
                raise BrainMassDataError(
                    f"Inconsistent ROI count: {key!r} has shape {a.shape}, neither axis has num_rois={num_rois}. "
                    "Check the atlas used for this scan, or drop it."
                )
        return out
    shapes = [a.shape for a in arrays]
    rows_constant = len({s[0] for s in shapes}) == 1
    cols_constant = len({s[1] for s in shapes}) == 1
    if cols_constant and not rows_constant:
        return arrays
    if rows_constant and not cols_constant:
        return [a.T for a in arrays]
    if rows_constant:
        reason = (f"all {len(arrays)} file(s) have shape {shapes[0]}, so the ROI axis cannot be told from the "
                  "shapes")
    else:
        reason = ("neither axis has the same size in every file (" + _axis_summary(shapes, keys, 0) + "; "
                  + _axis_summary(shapes, keys, 1) + "), so the ROI count is inconsistent or files differ in "
                  "orientation")
    raise BrainMassDataError(
        f"Cannot detect the orientation: {reason}. Pass orientation='time_by_roi' (rows are time points, the "
        "nilearn and ABIDE convention) or 'roi_by_time', or num_rois=R."
    )


# ----------------------------------------------------------------------------------------------------------
# Phenotype table and id matching.
# ----------------------------------------------------------------------------------------------------------


def _separator(path: Path) -> str | None:
    return {".tsv": "\t", ".csv": ","}.get(path.suffix.lower())


def _read_phenotype(phenotype: str | Path | pd.DataFrame, id_column: str | None) -> tuple[pd.DataFrame, str, str]:
    """The table with its id column as stripped strings; returns (table, id_column, name for messages)."""
    if isinstance(phenotype, pd.DataFrame):
        table, source = phenotype.copy(), "the phenotype table"
        columns = list(table.columns)
    else:
        path = Path(phenotype)
        source = str(path)
        if not path.is_file():
            raise BrainMassDataError(f"Phenotype file {path} does not exist.")
        sep = _separator(path)
        kwargs = {"sep": sep} if sep else {"sep": None, "engine": "python"}
        try:
            columns = list(pd.read_csv(path, nrows=0, **kwargs).columns)
        except Exception as exc:
            raise BrainMassDataError(f"Could not read phenotype file {path}: {exc}") from exc
        table = None
    if id_column is None:
        id_column = next((c for c in ID_COLUMN_CANDIDATES if c in columns), None)
        if id_column is None:
            raise BrainMassDataError(
                f"{source} has none of the usual id columns {list(ID_COLUMN_CANDIDATES)}; its columns are "
                f"{columns}. Pass id_column=."
            )
    elif id_column not in columns:
        raise BrainMassDataError(f"Id column {id_column!r} is not in {source}; its columns are {columns}.")
    if table is None:
        # Ids as text so that ABIDE's zero-padded ids (0051456) survive.
        table = pd.read_csv(path, dtype={id_column: str}, **kwargs)
    ids = table[id_column]
    if ids.isna().any():
        rows = [int(i) + 2 for i in np.flatnonzero(ids.isna().to_numpy())]  # +2: 1-based, after the header
        raise BrainMassDataError(f"{source}: rows {rows[:10]} have no value in id column {id_column!r}.")
    table[id_column] = ids.astype(str).str.strip()
    check_unique_ids(table[id_column].tolist(), what=f"ids in column {id_column!r} of {source}")
    return table.reset_index(drop=True), id_column, source


def _tokens(text: str) -> tuple[str, ...]:
    return tuple(str(int(t)) if t.isdigit() else t.lower() for t in re.split(r"[^0-9A-Za-z]+", text) if t)


def match_ids(keys: Sequence[str], ids: Sequence[str]) -> dict[str, str]:
    """Map each file key to the phenotype id it matches (see the module docstring for the rule).

    Keys that match no id are left out of the result. Raises :class:`BrainMassDataError` when one key matches
    several equally specific ids or one id is matched by several keys.
    """
    exact = set(ids)
    # token tuple -> ids it stands for; ``anchored`` patterns (an id without its "sub-") must start the key,
    # so that e.g. "sub-01" is not found in "..._run-01".
    patterns: dict[tuple[str, ...], set[str]] = collections.defaultdict(set)
    anchored: dict[tuple[str, ...], set[str]] = collections.defaultdict(set)
    for i in ids:
        toks = _tokens(i)
        if toks:
            patterns[toks].add(i)
        if len(toks) > 1 and toks[0] == "sub":
            anchored[toks[1:]].add(i)
    lengths = sorted({len(t) for t in patterns} | {len(t) for t in anchored})
    matched: dict[str, str] = {}
    for key in keys:
        if key in exact:
            matched[key] = key
            continue
        toks = _tokens(key)
        hits: dict[str, int] = {}
        for start in range(len(toks)):
            for length in lengths:
                run = toks[start:start + length]
                found = patterns.get(run, set()) | (anchored.get(run, set()) if start == 0 else set())
                for i in found:
                    hits[i] = max(hits.get(i, 0), length)
        if not hits:
            continue
        best = max(hits.values())
        winners = sorted(i for i, n in hits.items() if n == best)
        if len(winners) > 1:
            raise BrainMassDataError(
                f"File {key!r} matches several phenotype ids equally well: {_names(winners)}. Rename the file "
                "or use an id column whose values identify one scan each."
            )
        matched[key] = winners[0]
    by_id = collections.defaultdict(list)
    for key, i in matched.items():
        by_id[i].append(key)
    shared = {i: ks for i, ks in by_id.items() if len(ks) > 1}
    if shared:
        detail = "; ".join(f"{i!r} ← {_names(ks, 5)}" for i, ks in list(shared.items())[:5])
        raise BrainMassDataError(
            f"Several files match the same phenotype id: {detail}. Each row must describe one scan; use a "
            "per-scan id column (e.g. subject + session) or select the files with file_pattern=."
        )
    return matched


def _report_missing(kind: str, items: Sequence[str], on_missing: str) -> None:
    if items and on_missing == "warn":
        message = f"Dropped {len(items)} {kind}: {_names(items)}."
        _warn(message)
    elif items:
        logger.info("Dropped %d %s: %s.", len(items), kind, _names(items))


def _join_phenotype(
    keys: Sequence[str],
    table: pd.DataFrame,
    id_column: str,
    source: str,
    on_missing: str,
) -> tuple[list[str], pd.DataFrame]:
    """Return the kept keys and their phenotype rows, aligned, in the table's row order."""
    matched = match_ids(keys, table[id_column].tolist())
    files_without_row = [k for k in keys if k not in matched]
    used = set(matched.values())
    rows_without_file = [i for i in table[id_column] if i not in used]
    if on_missing == "error" and (files_without_row or rows_without_file):
        parts = []
        if files_without_row:
            parts.append(f"{len(files_without_row)} file(s) have no row in {source}: {_names(files_without_row)}")
        if rows_without_file:
            parts.append(f"{len(rows_without_file)} row(s) of {source} have no file: {_names(rows_without_file)}")
        raise BrainMassDataError(
            "; ".join(parts) + f". Ids are matched on column {id_column!r} (file name == id, or the id's "
            "tokens inside the file name). Fix the names, or pass on_missing='warn' or 'drop' to drop them."
        )
    _report_missing("file(s) without a phenotype row", files_without_row, on_missing)
    _report_missing(f"row(s) of {source} without a file", rows_without_file, on_missing)
    key_of = {i: k for k, i in matched.items()}
    table = table[table[id_column].isin(used)].reset_index(drop=True)
    return [key_of[i] for i in table[id_column]], table


# ----------------------------------------------------------------------------------------------------------
# Labels and the Dataset itself.
# ----------------------------------------------------------------------------------------------------------


def _is_integral(values: pd.Series) -> bool:
    numbers = values.to_numpy(dtype=np.float64)
    return bool(np.all(np.isfinite(numbers)) and np.all(numbers == np.round(numbers)))


def _encode_labels(
    values: pd.Series,
    ids: Sequence[str],
    label_names: Sequence[str] | None,
    label_type: str,
    max_classes: int,
) -> tuple[datasets.features.FeatureType, list]:
    """(feature, encoded values) for a label column that has no missing values."""
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if label_type == "auto":
        if label_names is not None or not numeric:
            label_type = "categorical"
        else:
            # Small integer codes (diagnosis 0/1, DX_GROUP 1/2) are classes; anything else is a score.
            small = _is_integral(values) and values.nunique() <= max_classes
            label_type = "categorical" if small else "continuous"
    if label_type == "continuous":
        if not numeric:
            raise BrainMassDataError(
                f"label_type='continuous' but the label column holds non-numbers, e.g. {values.iloc[0]!r}."
            )
        return datasets.Value("float32"), values.astype(np.float32).tolist()
    integral = numeric and _is_integral(values)
    as_text = [str(int(v)) if integral else str(v) for v in values]
    if label_names is None:
        if integral:
            label_names = [str(v) for v in sorted({int(v) for v in values})]
        else:
            label_names = sorted(set(as_text))
    label_names = [str(n) for n in label_names]
    index = {n: k for k, n in enumerate(label_names)}
    encoded, unknown = [], []
    for scan_id, text, value in zip(ids, as_text, values):
        if text in index:
            encoded.append(index[text])
        elif integral and 0 <= int(value) < len(label_names):
            # Integer codes index label_names directly (0 -> label_names[0]).
            encoded.append(int(value))
        else:
            unknown.append(f"{scan_id!r}={text}")
    if unknown:
        raise BrainMassDataError(
            f"Label values not in label_names={label_names}: {', '.join(unknown[:10])}. "
            "Add them to label_names or fix the phenotype table."
        )
    return datasets.ClassLabel(names=label_names), encoded


def _phenotype_features(table: pd.DataFrame) -> tuple[dict[str, datasets.features.FeatureType], dict[str, list]]:
    import pyarrow as pa

    features, columns = {}, {}
    for name in table.columns:
        column = table[name]
        try:
            array = pa.array(column, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # Mixed types in one column (numbers and text): keep it as text rather than fail.
            column = column.map(lambda v: None if pd.isna(v) else str(v))
            array = pa.array(column, from_pandas=True)
        if pa.types.is_null(array.type) or pa.types.is_large_string(array.type):
            # pandas' arrow-backed text arrives as large_string; plain string is what the schema promises.
            array = array.cast(pa.string())
        features[str(name)] = datasets.Features.from_arrow_schema(pa.schema([(str(name), array.type)]))[str(name)]
        columns[str(name)] = array.to_pylist()
    return features, columns


def _build_dataset(
    keys: Sequence[str],
    read: Any,
    phenotype: str | Path | pd.DataFrame | None,
    *,
    id_column: str | None,
    label_column: str | None,
    site_column: str | None,
    label_names: Sequence[str] | None,
    label_type: str,
    max_classes: int,
    phenotype_columns: Sequence[str] | None,
    orientation: str,
    num_rois: int | None,
    min_timepoints: int,
    on_missing: str,
) -> datasets.Dataset:
    """Shared tail of every loader: join, check, read (``read(key) -> 2D array``), orient, validate, build."""
    _check_choice("orientation", orientation, _ORIENTATIONS)
    _check_choice("on_missing", on_missing, _ON_MISSING)
    _check_choice("label_type", label_type, _LABEL_TYPES)
    if not keys:
        raise BrainMassDataError("No time-series files or keys were found.")
    check_unique_ids(list(keys), what="file keys (file names without extension)")
    label_feature = label_values = None
    if phenotype is None:
        if label_column or site_column:
            raise BrainMassDataError(
                f"label_column={label_column!r} / site_column={site_column!r} need a phenotype table; pass "
                "phenotype_csv=."
            )
        keys, table, scan_ids = sorted(keys), None, sorted(keys)
    else:
        table, id_column, source = _read_phenotype(phenotype, id_column)
        for what, column in (("Label", label_column), ("Site", site_column)):
            if column is not None and column not in table.columns:
                raise BrainMassDataError(
                    f"{what} column {column!r} is not in {source}; its columns are {list(table.columns)}."
                )
        if phenotype_columns is not None:
            absent = [c for c in phenotype_columns if c not in table.columns]
            if absent:
                raise BrainMassDataError(f"phenotype_columns {absent} are not in {source}.")
        keys, table = _join_phenotype(list(keys), table, id_column, source, on_missing)
        if label_column is not None and table[label_column].isna().any():
            no_label = table.loc[table[label_column].isna(), id_column].tolist()
            if on_missing == "error":
                raise BrainMassDataError(
                    f"{len(no_label)} scan(s) have no value in label column {label_column!r}: {_names(no_label)}. "
                    "Fill them in or pass on_missing='warn' or 'drop' to drop them."
                )
            _report_missing(f"scan(s) without a {label_column!r} label", no_label, on_missing)
            keep = table[label_column].notna().to_numpy()
            keys = [k for k, kept in zip(keys, keep) if kept]
            table = table[keep].reset_index(drop=True)
        if table.empty:
            raise BrainMassDataError(f"No scan is left after joining the files with {source}.")
        scan_ids = table[id_column].tolist()
        if label_column is not None:
            label_feature, label_values = _encode_labels(
                table[label_column], scan_ids, label_names, label_type, max_classes
            )

    raw = [read(k) for k in keys]
    arrays = orient_time_series(raw, list(keys), orientation, num_rois)
    report = validate_time_series(arrays, scan_ids, num_rois=num_rois, min_timepoints=min_timepoints)
    num_rois = report["num_rois"]

    features = {
        "subject_id": datasets.Value("string"),
        "time_series": datasets.Array2D(shape=(None, num_rois), dtype="float32"),
        "num_timepoints": datasets.Value("int32"),
        "num_constant_rois": datasets.Value("int32"),
    }
    columns: dict[str, list] = {
        "subject_id": [str(i) for i in scan_ids],
        "time_series": [np.ascontiguousarray(a, dtype=np.float32) for a in arrays],
        "num_timepoints": report["num_timepoints"],
        "num_constant_rois": report["num_constant_rois"],
    }
    if table is not None:
        if label_feature is not None:
            features["label"], columns["label"] = label_feature, label_values
        if site_column is not None:
            features["site"] = datasets.Value("string")
            columns["site"] = [None if pd.isna(v) else str(v) for v in table[site_column]]
        chosen = {id_column, label_column, site_column}
        extra = [c for c in (table.columns if phenotype_columns is None else phenotype_columns) if c not in chosen]
        extra_table = table[extra].copy()
        clashes = [c for c in extra if c in RESERVED_COLUMNS]
        if clashes:
            # A phenotype column called e.g. "label" that was not chosen as the label keeps its data under
            # another name, so the schema columns always mean one thing.
            extra_table = extra_table.rename(columns={c: f"{c}_original" for c in clashes})
            logger.info("Renamed phenotype columns %s to *_original (reserved names).", clashes)
        extra_features, extra_columns = _phenotype_features(extra_table)
        features.update(extra_features)
        columns.update(extra_columns)
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


# ----------------------------------------------------------------------------------------------------------
# Public loaders.
# ----------------------------------------------------------------------------------------------------------

_LOADER_ARGS_DOC = """phenotype_csv: ``.csv``/``.tsv`` path or a ``pandas.DataFrame`` with one row per scan;
            ``None`` loads the time series alone (``subject_id`` = file key).
        id_column: the id column; ``None`` tries ``subject_id``, ``scan_id``, ``scan``, ``participant_id``,
            ``subject``, ``FILE_ID``, ``SUB_ID`` in this order.
        label_column: becomes ``label``: ``ClassLabel`` for text/bool values and for integer codes with at
            most ``max_classes`` distinct values, ``float32`` otherwise (force with ``label_type``).
        site_column: becomes ``site`` (string).
        label_names: class names in index order (fixes the ``ClassLabel`` order; integer codes index it).
        label_type: ``"auto"``, ``"categorical"`` or ``"continuous"``.
        max_classes: most distinct integer codes that ``"auto"`` still treats as classes (default 10).
        phenotype_columns: other columns to keep; ``None`` keeps all of them.
        num_rois: expected ROI count R; also settles ``orientation="auto"``.
        min_timepoints: shortest acceptable scan (default 10).
        on_missing: files with no phenotype row, rows with no file and scans with no label: ``"error"``
            (default), ``"warn"`` (drop them with a warning) or ``"drop"`` (drop them, log at INFO)."""


def _fill_doc(func: Any) -> Any:
    """Put the argument descriptions the loaders share into their docstrings (nilearn's ``fill_doc`` idea)."""
    func.__doc__ = func.__doc__.replace("{loader_args}", _LOADER_ARGS_DOC)
    return func


@_fill_doc
def load_npz_bundle(
    path: str | Path,
    phenotype_csv: str | Path | pd.DataFrame | None = None,
    *,
    id_column: str | None = None,
    label_column: str | None = None,
    site_column: str | None = None,
    label_names: Sequence[str] | None = None,
    label_type: str = "auto",
    max_classes: int = 10,
    phenotype_columns: Sequence[str] | None = None,
    orientation: str = "time_by_roi",
    num_rois: int | None = None,
    min_timepoints: int = 10,
    on_missing: str = "error",
    key_prefix: str = "ts_",
) -> datasets.Dataset:
    """Load one ``.npz`` file that holds one array per scan.

    Keys become scan keys after removing ``key_prefix`` (default ``ts_``). Bundles store ``(num_timepoints,
    num_rois)`` arrays by convention, hence ``orientation="time_by_roi"``; pass ``"auto"`` to detect it.

    Args:
        path: the ``.npz`` file.
        {loader_args}
        orientation: ``"time_by_roi"`` (default), ``"roi_by_time"`` or ``"auto"``.
        key_prefix: removed from the start of each key to get the scan key (default ``"ts_"``).

    Returns:
        A ``datasets.Dataset`` with the module's schema.
    """
    path = Path(path)
    if not path.is_file():
        raise BrainMassDataError(f"Bundle {path} does not exist.")
    try:
        bundle = np.load(path, allow_pickle=False)
        names = list(bundle.files)
    except Exception as exc:
        raise BrainMassDataError(f"Could not read {path} as a .npz bundle: {exc}") from exc
    key_to_name = {(n[len(key_prefix):] if key_prefix and n.startswith(key_prefix) else n): n for n in names}
    if len(key_to_name) != len(names):
        raise BrainMassDataError(f"{path}: keys collide after removing the prefix {key_prefix!r}.")

    def read(key: str) -> np.ndarray:
        try:
            array = bundle[key_to_name[key]]
        except Exception as exc:
            raise BrainMassDataError(f"Could not read key {key_to_name[key]!r} of {path}: {exc}") from exc
        if array.ndim != 2 or array.dtype.kind not in "biuf":
            raise BrainMassDataError(
                f"Key {key_to_name[key]!r} of {path} must be a 2D numeric array; got shape {array.shape}, "
                f"dtype {array.dtype}."
            )
        return array

    with bundle:
        return _build_dataset(
            list(key_to_name), read, phenotype_csv, id_column=id_column, label_column=label_column,
            site_column=site_column, label_names=label_names, label_type=label_type, max_classes=max_classes,
            phenotype_columns=phenotype_columns, orientation=orientation, num_rois=num_rois,
            min_timepoints=min_timepoints, on_missing=on_missing,
        )


def _is_sidecar(path: Path) -> bool:
    # rois.csv (written by extract_time_series) and rois_<atlas>.csv describe ROIs, not a scan.
    return path.suffix.lower() in (".csv", ".tsv") and path.stem.lower().startswith("rois")


def _sidecar_num_rois(folder: Path) -> int | None:
    sidecars = [p for p in folder.iterdir() if p.is_file() and _is_sidecar(p)]
    if len(sidecars) != 1:
        return None
    return len(pd.read_csv(sidecars[0], sep=_separator(sidecars[0])))


def _list_scan_files(folder: Path, file_pattern: str | None, exclude: set[Path]) -> list[Path]:
    if file_pattern is not None:
        files = sorted(p for p in folder.glob(file_pattern) if p.is_file() and p.resolve() not in exclude)
        if not files:
            raise BrainMassDataError(f"No file in {folder} matches file_pattern={file_pattern!r}.")
        return files
    candidates = [p for p in sorted(folder.iterdir())
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in TIME_SERIES_SUFFIXES
                  and p.resolve() not in exclude and not _is_sidecar(p)]
    if not candidates:
        raise BrainMassDataError(
            f"No time-series files in {folder}: expected one of {list(TIME_SERIES_SUFFIXES)} (or one .npz bundle)."
        )
    counts = collections.Counter(p.suffix.lower() for p in candidates).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        raise BrainMassDataError(
            f"{folder} holds as many {counts[0][0]} as {counts[1][0]} files ({dict(counts)}); pass "
            "file_pattern= (e.g. '*.npy') to say which are the time series."
        )
    # The most common format is the time series; a few stray files of another format are not.
    return [p for p in candidates if p.suffix.lower() == counts[0][0]]


@_fill_doc
def load_time_series_folder(
    folder: str | Path,
    phenotype_csv: str | Path | pd.DataFrame | None = None,
    *,
    id_column: str | None = None,
    label_column: str | None = None,
    site_column: str | None = None,
    label_names: Sequence[str] | None = None,
    label_type: str = "auto",
    max_classes: int = 10,
    phenotype_columns: Sequence[str] | None = None,
    orientation: str = "auto",
    num_rois: int | None = None,
    mat_key: str | None = None,
    min_timepoints: int = 10,
    file_pattern: str | None = None,
    on_missing: str = "error",
) -> datasets.Dataset:
    """Load a folder with one time-series file per scan.

    Formats: ``.npy``, ``.1D`` (AFNI/ABIDE), whitespace ``.txt``, ``.csv``/``.tsv`` with or without a header,
    ``.mat`` (variable ``mat_key``). Without ``file_pattern`` the most common supported suffix in the folder is
    read, skipping the phenotype file and ``rois*.csv`` sidecars; a single ``rois*.csv`` sidecar (as written by
    :func:`extract_time_series`) supplies ``num_rois`` when it is not given.

    Args:
        folder: the folder.
        {loader_args}
        orientation: ``"auto"`` (see :func:`orient_time_series`), ``"time_by_roi"`` or ``"roi_by_time"``.
        mat_key: the variable to read from ``.mat`` files (needed when a file holds several 2D variables).
        file_pattern: a glob relative to ``folder`` (e.g. ``"*_rois_aal.1D"``) choosing the files.

    Returns:
        A ``datasets.Dataset`` with the module's schema.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BrainMassDataError(f"Folder {folder} does not exist.")
    exclude = set()
    if phenotype_csv is not None and not isinstance(phenotype_csv, pd.DataFrame):
        exclude.add(Path(phenotype_csv).resolve())
    files = _list_scan_files(folder, file_pattern, exclude)
    by_key = {}
    for p in files:
        if p.stem in by_key:
            raise BrainMassDataError(
                f"Two files have the same name without extension: {by_key[p.stem].name} and {p.name}; pass "
                "file_pattern= to pick one format."
            )
        by_key[p.stem] = p
    if num_rois is None and orientation == "auto":
        num_rois = _sidecar_num_rois(folder)
    return _build_dataset(
        list(by_key), lambda key: read_time_series_file(by_key[key], mat_key), phenotype_csv,
        id_column=id_column, label_column=label_column, site_column=site_column, label_names=label_names,
        label_type=label_type, max_classes=max_classes, phenotype_columns=phenotype_columns,
        orientation=orientation, num_rois=num_rois, min_timepoints=min_timepoints, on_missing=on_missing,
    )


def find_phenotype_file(folder: str | Path) -> Path | None:
    """The one phenotype table in ``folder`` (``subjects.csv``, ``participants.tsv``, ``phenotype*.csv`` …)."""
    folder = Path(folder)
    found = [folder / n for n in PHENOTYPE_FILENAMES if (folder / n).is_file()]
    found += [p for p in sorted(folder.iterdir()) if p not in found and p.suffix.lower() in (".csv", ".tsv")
              and "phenotyp" in p.name.lower()]
    if len(found) > 1:
        raise BrainMassDataError(
            f"{folder} holds several phenotype tables ({', '.join(p.name for p in found)}); pass phenotype_csv=."
        )
    return found[0] if found else None


def load_dataset_auto(
    path: str | Path,
    phenotype_csv: str | Path | pd.DataFrame | None = None,
    **kwargs: Any,
) -> datasets.Dataset:
    """Load whatever ``path`` is: an ``.npz`` bundle, a folder with one bundle, or a folder of per-scan files.

    When ``path`` is a folder and ``phenotype_csv`` is not given, the folder's one phenotype table
    (``subjects.csv``, ``participants.tsv``, ``*phenotyp*.csv``, see :func:`find_phenotype_file`) is used; an
    ``.npz`` file path alone loads without a table. Other keyword arguments go to
    :func:`load_npz_bundle` or :func:`load_time_series_folder`. This is what the demo's ``--data`` calls.
    """
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() != ".npz":
            raise BrainMassDataError(
                f"{path} is a single {path.suffix} file; pass an .npz bundle or the folder that holds the "
                "per-scan files."
            )
        folder, bundle = path.parent, path
    elif path.is_dir():
        folder = path
        bundles = sorted(p for p in path.glob("*.npz") if p.is_file())
        if len(bundles) > 1:
            raise BrainMassDataError(
                f"{path} holds several .npz bundles ({', '.join(p.name for p in bundles)}); pass one of them."
            )
        # A folder with one bundle is a bundle folder (as shipped here: npz + subjects.csv + rois csv).
        bundle = bundles[0] if bundles else None
    else:
        raise BrainMassDataError(f"{path} does not exist.")
    if phenotype_csv is None and path.is_dir():
        phenotype_csv = find_phenotype_file(folder)
        if phenotype_csv is not None:
            logger.info("Using phenotype table %s", phenotype_csv)
    if bundle is not None:
        if kwargs.get("num_rois") is None and kwargs.get("orientation", "time_by_roi") == "auto":
            kwargs["num_rois"] = _sidecar_num_rois(folder)
        return load_npz_bundle(bundle, phenotype_csv, **kwargs)
    return load_time_series_folder(folder, phenotype_csv, **kwargs)


def _bundled_dir(atlas: str) -> Path:
    if atlas not in _BUNDLED_ATLASES:
        raise BrainMassDataError(f"No bundled data for atlas {atlas!r}; available: {sorted(_BUNDLED_ATLASES)}.")
    return _BUNDLED_ATLASES[atlas]


def load_devfmri(atlas: str = "aal116") -> datasets.Dataset:
    """The bundled cohort: nilearn's development fMRI set (OpenNeuro ds000228, CC0), AAL-116 time series.

    155 movie-watching scans (not resting state), 122 children and 33 adults, T = 168 (TR 2 s), R = 116,
    z-scored per ROI. ``label`` is ``ClassLabel(names=["child", "adult"])``, ``site`` is ``"ds000228"``,
    ``subject_id`` is ``sub-pixarNNN``.
    """
    folder = _bundled_dir(atlas)
    table = pd.read_csv(folder / "subjects.csv", dtype={"subject": str})
    table["site"] = "ds000228"
    return load_npz_bundle(
        folder / f"timeseries_{atlas}.npz", table, id_column="subject", label_column="label",
        site_column="site", label_names=["child", "adult"], label_type="categorical", phenotype_columns=[],
        num_rois=len(bundled_roi_names(atlas)),
    )


def bundled_roi_names(atlas: str = "aal116") -> list[str]:
    """ROI names of a bundled atlas, in column order of ``time_series`` (AAL-116: ``Precentral_L`` …)."""
    table = pd.read_csv(_bundled_dir(atlas) / f"rois_{atlas}.csv")
    return table["name"].astype(str).tolist()


def time_series_list(dataset: datasets.Dataset, batch_size: int = 512) -> list[np.ndarray]:
    """The ``time_series`` column as a list of float32 ``(num_timepoints, num_rois)`` numpy arrays.

    Reads through the numpy formatter in batches, so it respects ``select``/``filter`` and variable T.
    """
    if "time_series" not in dataset.column_names:
        raise BrainMassDataError(
            f"The dataset has no 'time_series' column (columns: {dataset.column_names}); load it with a "
            "brainmass_hf.data loader."
        )
    formatted = dataset.with_format("numpy", columns=["time_series"])
    out: list[np.ndarray] = []
    for start in range(0, len(dataset), batch_size):
        batch = formatted[start:start + batch_size]["time_series"]
        # Equal T gives one 3D array, variable T an object array of 2D arrays: both iterate per scan.
        out.extend(np.ascontiguousarray(a, dtype=np.float32) for a in batch)
    return out


# ----------------------------------------------------------------------------------------------------------
# NIfTI → time series.
# ----------------------------------------------------------------------------------------------------------


def _scan_id_from_path(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _load_atlas(atlas_img: Any) -> tuple[Any, np.ndarray]:
    import nibabel as nib

    if isinstance(atlas_img, (str, Path)):
        if not Path(atlas_img).is_file():
            raise BrainMassDataError(f"Atlas {atlas_img} does not exist.")
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
        if not np.all(np.isfinite(data)) or not np.all(data == np.round(data)):
            raise BrainMassDataError(
                "The atlas holds non-integer values, so it is not a label image (it may be a probability map). "
                "Pass a 3D image whose voxels hold integer region labels (0 = background)."
            )
    elif data.dtype.kind not in "biu":
        raise BrainMassDataError(f"The atlas must hold integer labels; got dtype {data.dtype}.")
    data = data.astype(np.int64)
    if (data < 0).any():
        raise BrainMassDataError("The atlas holds negative labels; labels must be >= 0 (0 = background).")
    labels = np.unique(data)
    labels = labels[labels != 0]
    if labels.size == 0:
        raise BrainMassDataError("The atlas holds no region: every voxel is 0 (background).")
    atlas = nib.Nifti1Image(data.astype(np.int32), atlas_img.affine)
    return atlas, labels


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
    import nibabel as nib
    from tqdm.auto import tqdm

    single = isinstance(img_paths, (str, Path)) or hasattr(img_paths, "affine")
    imgs = [img_paths] if single else list(img_paths)
    if not imgs:
        raise BrainMassDataError("img_paths is empty; pass at least one 4D NIfTI scan.")
    if subject_ids is None:
        subject_ids = [_scan_id_from_path(Path(i)) if isinstance(i, (str, Path)) else f"scan{k:03d}"
                       for k, i in enumerate(imgs)]
    subject_ids = [str(s) for s in subject_ids]
    if len(subject_ids) != len(imgs):
        raise BrainMassDataError(f"Got {len(imgs)} scans but {len(subject_ids)} subject_ids.")
    check_unique_ids(subject_ids, what="subject_ids")
    if confounds is not None:
        confounds = list(confounds)
        if len(confounds) != len(imgs):
            raise BrainMassDataError(
                f"confounds must hold one entry (path, array or None) per scan: got {len(confounds)} for "
                f"{len(imgs)} scans."
            )
        for scan_id, c in zip(subject_ids, confounds):
            if isinstance(c, (str, Path)) and not Path(c).is_file():
                raise BrainMassDataError(f"Confounds file {c} for scan {scan_id!r} does not exist.")
    else:
        confounds = [None] * len(imgs)
    if standardize is True:
        standardize = "zscore_sample"
    if standardize is None:
        standardize = False
    _check_choice("standardize", standardize, (False, "zscore_sample", "zscore", "psc"))

    # Every scan is checked from its header (no voxel data read) before any extraction starts.
    missing = [str(i) for i in imgs if isinstance(i, (str, Path)) and not Path(i).is_file()]
    if missing:
        raise BrainMassDataError(f"Scan files do not exist: {_names(missing)}.")
    headers = []
    for scan_id, img in zip(subject_ids, imgs):
        try:
            loaded = nib.load(str(img)) if isinstance(img, (str, Path)) else img
        except Exception as exc:
            raise BrainMassDataError(f"Could not read scan {scan_id!r} ({img}): {exc}") from exc
        if len(loaded.shape) != 4:
            raise BrainMassDataError(
                f"Scan {scan_id!r} has shape {loaded.shape}; a 4D image (x, y, z, time) is needed."
            )
        headers.append(loaded)
    if (low_pass is not None or high_pass is not None) and t_r is None:
        t_r = float(headers[0].header.get_zooms()[3])
        if t_r <= 0:
            raise BrainMassDataError("low_pass/high_pass need t_r (seconds) and the scan header has none; pass t_r=.")
        logger.info("Using t_r=%.3f s from the header of %r", t_r, subject_ids[0])

    atlas, labels = _load_atlas(atlas_img)
    if roi_names is None:
        roi_names = [str(v) for v in labels]
    roi_names = [str(n) for n in roi_names]
    if len(roi_names) != len(labels):
        raise BrainMassDataError(
            f"roi_names has {len(roi_names)} names but the atlas has {len(labels)} labels; give one name per "
            "label, in sorted label order."
        )
    column_of = {int(v): k for k, v in enumerate(labels)}

    from nilearn.image import resample_to_img
    from nilearn.maskers import NiftiLabelsMasker

    maskers: dict[tuple, tuple[Any, list[int]]] = {}
    outputs: list[Any] = []
    if output_dir is not None:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
    for scan_id, source, img, conf in tqdm(list(zip(subject_ids, imgs, headers, confounds)),
                                           desc="Extracting time series", unit="scan", disable=not show_progress):
        grid = (tuple(img.shape[:3]), np.round(img.affine, 5).tobytes())
        if grid not in maskers:
            same = img.shape[:3] == atlas.shape and np.allclose(img.affine, atlas.affine, atol=1e-5)
            grid_atlas = atlas
            if not same:
                # Label values must survive resampling, hence nearest neighbour (nilearn's choice for labels).
                grid_atlas = resample_to_img(atlas, img, interpolation="nearest", force_resample=True,
                                             copy_header=True)
                logger.info("Resampled the atlas to the grid of scan %r (nearest neighbour).", scan_id)
            present = [int(v) for v in np.unique(np.asanyarray(grid_atlas.dataobj)) if v != 0]
            lost = [roi_names[column_of[v]] for v in labels if int(v) not in present]
            if lost:
                message = (f"Scan {scan_id!r} (and any scan on the same grid): {len(lost)} atlas label(s) cover no "
                           f"voxel after resampling to the scan: {_names(lost)}. Their columns are zeros.")
                _warn(message)
            masker = NiftiLabelsMasker(
                # nilearn spells "no standardization" None (False is deprecated there).
                labels_img=grid_atlas, background_label=0, standardize=standardize or None, detrend=detrend,
                low_pass=low_pass, high_pass=high_pass, t_r=t_r, resampling_target=None,
                keep_masked_labels=False,
            ).fit()
            maskers[grid] = (masker, present)
        masker, present = maskers[grid]
        try:
            signals = masker.transform(str(source) if isinstance(source, Path) else source, confounds=conf)
        except Exception as exc:
            raise BrainMassDataError(f"Extraction failed for scan {scan_id!r}: {type(exc).__name__}: {exc}") from exc
        region_ids = masker.region_ids_
        series = np.zeros((signals.shape[0], len(labels)), dtype=np.float32)
        for k in range(signals.shape[1]):
            series[:, column_of[int(region_ids[k])]] = signals[:, k]
        if output_dir is not None:
            target = output_dir / f"{scan_id}.npy"
            np.save(target, series)
            outputs.append(target)
        else:
            outputs.append(series)
    if output_dir is not None:
        pd.DataFrame({"index0": range(len(labels)), "label_value": labels, "name": roi_names}).to_csv(
            output_dir / "rois.csv", index=False
        )
    return outputs


def resolve_dataset(dataset: Any) -> Any:
    """A `datasets.Dataset` as is; `"devfmri"` → the bundled cohort; a `save_to_disk` folder →
    `load_from_disk`; any other path → `brainmass_hf.data.load_dataset_auto` (npz bundle or folder)."""
    if not isinstance(dataset, (str, os.PathLike)):
        return dataset
    if str(dataset) == "devfmri":
        return load_devfmri()
    path = Path(dataset)
    if (path / "state.json").is_file() and (path / "dataset_info.json").is_file():
        from datasets import load_from_disk

        return load_from_disk(str(path))
    return load_dataset_auto(path)
