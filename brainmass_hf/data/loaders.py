"""Loaders: files, bundles and the bundled cohort → a ``datasets.Dataset`` with the schema of
:mod:`brainmass_hf.data`.

Every loader ends in :func:`_build_dataset` (join the phenotype table, read, orient, validate, build), so the
checks and the schema are written once. :func:`validate_dataset` runs the same checks on a dataset that was not
built here (``load_from_disk``, the Hub).
"""

from __future__ import annotations

import collections
import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd

from ..configuration_brainmass import BrainMassConfig
from ..connectivity import min_scan_length
from ..validation import (
    BrainMassDataError,
    check_no_missing,
    check_unique_ids,
    count_constant_rois,
    encode_class_labels,
    format_names,
    validate_time_series,
)
from .phenotype import (
    encode_labels,
    find_phenotype_file,
    join_phenotype,
    phenotype_features,
    read_phenotype,
    report_missing,
)
from .readers import (
    ORIENTATIONS,
    TIME_SERIES_SUFFIXES,
    check_choice,
    orient_time_series,
    read_time_series_file,
    separator,
)

logger = logging.getLogger(__name__)

__all__ = [
    "load_npz_bundle",
    "load_time_series_folder",
    "load_dataset_auto",
    "load_devfmri",
    "bundled_roi_names",
    "find_phenotype_file",
    "time_series_list",
    "resolve_dataset",
    "validate_dataset",
    "default_min_timepoints",
    "select_sites",
    "pretraining_corpus",
    "class_labels",
    "with_class_labels",
    "scan_ids",
]

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "bundled"
_BUNDLED_ATLASES = {"aal116": BUNDLED_DIR / "devfmri_aal116"}
RESERVED_COLUMNS = ("subject_id", "time_series", "num_timepoints", "num_constant_rois", "label", "site")
_ON_MISSING = ("error", "warn", "drop")
_LABEL_TYPES = ("auto", "categorical", "continuous")


def default_min_timepoints() -> int:
    """The loaders' shortest acceptable scan: what pretraining with the default config needs for a pFC view
    (``connectivity.min_scan_length(BrainMassConfig())``, 12 time points), so a loaded cohort never fails later."""
    return min_scan_length(BrainMassConfig(), pfc=True)


def _check_columns(table: pd.DataFrame, source: str, label_column, site_column, phenotype_columns) -> None:
    for what, column in (("Label", label_column), ("Site", site_column)):
        if column is not None and column not in table.columns:
            raise BrainMassDataError(
                f"{what} column {column!r} is not in {source}; its columns are {list(table.columns)}: pass "
                f"{what.lower()}_column= naming one of them."
            )
    if phenotype_columns is not None:
        absent = [c for c in phenotype_columns if c not in table.columns]
        if absent:
            raise BrainMassDataError(
                f"phenotype_columns {absent} are not in {source}; its columns are {list(table.columns)}."
            )


def _drop_unlabelled(keys: list[str], table: pd.DataFrame, id_column: str, label_column: str | None,
                     on_missing: str) -> tuple[list[str], pd.DataFrame]:
    """Scans without a label: an error (``on_missing="error"``), else dropped with a warning or a log line."""
    if label_column is None or not table[label_column].isna().any():
        return keys, table
    no_label = table.loc[table[label_column].isna(), id_column].tolist()
    if on_missing == "error":
        raise BrainMassDataError(
            f"{len(no_label)} scan(s) have no value in label column {label_column!r}: {format_names(no_label)}. "
            "Fill them in or pass on_missing='warn' or 'drop' to drop them."
        )
    report_missing(f"scan(s) without a {label_column!r} label", no_label, on_missing)
    keep = table[label_column].notna().to_numpy()
    return [k for k, kept in zip(keys, keep) if kept], table[keep].reset_index(drop=True)


def _join_table(keys: Sequence[str], phenotype: Any, id_column: str | None, label_column: str | None,
                site_column: str | None, phenotype_columns: Sequence[str] | None, on_missing: str):
    """Read the phenotype table and join it to the file keys. Returns ``(keys, table, id_column, label_column,
    site_column)``, keys and rows aligned; labels missing per ``on_missing``, sites missing are an error."""
    table, id_column, source = read_phenotype(phenotype, id_column)
    # A column literally named "label" or "site" is that schema column (our shipped subjects.csv has one),
    # unless the caller chose another column for the role; renaming it "label_original" broke --label-column.
    if label_column is None and "label" in table.columns and id_column != "label":
        label_column = "label"
    if site_column is None and "site" in table.columns and id_column != "site":
        site_column = "site"
    _check_columns(table, source, label_column, site_column, phenotype_columns)
    keys, table = join_phenotype(list(keys), table, id_column, source, on_missing)
    keys, table = _drop_unlabelled(keys, table, id_column, label_column, on_missing)
    if table.empty:
        raise BrainMassDataError(
            f"No scan is left after joining the files with {source}; check that its id column holds the "
            "file names' ids (see the matching rule in brainmass_hf.data)."
        )
    if site_column is not None:
        check_no_missing(table[site_column].tolist(), table[id_column].tolist(), f"site column {site_column!r} of "
                         f"{source}", "Fill in each scan's site (a blank cell would become a site named 'None'), "
                         "or pass site_column= naming a complete column.")
    return keys, table, id_column, label_column, site_column


def _phenotype_schema(table: pd.DataFrame, id_column: str, label_column, site_column, phenotype_columns,
                      label) -> tuple[dict, dict]:
    """Features and columns from the table: ``label`` (``label`` is ``(feature, values)`` or None), ``site``, and
    the other kept columns (a reserved name not chosen for its role is kept as ``<name>_original``)."""
    features, columns = {}, {}
    if label is not None:
        features["label"], columns["label"] = label
    if site_column is not None:
        features["site"] = datasets.Value("string")
        columns["site"] = [str(v) for v in table[site_column]]
    chosen = {id_column, label_column, site_column}
    extra = [c for c in (table.columns if phenotype_columns is None else phenotype_columns) if c not in chosen]
    extra_table = table[extra].copy()
    clashes = [c for c in extra if c in RESERVED_COLUMNS]
    if clashes:
        # A phenotype column called e.g. "label" that was not chosen as the label keeps its data under
        # another name, so the schema columns always mean one thing.
        extra_table = extra_table.rename(columns={c: f"{c}_original" for c in clashes})
        logger.info("Renamed phenotype columns %s to *_original (reserved names).", clashes)
    extra_features, extra_columns = phenotype_features(extra_table)
    return {**features, **extra_features}, {**columns, **extra_columns}


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
    min_timepoints: int | None,
    on_missing: str,
    convention_time_by_roi: bool = False,
) -> datasets.Dataset:
    """Shared tail of every loader: join, check, read (``read(key) -> 2D array``), orient, validate, build."""
    check_choice("orientation", orientation, ORIENTATIONS)
    check_choice("on_missing", on_missing, _ON_MISSING)
    check_choice("label_type", label_type, _LABEL_TYPES)
    if not keys:
        raise BrainMassDataError("No time-series files or keys were found; check the folder or bundle path.")
    check_unique_ids(list(keys), what="file keys (file names without extension)")
    table = label = None
    if phenotype is None:
        if label_column or site_column:
            raise BrainMassDataError(
                f"label_column={label_column!r} / site_column={site_column!r} need a phenotype table; pass "
                "phenotype_csv=."
            )
        keys = scan_ids = sorted(keys)
    else:
        keys, table, id_column, label_column, site_column = _join_table(
            keys, phenotype, id_column, label_column, site_column, phenotype_columns, on_missing)
        scan_ids = table[id_column].tolist()
        if label_column is not None:
            label = encode_labels(table[label_column], scan_ids, label_names, label_type, max_classes)

    arrays = orient_time_series([read(k) for k in keys], list(keys), orientation, num_rois,
                                convention_time_by_roi=convention_time_by_roi)
    if min_timepoints is None:
        min_timepoints = default_min_timepoints()
    scans = validate_time_series(arrays, scan_ids, num_rois=num_rois, min_timepoints=min_timepoints)
    features = {
        "subject_id": datasets.Value("string"),
        "time_series": datasets.Array2D(shape=(None, scans[0].shape[1]), dtype="float32"),
        "num_timepoints": datasets.Value("int32"),
        "num_constant_rois": datasets.Value("int32"),
    }
    columns: dict[str, list] = {
        "subject_id": [str(i) for i in scan_ids],
        "time_series": scans,
        "num_timepoints": [a.shape[0] for a in scans],
        # counted on the values as read: raw-scale data keeps its small variances before the float32 cast
        "num_constant_rois": [count_constant_rois(a) for a in arrays],
    }
    if table is not None:
        more_features, more_columns = _phenotype_schema(table, id_column, label_column, site_column,
                                                        phenotype_columns, label)
        features.update(more_features)
        columns.update(more_columns)
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


# ----------------------------------------------------------------------------------------------------------
# Public loaders.
# ----------------------------------------------------------------------------------------------------------

_LOADER_ARGS_DOC = """phenotype_csv: ``.csv``/``.tsv`` path or a ``pandas.DataFrame`` with one row per scan;
            ``None`` loads the time series alone (``subject_id`` = file key).
        id_column: the id column; ``None`` tries ``subject_id``, ``scan_id``, ``scan``, ``participant_id``,
            ``subject``, ``FILE_ID``, ``SUB_ID`` in this order.
        label_column: becomes ``label``: ``ClassLabel`` for text/bool values and for integer codes with at
            most ``max_classes`` distinct values, ``float32`` otherwise (force with ``label_type``). ``None``
            uses a column named ``label`` if the table has one. Text spellings that differ only in case or
            whitespace are merged with a warning; a class set read from the data must have two classes.
        site_column: becomes ``site`` (string); ``None`` uses a column named ``site`` if there is one.
        label_names: class names in index order (fixes the ``ClassLabel`` order; integer codes index it).
        label_type: ``"auto"``, ``"categorical"`` or ``"continuous"``.
        max_classes: most distinct integer codes that ``"auto"`` still treats as classes (default 10).
        phenotype_columns: other columns to keep; ``None`` keeps all of them.
        num_rois: expected ROI count R; also settles ``orientation="auto"``.
        min_timepoints: shortest acceptable scan; ``None`` (default) is what pretraining with the default config
            needs, ``connectivity.min_scan_length(BrainMassConfig())`` = 12 time points.
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
    orientation: str = "auto",
    num_rois: int | None = None,
    min_timepoints: int | None = None,
    on_missing: str = "error",
    key_prefix: str = "ts_",
) -> datasets.Dataset:
    """Load one ``.npz`` file that holds one array per scan.

    Keys become scan keys after removing ``key_prefix`` (default ``ts_``). Bundles store ``(num_timepoints,
    num_rois)`` arrays by convention, but a bundle stored ROI × time must not load with T and R swapped, so the
    orientation is checked (``"auto"``, see :func:`orient_time_series`): from ``num_rois`` when given, else from
    the axis whose size is the same in every scan; equal shapes are read time × ROI when they have at least as
    many rows as columns, and are an error asking for ``orientation=`` or ``num_rois=`` otherwise.

    Args:
        path: the ``.npz`` file.
        {loader_args}
        orientation: ``"auto"`` (default), ``"time_by_roi"`` or ``"roi_by_time"``.
        key_prefix: removed from the start of each key to get the scan key (default ``"ts_"``).

    Returns:
        A ``datasets.Dataset`` with the module's schema.
    """
    path = Path(path)
    if not path.is_file():
        raise BrainMassDataError(f"Bundle {path} does not exist; pass the path of an existing .npz file.")
    try:
        bundle = np.load(path, allow_pickle=False)
        names = list(bundle.files)
    except Exception as exc:
        raise BrainMassDataError(
            f"Could not read {path} as a .npz bundle ({exc}); write bundles with np.savez(path, ts_<id>=array, ...)."
        ) from exc
    key_to_name = {(n[len(key_prefix):] if key_prefix and n.startswith(key_prefix) else n): n for n in names}
    if len(key_to_name) != len(names):
        raise BrainMassDataError(
            f"{path}: keys collide after removing the prefix {key_prefix!r} (e.g. 'ts_a' and 'a'); rename the keys "
            "or pass key_prefix='' to keep them as they are."
        )

    def read(key: str) -> np.ndarray:
        try:
            array = bundle[key_to_name[key]]
        except Exception as exc:
            raise BrainMassDataError(
                f"Could not read key {key_to_name[key]!r} of {path}: {exc}. Re-save the bundle with np.savez."
            ) from exc
        if array.ndim != 2 or array.dtype.kind not in "biuf":
            raise BrainMassDataError(
                f"Key {key_to_name[key]!r} of {path} must be a 2D numeric array; got shape {array.shape}, "
                f"dtype {array.dtype}. Store one 2D (time × ROI) array per scan."
            )
        return array

    with bundle:
        return _build_dataset(
            list(key_to_name), read, phenotype_csv, id_column=id_column, label_column=label_column,
            site_column=site_column, label_names=label_names, label_type=label_type, max_classes=max_classes,
            phenotype_columns=phenotype_columns, orientation=orientation, num_rois=num_rois,
            min_timepoints=min_timepoints, on_missing=on_missing, convention_time_by_roi=True,
        )


def _is_sidecar(path: Path) -> bool:
    # rois.csv (written by extract_time_series) and rois_<atlas>.csv describe ROIs, not a scan.
    return path.suffix.lower() in (".csv", ".tsv") and path.stem.lower().startswith("rois")


def _sidecar_num_rois(folder: Path) -> int | None:
    sidecars = [p for p in folder.iterdir() if p.is_file() and _is_sidecar(p)]
    if len(sidecars) != 1:
        return None
    return len(pd.read_csv(sidecars[0], sep=separator(sidecars[0])))


def _list_scan_files(folder: Path, file_pattern: str | None, exclude: set[Path]) -> list[Path]:
    if file_pattern is not None:
        files = sorted(p for p in folder.glob(file_pattern) if p.is_file() and p.resolve() not in exclude)
        if not files:
            raise BrainMassDataError(
                f"No file in {folder} matches file_pattern={file_pattern!r}; check the pattern (a glob relative "
                "to the folder, e.g. '*_rois_aal.1D') or leave it out to read the most common format."
            )
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
    min_timepoints: int | None = None,
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
        raise BrainMassDataError(
            f"Folder {folder} does not exist; pass the folder that holds one time-series file per scan."
        )
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
        raise BrainMassDataError(f"{path} does not exist; pass an .npz bundle or a folder of per-scan files.")
    if phenotype_csv is None and path.is_dir():
        phenotype_csv = find_phenotype_file(folder)
        if phenotype_csv is not None:
            logger.info("Using phenotype table %s", phenotype_csv)
    if bundle is not None:
        if kwargs.get("num_rois") is None and kwargs.get("orientation", "auto") == "auto":
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


def _check_has_time_series(dataset: Any) -> None:
    if "time_series" not in getattr(dataset, "column_names", ()):
        raise BrainMassDataError(
            f"The dataset has no 'time_series' column (columns: {getattr(dataset, 'column_names', None)}); each "
            "row needs a (num_timepoints, num_rois) 'time_series'. Load the data with a brainmass_hf.data loader "
            "or add that column."
        )


def _iter_time_series(dataset: datasets.Dataset, batch_size: int) -> Iterator[np.ndarray]:
    """The ``time_series`` column scan by scan, as stored (no cast), through the numpy formatter in batches."""
    formatted = dataset.with_format("numpy", columns=["time_series"])
    for start in range(0, len(dataset), batch_size):
        # Equal T gives one 3D array, variable T an object array of 2D arrays: both iterate per scan.
        for a in formatted[start:start + batch_size]["time_series"]:
            if isinstance(a, np.ndarray) and a.dtype == object:
                # a list-of-lists feature (not Array2D) arrives as an object array of rows
                try:
                    a = np.stack(list(a))
                except ValueError:
                    pass  # ragged rows: validate_time_series names the scan
            yield a


def time_series_list(dataset: datasets.Dataset, batch_size: int = 512) -> list[np.ndarray]:
    """The ``time_series`` column as a list of float32 ``(num_timepoints, num_rois)`` numpy arrays.

    Reads through the numpy formatter in batches, so it respects ``select``/``filter`` and variable T.
    """
    _check_has_time_series(dataset)
    return [np.ascontiguousarray(a, dtype=np.float32) for a in _iter_time_series(dataset, batch_size)]


def scan_ids(dataset: datasets.Dataset) -> list[str]:
    """One name per row for messages: ``subject_id`` when it is unique, else ``"row <k> (<id>)"`` / ``"row <k>"``."""
    if "subject_id" not in dataset.column_names:
        return [f"row {k}" for k in range(len(dataset))]
    ids = [str(i) for i in dataset["subject_id"]]
    if len(set(ids)) != len(ids):  # duplicated ids are fine for training; keep the messages unambiguous
        ids = [f"row {k} ({i})" for k, i in enumerate(ids)]
    return ids


def class_labels(
    dataset: datasets.Dataset, column: str, *, class_names: Sequence[str] | None = None, **checks: Any
) -> tuple[np.ndarray, list[str]]:
    """Integer class codes ``(N,)`` and class names of any label column (``ClassLabel``, text, bool or integers),
    checked and encoded by :func:`brainmass_hf.validation.encode_class_labels` (``checks``: its ``min_per_class``,
    ``min_classes``, ``drop_unused``): no missing value, two or more classes; spellings differing only in case or
    whitespace merged with a warning. ``class_names`` (default: the column's ``ClassLabel`` names, else the sorted
    values) fixes the code order."""
    if column not in dataset.column_names:
        raise BrainMassDataError(
            f"The dataset has no label column {column!r}; its columns are {dataset.column_names}. Pass the column "
            "that holds the classes (label_column= / --label-column)."
        )
    names = class_names if class_names is not None else getattr(dataset.features[column], "names", None)
    return encode_class_labels(dataset[column], f"Label column {column!r}", ids=scan_ids(dataset),
                               class_names=names, **checks)


def with_class_labels(dataset: datasets.Dataset, column: str, class_names: Sequence[str] | None = None,
                      **checks: Any) -> datasets.Dataset:
    """The dataset with ``column`` as a checked ``ClassLabel`` (see :func:`class_labels`), ready for a stratified
    split and a classification head. A ``ClassLabel`` column with these names is checked and returned as is."""
    codes, names = class_labels(dataset, column, class_names=class_names, **checks)
    if getattr(dataset.features[column], "names", None) == names:
        return dataset
    dataset = dataset.remove_columns(column).add_column(column, codes.tolist())
    return dataset.cast_column(column, datasets.ClassLabel(names=names))


def validate_dataset(
    dataset: datasets.Dataset,
    settings: Any,
    *,
    pfc: bool = True,
    label_column: str | None = None,
    batch_size: int = 512,
) -> None:
    """Check a whole dataset up front, however it was made (``load_from_disk``, the Hub, a user's own code).

    Args:
        dataset: a ``datasets.Dataset`` with a ``time_series`` column of ``(num_timepoints, num_rois)`` scans and
            optionally ``subject_id`` (used in the message; else ``"row <k>"``).
        settings: a ``BrainMassConfig`` or ``BrainMassFeatureExtractor``: ``num_rois`` and the pFC settings.
        pfc: whether the scans feed pFC views (pretraining, fine-tuning): then each needs
            ``connectivity.min_scan_length(settings)`` time points, else ``settings.min_timepoints``.
        label_column: also check this classification label column: present, no missing value, two classes.

    Raises:
        BrainMassDataError: one error naming every bad scan and what to fix (see
            :func:`brainmass_hf.validation.validate_time_series`), before any training step runs.
    """
    _check_has_time_series(dataset)
    if len(dataset) == 0:
        raise BrainMassDataError("The dataset is empty; it needs at least one scan.")
    ids = scan_ids(dataset)
    validate_time_series(
        list(_iter_time_series(dataset, batch_size)), ids, num_rois=int(settings.num_rois),
        min_timepoints=min_scan_length(settings, pfc=pfc), warn_constant_rois=False,
    )
    if label_column is not None:
        class_labels(dataset, label_column)


def resolve_dataset(dataset: Any, **loader_kwargs: Any) -> Any:
    """A `datasets.Dataset` as is; `"devfmri"` → the bundled cohort; a `save_to_disk` folder →
    `load_from_disk`; a Hub dataset id ``user/name[@revision]`` → its ``train`` split (``datasets.load_dataset``);
    any other path → :func:`load_dataset_auto` (npz bundle or folder) with ``loader_kwargs``
    (e.g. ``label_column="dx"``). A folder's ``subjects.csv`` with a ``label`` or ``site`` column gives the
    ``label``/``site`` columns without being asked."""
    if not isinstance(dataset, (str, os.PathLike)):
        return dataset
    if str(dataset) == "devfmri":
        return load_devfmri()
    path = Path(dataset)
    if (path / "state.json").is_file() and (path / "dataset_info.json").is_file():
        from datasets import load_from_disk

        return load_from_disk(str(path))
    if not path.parent.exists() and _HUB_DATASET_ID.fullmatch(str(dataset)):  # "user/name": no local "user/"
        return _load_hub_dataset(str(dataset))
    return load_dataset_auto(path, **loader_kwargs)


def _site_names(sites: str | Sequence[str] | None) -> list[str]:
    """``"A,B"`` or ``["A", "B"]`` → ``["A", "B"]`` (``None`` → ``[]``)."""
    if sites is None:
        return []
    if isinstance(sites, str):
        sites = sites.split(",")
    return [str(s).strip() for s in sites if str(s).strip()]


def select_sites(
    dataset: datasets.Dataset,
    *,
    keep: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
    site_column: str = "site",
    name: str = "the data",
) -> datasets.Dataset:
    """The scans of ``dataset`` whose ``site_column`` value is in ``keep`` (all when None) and not in ``exclude``.

    The one site filter of the package: ``brainmass pretrain --exclude_sites`` (scans never seen in pretraining)
    and ``brainmass evaluate --sites`` (evaluate on those sites only) both call it. ``keep`` / ``exclude`` are site
    names or one comma-separated string. A dataset without ``site_column`` passes through unchanged when only
    ``exclude`` is given (it holds none of those sites), and is an error when ``keep`` is. A named site that the
    dataset does not hold is an error naming the sites it does hold (a typo would otherwise filter nothing).
    """
    keep, exclude = _site_names(keep), _site_names(exclude)
    if not keep and not exclude:
        return dataset
    if site_column not in dataset.column_names:
        if keep:
            raise BrainMassDataError(
                f"{name} has no {site_column!r} column to select sites {keep} from (columns: "
                f"{dataset.column_names}); pass the column that names each scan's site."
            )
        return dataset
    values = [str(v) for v in dataset[site_column]]
    unknown = sorted(set(keep + exclude) - set(values))
    if unknown:
        raise BrainMassDataError(
            f"Site(s) {unknown} are not in column {site_column!r} of {name}; its sites are {sorted(set(values))}."
        )
    rows = [i for i, v in enumerate(values) if (not keep or v in keep) and v not in exclude]
    if not rows:
        raise BrainMassDataError(f"No scan of {name} is left after keeping sites {keep} and excluding {exclude}.")
    return dataset.select(rows)


def pretraining_corpus(
    sources: Sequence[Any], *, exclude_sites: str | Sequence[str] | None = None, **loader_kwargs: Any
) -> datasets.Dataset:
    """Several cohorts as one unlabelled pretraining corpus: each source goes through :func:`resolve_dataset`
    (with ``loader_kwargs``), only ``subject_id`` and ``time_series`` are kept, and the rows are concatenated in
    the order given. Every source must have the same number of ROIs (one atlas, one ROI order) and the scan ids
    must be unique across sources. ``brainmass pretrain --data a,b`` calls this.

    ``exclude_sites`` (names, or one comma-separated string) drops every scan of those sites (``site`` column,
    :func:`select_sites`) before the columns are cut: the held-out-site protocol pretrains without them. Each
    name must be a site of at least one source.

    Example: ``pretraining_corpus(["../shared/data/abide1_aal116", "devfmri"])`` → 938 AAL-116 scans;
    with ``exclude_sites="NYU"`` → 766.
    """
    if len(sources) == 0:
        raise BrainMassDataError("pretraining_corpus needs at least one data source.")
    columns = ["subject_id", "time_series"]
    parts, names = [], []
    excluded = _site_names(exclude_sites)
    held = set()
    for source in sources:
        part = resolve_dataset(source, **loader_kwargs)
        if excluded and "site" in part.column_names:
            present = set(map(str, part["site"])) & set(excluded)
            held |= present
            if present:
                part = select_sites(part, exclude=sorted(present), name=f"data source {source!r}")
        missing = [c for c in columns if c not in part.column_names]
        if missing:
            raise BrainMassDataError(
                f"Data source {source!r} has no column(s) {missing}; a pretraining source needs 'subject_id' and "
                "'time_series' (load it with the brainmass_hf.data loaders)."
            )
        parts.append(part.select_columns(columns))
        names.append(str(source))
    rois = {name: int(np.asarray(p[0]["time_series"]).shape[-1]) for name, p in zip(names, parts)}
    if len(set(rois.values())) > 1:
        raise BrainMassDataError(
            f"The data sources have different numbers of ROIs ({rois}); a corpus needs one atlas in one ROI order. "
            "Parcellate every cohort with the same atlas."
        )
    if set(excluded) - held:
        raise BrainMassDataError(
            f"exclude_sites {sorted(set(excluded) - held)} are not a 'site' of any data source {names}; check the "
            "spelling (ABIDE sites are e.g. NYU, UM_1, USM)."
        )
    check_unique_ids([i for p in parts for i in p["subject_id"]], "scan ids across the data sources")
    features = parts[0].features
    return datasets.concatenate_datasets([parts[0]] + [p.cast(features) for p in parts[1:]])


# "user/name" or "user/name@revision": a dataset pushed with Dataset.push_to_hub (tried only when no local folder
# "user/" exists, so a mistyped local path is reported as one)
_HUB_DATASET_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?")


def _load_hub_dataset(spec: str) -> datasets.Dataset:
    """The ``train`` split of a Hub dataset ``user/name[@revision]`` (``datasets.load_dataset``)."""
    repo_id, _, revision = spec.partition("@")
    try:
        return datasets.load_dataset(repo_id, revision=revision or None, split="train")
    except (FileNotFoundError, ConnectionError, datasets.exceptions.DatasetNotFoundError) as err:
        raise BrainMassDataError(
            f"{spec} is neither a local path nor a dataset on the Hub ({type(err).__name__}: {err}). Check the path, "
            f"or the repo id and revision of a dataset pushed with Dataset.push_to_hub."
        ) from err
