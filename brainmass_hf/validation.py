"""Input checks shared by the loaders, the feature extractor, the collators and the model entry points.

numpy and the standard library only: this module ships as remote code with every checkpoint, next to the
configuration, modeling, connectivity and processing files, so it must import nothing else.

Every check collects *all* problems before raising, so a cohort with three bad scans gives one
:class:`BrainMassDataError` that names the three scans and says what to change, not three runs that each find one.

The one constant-ROI rule lives here: a ROI whose standard deviation over the valid time points is below
:data:`CONSTANT_ROI_STD` carries no signal (e.g. a parcel outside the field of view); its FC is undefined, so it is
counted and reported, and a scan whose every ROI is constant (all zeros, a failed extraction) is an error.
"""

from __future__ import annotations

import collections
import sys
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "CONSTANT_ROI_STD",
    "FLOAT32_MAX",
    "MAX_ABS_SIGNAL",
    "BrainMassDataError",
    "BrainMassDataWarning",
    "format_names",
    "check_unique_ids",
    "constant_roi_mask",
    "count_constant_rois",
    "describe_nonfinite",
    "validate_time_series",
    "validate_connectivity",
    "label_spelling_groups",
    "check_labels",
    "check_no_missing",
    "encode_class_labels",
    "looks_like_connectivity",
]

# Below this standard deviation over time a ROI is constant (the same threshold as nilearn's zero-variance guard).
CONSTANT_ROI_STD = 1e-8
# Values beyond this become inf when cast to float32 (the dtype every model input has), so they are refused
# before the cast: after it they would look like an inf the user never wrote.
FLOAT32_MAX = float(np.finfo(np.float32).max)
# Larger values are float32-finite, but FC sums T products of two of them, which overflows float32 (sqrt(3.4e38) is
# 1.8e19; 1e15 leaves room for 3e8 time points) and turns the FC into NaN. No fMRI signal comes near it.
MAX_ABS_SIGNAL = 1e15
# Relative tolerance of the symmetry check of given connectivity (float32 FC from any library is symmetric to ~1e-7).
SYMMETRY_RTOL = 1e-4


class BrainMassDataError(ValueError):
    """Input data that cannot be used as given; the message names the file or scan and the fix."""


class BrainMassDataWarning(UserWarning):
    """Usable input with something worth knowing (constant ROIs, dropped scans, merged label spellings)."""


def warn(message: str) -> None:
    """Warn with the user's calling line as the location, however deep in ``brainmass_hf`` the cause was found."""
    frame, level = sys._getframe(1), 2
    while frame is not None and str(frame.f_globals.get("__name__", "")).split(".")[0] == "brainmass_hf":
        frame, level = frame.f_back, level + 1
    warnings.warn(message, BrainMassDataWarning, stacklevel=level)


def format_names(items: Iterable[Any], limit: int = 10) -> str:
    """``'a', 'b', 'c' (and 4 more)``: lists in messages stay readable on big cohorts."""
    items = list(items)
    shown = ", ".join(repr(str(x)) for x in items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


def _join_problems(problems: Sequence[str], limit: int = 10) -> str:
    shown = "; ".join(problems[:limit])
    return shown + (f"; (and {len(problems) - limit} more)" if len(problems) > limit else "")


def check_unique_ids(ids: Sequence[str], what: str = "scan ids") -> None:
    """Raise if any id occurs twice; ``what`` names the source (e.g. the phenotype file) in the message."""
    dups = [i for i, c in collections.Counter(ids).items() if c > 1]
    if dups:
        raise BrainMassDataError(
            f"Duplicated {what}: {format_names(dups)} occur more than once. Each scan needs a unique id; "
            "remove the duplicates or choose a per-scan id column."
        )


def constant_roi_mask(array: np.ndarray) -> np.ndarray:
    """Boolean ``(num_rois,)``: which columns of a ``(num_timepoints, num_rois)`` array have std < 1e-8."""
    array = np.asarray(array)
    # A column's std is at least its range / sqrt(2 T), so a column whose range is above that bound is not constant:
    # the exact std (float64, so that raw-scale data ~1e3 keeps its variance) is needed only for the others.
    # (Two reductions per column instead of a float64 copy: the collator runs this for every scan of every batch.)
    spread = array.max(axis=0) - array.min(axis=0) if array.size else np.zeros(array.shape[1:])
    maybe_constant = ~(spread >= CONSTANT_ROI_STD * np.sqrt(2.0 * max(array.shape[0], 1)))
    mask = np.zeros(array.shape[1], dtype=bool)
    if maybe_constant.any():
        mask[maybe_constant] = np.asarray(array[:, maybe_constant], dtype=np.float64).std(axis=0) < CONSTANT_ROI_STD
    return mask


def count_constant_rois(array: np.ndarray) -> int:
    """Number of constant ROIs (see :func:`constant_roi_mask`) of one ``(num_timepoints, num_rois)`` array."""
    return int(constant_roi_mask(array).sum())


def describe_nonfinite(array: np.ndarray, axes: tuple[str, str] = ("time point", "ROI")) -> str | None:
    """``None`` when every value is finite and at most :data:`MAX_ABS_SIGNAL` (1e15) in size, else e.g.
    ``"2 NaN values, first at time point 3, ROI 1"`` (``axes`` names the two axes of a 2D array).

    Values beyond float32 range are reported as such (they would become inf in the float32 cast); values between
    1e15 and that range are float32-finite but overflow the FC products, so they are reported too.

    The one finite check of the package: loaders, the feature extractor and the model entry points call it."""
    array = np.asarray(array)
    if array.dtype.kind not in "iuf":
        return None  # other dtypes are refused by the dtype check
    with np.errstate(invalid="ignore", over="ignore"):
        magnitude = np.abs(array if array.dtype.kind == "f" else array.astype(np.float64))
    bad = ~(magnitude <= MAX_ABS_SIGNAL)  # NaN compares False, so it is bad too
    if not bad.any():
        return None
    infinite = np.isinf(array)
    beyond = (magnitude > FLOAT32_MAX) & ~infinite
    counts = {"NaN values": int(np.isnan(array).sum()), "Inf values": int(infinite.sum()),
              "values beyond float32 range (|x| > 3.4e38; rescale the data)": int(beyond.sum()),
              f"values too large for FC (|x| > {MAX_ABS_SIGNAL:.0e}; rescale the data, e.g. z-score each ROI)":
                  int((bad & np.isfinite(magnitude) & ~beyond).sum())}
    kinds = " and ".join(f"{n} {kind}" for kind, n in counts.items() if n)
    first = np.argwhere(bad)[0]
    where = (f"first at {axes[0]} {first[0]}, {axes[1]} {first[1]}" if array.ndim == 2
             else f"first at index {tuple(int(i) for i in first)}")
    return f"{kinds}, {where}"


def looks_like_connectivity(array: np.ndarray) -> bool:
    """Whether a 2D array is square and symmetric: a connectivity matrix (e.g. a mean FC stored beside the scans),
    which a time series of real signal never is."""
    array = np.asarray(array)
    return array.ndim == 2 and array.shape[0] == array.shape[1] >= 2 and _is_symmetric(array)


def _is_symmetric(matrix: np.ndarray) -> bool:
    a = matrix.astype(np.float64, copy=False)
    with np.errstate(invalid="ignore", over="ignore"):
        return bool(np.allclose(a, a.T, rtol=SYMMETRY_RTOL, atol=1e-6))


def _as_numeric(array: Any) -> tuple[np.ndarray | None, str | None]:
    """(array, None) or (None, problem) for one scan, before any cast."""
    try:
        a = np.asarray(array)
    except Exception as exc:  # ragged lists and the like
        return None, f"(not an array: {type(exc).__name__}: {exc}): pass a 2D numeric array"
    if a.dtype.kind == "c":
        return None, ("(complex values): pass the real signal (e.g. np.real(x) or np.abs(x), whichever your "
                      "pipeline means), not a complex array")
    if a.dtype.kind not in "iuf":
        return None, f"(non-numeric dtype {a.dtype}): pass a 2D float array (time × ROI)"
    return a, None


def _shape_problem(array: Any) -> tuple[np.ndarray | None, str | None]:
    """(2D numeric array, None) or (None, problem) for one scan."""
    a, problem = _as_numeric(array)
    if problem is None and a.ndim != 2:
        return None, (f"(shape {a.shape}): a scan must be 2D (num_timepoints, num_rois): pass one array per scan, "
                      "time points as rows")
    return a, problem


def _value_problems(a: np.ndarray, expected: int, source: str, min_timepoints: int) -> list[str]:
    """What is wrong with one 2D numeric scan: ROI count, length, values, a connectivity matrix in its place."""
    problems = []
    if looks_like_connectivity(a) and not constant_roi_mask(a).all():
        return [f"(square and symmetric, {a.shape[0]} × {a.shape[1]}: a connectivity matrix, not a time series): "
                "keep only (num_timepoints, num_rois) scans in the data (remove this key or file), and pass FC "
                "matrices to the model as connectivity="]
    if a.shape[1] != expected:
        problems.append(f"(R={a.shape[1]}): {source} R={expected} ROIs (columns); extract every scan with the same "
                        "atlas, drop the scan, or check the orientation (rows must be time points)")
    if a.shape[0] < min_timepoints:
        problems.append(f"(T={a.shape[0]}): fewer than the {min_timepoints} time points needed; drop the scan or "
                        "lower min_timepoints (or check the orientation)")
    nonfinite = describe_nonfinite(a)
    if nonfinite is not None:
        problems.append(f"({nonfinite}): fix the extraction (e.g. an empty parcel or a division by zero) or drop "
                        "the scan")
    elif a.shape[0] >= 2 and constant_roi_mask(a).all():  # one time point is constant by definition: T says it
        what = "all zeros" if not a.any() else "constant in every ROI"
        problems.append(f"({what}): no connectivity can be computed, so the extraction failed for this scan; "
                        "re-extract or drop it")
    return problems


def _warn_constant_rois(scans: dict[str, np.ndarray]) -> None:
    counts = {i: count_constant_rois(a) for i, a in scans.items()}
    flagged = {i: c for i, c in counts.items() if c}
    if flagged:
        detail = ", ".join(f"{i!r} ({c})" for i, c in list(flagged.items())[:20])
        more = f" (and {len(flagged) - 20} more)" if len(flagged) > 20 else ""
        warn(f"{len(flagged)} scan(s) have constant ROIs (std < {CONSTANT_ROI_STD:g} over time; count in "
             f"brackets): {detail}{more}. They are kept; their FC rows are 0 (see num_constant_rois).")


def validate_time_series(
    arrays: Sequence[Any],
    ids: Sequence[str] | None = None,
    *,
    num_rois: int | None = None,
    min_timepoints: int = 10,
    warn_constant_rois: bool = True,
) -> list[np.ndarray]:
    """Check a cohort of ``(num_timepoints, num_rois)`` scans before anything is computed from them.

    Args:
        arrays: one array-like per scan, time × ROI; ``num_timepoints`` may differ per scan.
        ids: one id per scan, used in every message (default ``"scan #0"``, ``"scan #1"``, …).
        num_rois: the expected ROI count R; ``None`` takes the majority across scans.
        min_timepoints: the shortest acceptable scan (default 10). Callers that train on pFC views pass
            ``connectivity.min_scan_length(config)``.
        warn_constant_rois: report scans with some constant ROIs in one :class:`BrainMassDataWarning`.

    Returns:
        The scans as C-contiguous float32 ``(num_timepoints, num_rois)`` arrays, in input order.

    Raises:
        BrainMassDataError: one error naming every bad scan with its problem and the fix: not 2D, complex,
            non-numeric, NaN/Inf, beyond float32 range or above 1e15 in size (checked before the cast), every ROI
            constant (e.g. all zeros), square and symmetric (a connectivity matrix, not a scan), fewer than
            ``min_timepoints`` rows, or an ROI count other than ``num_rois`` (or than the majority); also a count
            mismatch between ``arrays`` and ``ids``, duplicated ids, no scans.
    """
    arrays = list(arrays)
    ids = [f"scan #{k}" for k in range(len(arrays))] if ids is None else [str(i) for i in ids]
    if len(arrays) != len(ids):
        raise BrainMassDataError(f"Got {len(arrays)} scans but {len(ids)} ids; pass one id per scan.")
    if not arrays:
        raise BrainMassDataError("No scans to validate: the list of scans is empty; pass at least one scan.")
    check_unique_ids(ids)
    problems: dict[str, list[str]] = collections.defaultdict(list)
    numeric: dict[str, np.ndarray] = {}
    for scan_id, array in zip(ids, arrays):
        a, problem = _shape_problem(array)
        if problem is not None:
            problems[scan_id].append(problem)
        else:
            numeric[scan_id] = a
    if numeric:
        if num_rois is None:
            # The majority is the atlas the cohort was meant to use; the minority are the scans to fix.
            rois = collections.Counter(a.shape[1] for a in numeric.values())
            expected, source = rois.most_common(1)[0][0], "the majority of scans have"
        else:
            expected, source = int(num_rois), "num_rois is"
        for scan_id, a in numeric.items():
            problems[scan_id] += _value_problems(a, expected, source, min_timepoints)
    problems = {i: p for i, p in problems.items() if p}
    if problems:
        detail = _join_problems([f"{i!r} {' and '.join(problems[i])}" for i in ids if i in problems])
        raise BrainMassDataError(f"{len(problems)} of {len(arrays)} scan(s) cannot be used: {detail}.")
    if warn_constant_rois:
        _warn_constant_rois(numeric)
    return [np.ascontiguousarray(numeric[i], dtype=np.float32) for i in ids]


def validate_connectivity(
    matrices: Any,
    ids: Sequence[str] | None = None,
    *,
    num_rois: int | None = None,
    positive_definite: bool = False,
) -> np.ndarray:
    """Check FC matrices given directly (one ``(R, R)`` or a batch ``(N, R, R)``, array or list).

    Args:
        positive_definite: also require every matrix to be positive definite (a model with
            ``input_space="tangent"`` takes the matrix logarithm of its input).

    Returns:
        float32 ``(N, R, R)``.

    Raises:
        BrainMassDataError: naming every bad matrix: not square, R other than ``num_rois``, complex or non-numeric,
            NaN/Inf, beyond float32 range or above 1e15 in size, not symmetric (relative tolerance 1e-4), or (with
            ``positive_definite``) a smallest eigenvalue at or below 0.
    """
    a, problem = _as_numeric(matrices)
    if problem is not None:
        raise BrainMassDataError(f"The connectivity input {problem}.")
    shape = a.shape
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[1] != a.shape[2]:
        raise BrainMassDataError(
            f"Connectivity must be (num_rois, num_rois) or (batch_size, num_rois, num_rois); got shape {shape}. "
            "Pass square FC matrices (or time series through the feature extractor)."
        )
    if num_rois is not None and a.shape[1] != num_rois:
        raise BrainMassDataError(
            f"Connectivity is {a.shape[1]} × {a.shape[2]} but the model expects num_rois={num_rois}: compute FC with "
            "the atlas the model was pretrained on."
        )
    ids = [f"matrix #{k}" for k in range(len(a))] if ids is None else [str(i) for i in ids]
    if len(ids) != len(a):
        raise BrainMassDataError(f"Got {len(a)} connectivity matrices but {len(ids)} ids; pass one id per matrix.")
    problems = [f"{i!r} ({d})" for i, m in zip(ids, a) if (d := describe_nonfinite(m, ("row", "column"))) is not None]
    if problems:
        raise BrainMassDataError(
            f"Non-finite connectivity: {_join_problems(problems)}. Recompute FC for these scans (a constant or "
            "too-short scan gives NaN in some FC code) or drop them."
        )
    asymmetric = [f"{i!r} ({_asymmetry(m)})" for i, m in zip(ids, a) if not _is_symmetric(m)]
    if asymmetric:
        raise BrainMassDataError(
            f"Connectivity is not symmetric: {_join_problems(asymmetric)}. FC matrices are symmetric; pass FC "
            "computed from time series (BrainMassFeatureExtractor or brainmass_hf.connectivity), not a directed or "
            "transposed-and-cropped matrix."
        )
    if positive_definite:
        smallest = np.linalg.eigvalsh(a.astype(np.float64))[:, 0]
        singular = [f"{i!r} (smallest eigenvalue {v:.3g})" for i, v in zip(ids, smallest) if not v > 0]
        if singular:
            raise BrainMassDataError(
                f"Connectivity is not positive definite: {_join_problems(singular)}. This model maps FC to the "
                "tangent space (input_space='tangent'), which needs positive definite matrices: compute FC with "
                "Ledoit-Wolf shrinkage (fc_kind='ledoit_wolf', what BrainMassFeatureExtractor does), or pass the time "
                "series instead; plain correlation of a scan with fewer time points than ROIs is singular."
            )
    return np.ascontiguousarray(a, dtype=np.float32)


def _asymmetry(matrix: np.ndarray) -> str:
    diff = np.abs(matrix.astype(np.float64) - matrix.T.astype(np.float64))
    row, col = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return f"|c - cᵀ| up to {diff[row, col]:.3g}, at row {row}, column {col}"


def _spelling_key(text: str) -> str:
    return "".join(str(text).split()).casefold()


def label_spelling_groups(values: Iterable[Any], canonical: Iterable[str] | None = None) -> dict[str, str]:
    """Map every text label to its canonical spelling when spellings differ only in case or whitespace.

    ``["ASD", "asd ", "TD"]`` → ``{"ASD": "ASD", "asd ": "ASD", "TD": "TD"}``: a spelling in ``canonical`` (e.g.
    given class names) wins, else the group's most frequent spelling."""
    counts = collections.Counter(str(v) for v in values)
    preferred = {_spelling_key(n): str(n) for n in (canonical or ())}
    groups: dict[str, list[str]] = collections.defaultdict(list)
    for text in counts:
        groups[_spelling_key(text)].append(text)
    mapping = {}
    for key, spellings in groups.items():
        # ties: a spelling without outer whitespace, then the first in sorted order
        winner = preferred.get(key) or sorted(spellings, key=lambda s: (-counts[s], s != s.strip(), s))[0]
        mapping.update({s: winner for s in spellings})
    return mapping


def check_labels(
    labels: Sequence[Any], what: str = "the label column", *, min_per_class: int = 1, min_classes: int = 2
) -> list[str]:
    """Check classification labels: at least two classes, each with ``min_per_class`` scans.

    Returns:
        The sorted class values as text.

    Raises:
        BrainMassDataError: with one class ("a classifier needs two or more; use a regression label_type or
            another column"), or with classes below ``min_per_class`` (named).
    """
    counts = collections.Counter(str(v) for v in labels)
    if not counts:
        raise BrainMassDataError(f"{what} has no values: the data holds no scans. Pass a cohort with scans of two or "
                                 "more classes.")
    if len(counts) < min_classes:
        only = next(iter(counts), "nothing")
        raise BrainMassDataError(
            f"{what} holds a single class ({only!r}) across {len(labels)} scan(s); classification needs two or "
            "more classes. Choose another label column, add scans of the other classes, or use "
            "label_type='continuous' for a score."
        )
    rare = sorted(c for c, n in counts.items() if n < min_per_class)
    if rare:
        raise BrainMassDataError(
            f"Class(es) {format_names(rare)} of {what} have fewer than {min_per_class} scans; add scans or merge "
            "or drop these classes."
        )
    return sorted(counts)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and np.isnan(value))


def check_no_missing(values: Sequence[Any], ids: Sequence[str], what: str, fix: str) -> None:
    """Raise naming the scans whose value is ``None`` or NaN (a blank cell), e.g. a site column with gaps, which
    would otherwise become a site called ``"None"``. ``fix`` says what to do."""
    missing = [str(i) for i, v in zip(ids, values) if _is_missing(v)]
    if missing:
        raise BrainMassDataError(f"{len(missing)} scan(s) have no value in {what}: {format_names(missing)}. {fix}")


def _class_texts(values: Sequence[Any], class_names: Sequence[str] | None, what: str) -> list[str]:
    """Every label as text: integers as ``"1"`` (or ``class_names[code]``), text as is; a non-integral number is a
    score, not a class."""
    texts = []
    for v in values:
        if isinstance(v, (bool, np.bool_)):
            texts.append(str(bool(v)))
        elif isinstance(v, (int, np.integer)) or (isinstance(v, (float, np.floating)) and float(v).is_integer()):
            code = int(v)
            named = class_names is not None and 0 <= code < len(class_names) and str(code) not in class_names
            texts.append(str(class_names[code]) if named else str(code))
        elif isinstance(v, (float, np.floating)):
            raise BrainMassDataError(
                f"{what} holds continuous values (e.g. {v!r}); classification needs classes: bin the score into "
                "classes first, pick a categorical column, or use label_type='continuous' where a score is meant."
            )
        else:
            texts.append(str(v))
    return texts


def encode_class_labels(
    values: Sequence[Any],
    what: str = "the label column",
    *,
    ids: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    min_per_class: int = 1,
    min_classes: int = 2,
    drop_unused: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """The one place where classification labels are checked and encoded (loaders, ``evaluate``, ``finetune``, the
    CLI): text, bool or integer labels → integer codes ``(N,)`` and class names.

    Args:
        values: one label per scan: text, bool, integers, or integer codes into ``class_names`` (a ``ClassLabel``).
        what: the column, as messages name it (e.g. ``"label column 'dx'"``).
        ids: scan ids for messages (default ``"row <k>"``).
        class_names: the classes in code order; default the sorted distinct values (integers numerically).
        min_per_class: fewest scans a class present in the data must have (2 for evaluation splits).
        min_classes: 2 (default) refuses a one-class column; 1 allows it (a subset loaded with given class names).
        drop_unused: leave out classes of ``class_names`` that no scan has (and re-code the rest in order).

    Spellings that differ only in case or whitespace (``"ASD"``, ``"asd"``, ``"TD "``, ``"Td"``) are one class typed
    several ways: they are merged into the class name (or the most frequent spelling) with a
    :class:`BrainMassDataWarning` naming the column and every merged spelling.

    Raises:
        BrainMassDataError: missing values (named scans), continuous values, values not in ``class_names``, fewer
            than two classes present, or classes with fewer than ``min_per_class`` scans.
    """
    values = list(values)
    ids = [f"row {k}" for k in range(len(values))] if ids is None else [str(i) for i in ids]
    check_no_missing(values, ids, what, "Fill them in or drop these scans.")
    texts = _class_texts(values, class_names, what)
    mapping = label_spelling_groups(texts, canonical=class_names)
    merged = sorted({(t, c) for t, c in mapping.items() if t != c})
    if merged:
        warn(f"{what}: label spellings that differ only in case or whitespace were merged into one class: "
             + ", ".join(f"{t!r} -> {c!r}" for t, c in merged) + ". Fix the table to silence this.")
    texts = [mapping[t] for t in texts]
    if class_names is None:
        distinct = set(texts)
        integral = all(t.lstrip("-").isdigit() for t in distinct)
        class_names = sorted(distinct, key=int) if integral else sorted(distinct)
    names = [str(n) for n in class_names]
    unknown = [f"{i!r}={t}" for i, t in zip(ids, texts) if t not in names]
    if unknown:
        raise BrainMassDataError(
            f"Values of {what} not in the class names {names}: {', '.join(unknown[:10])}. Add them to label_names "
            "or fix the table."
        )
    check_labels(texts, what=what, min_per_class=min_per_class, min_classes=min_classes)
    if drop_unused:
        present = set(texts)
        names = [n for n in names if n in present]
    index = {n: k for k, n in enumerate(names)}
    return np.asarray([index[t] for t in texts], dtype=np.int64), names
