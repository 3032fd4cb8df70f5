"""Phenotype tables: reading them, matching their ids to scan files, encoding the label column.

The id matching rule is described in :mod:`brainmass_hf.data` (the package docstring).
"""

from __future__ import annotations

import collections
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

from ..validation import BrainMassDataError, check_unique_ids, encode_class_labels, format_names, warn
from .readers import separator

logger = logging.getLogger(__name__)

__all__ = ["ID_COLUMN_CANDIDATES", "PHENOTYPE_FILENAMES", "find_phenotype_file", "match_ids"]

# Tried in this order when ``id_column`` is not given: ours, then BIDS, then ABIDE phenotype names.
ID_COLUMN_CANDIDATES = ("subject_id", "scan_id", "scan", "participant_id", "subject", "FILE_ID", "SUB_ID")
# Phenotype tables found next to the data by ``load_dataset_auto``.
PHENOTYPE_FILENAMES = ("subjects.csv", "subjects.tsv", "participants.tsv", "participants.csv", "phenotype.csv",
                       "phenotypes.csv", "phenotypic.csv")


def read_phenotype(phenotype: str | Path | pd.DataFrame, id_column: str | None) -> tuple[pd.DataFrame, str, str]:
    """The table with its id column as stripped strings; returns (table, id_column, name for messages)."""
    if isinstance(phenotype, pd.DataFrame):
        table, source = phenotype.copy(), "the phenotype table"
        columns = list(table.columns)
    else:
        path = Path(phenotype)
        source = str(path)
        if not path.is_file():
            raise BrainMassDataError(f"Phenotype file {path} does not exist; pass the path of the .csv/.tsv table.")
        sep = separator(path)
        kwargs = {"sep": sep} if sep else {"sep": None, "engine": "python"}
        try:
            columns = list(pd.read_csv(path, nrows=0, **kwargs).columns)
        except Exception as exc:
            raise BrainMassDataError(
                f"Could not read phenotype file {path}: {exc}. Save it as a .csv or .tsv with a header row."
            ) from exc
        table = None
    if id_column is None:
        id_column = next((c for c in ID_COLUMN_CANDIDATES if c in columns), None)
        if id_column is None:
            raise BrainMassDataError(
                f"{source} has none of the usual id columns {list(ID_COLUMN_CANDIDATES)}; its columns are "
                f"{columns}. Pass id_column=."
            )
    elif id_column not in columns:
        raise BrainMassDataError(
            f"Id column {id_column!r} is not in {source}; its columns are {columns}: pass id_column= naming one "
            "of them."
        )
    if table is None:
        # Ids as text so that ABIDE's zero-padded ids (0051456) survive.
        table = pd.read_csv(path, dtype={id_column: str}, **kwargs)
    ids = table[id_column]
    if ids.isna().any():
        rows = [int(i) + 2 for i in np.flatnonzero(ids.isna().to_numpy())]  # +2: 1-based, after the header
        raise BrainMassDataError(
            f"{source}: rows {rows[:10]} have no value in id column {id_column!r}; fill in the id or delete the row."
        )
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
                f"File {key!r} matches several phenotype ids equally well: {format_names(winners)}. Rename the file "
                "or use an id column whose values identify one scan each."
            )
        matched[key] = winners[0]
    by_id = collections.defaultdict(list)
    for key, i in matched.items():
        by_id[i].append(key)
    shared = {i: ks for i, ks in by_id.items() if len(ks) > 1}
    if shared:
        detail = "; ".join(f"{i!r} ← {format_names(ks, 5)}" for i, ks in list(shared.items())[:5])
        raise BrainMassDataError(
            f"Several files match the same phenotype id: {detail}. Each row must describe one scan; use a "
            "per-scan id column (e.g. subject + session) or select the files with file_pattern=."
        )
    return matched


def report_missing(kind: str, items: Sequence[str], on_missing: str) -> None:
    if items and on_missing == "warn":
        message = f"Dropped {len(items)} {kind}: {format_names(items)}."
        warn(message)
    elif items:
        logger.info("Dropped %d %s: %s.", len(items), kind, format_names(items))


def join_phenotype(
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
            parts.append(f"{len(files_without_row)} file(s) have no row in {source}: {format_names(files_without_row)}")
        if rows_without_file:
            parts.append(f"{len(rows_without_file)} row(s) of {source} have no file: {format_names(rows_without_file)}")
        raise BrainMassDataError(
            "; ".join(parts) + f". Ids are matched on column {id_column!r} (file name == id, or the id's "
            "tokens inside the file name). Fix the names, or pass on_missing='warn' or 'drop' to drop them."
        )
    report_missing("file(s) without a phenotype row", files_without_row, on_missing)
    report_missing(f"row(s) of {source} without a file", rows_without_file, on_missing)
    key_of = {i: k for k, i in matched.items()}
    table = table[table[id_column].isin(used)].reset_index(drop=True)
    return [key_of[i] for i in table[id_column]], table


# ----------------------------------------------------------------------------------------------------------
# Labels and the other phenotype columns.
# ----------------------------------------------------------------------------------------------------------


def _is_integral(values: pd.Series) -> bool:
    with np.errstate(invalid="ignore"):  # NaN and ±inf give a NaN remainder, so they are not integral
        return bool(np.all(np.mod(values.to_numpy(dtype=np.float64), 1.0) == 0.0))


def encode_labels(
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
                f"label_type='continuous' but label column {values.name!r} holds non-numbers, e.g. "
                f"{values.iloc[0]!r}; use label_type='categorical' (or 'auto') for classes."
            )
        return datasets.Value("float32"), values.astype(np.float32).tolist()
    # A class set read from the data must hold two classes; given label_names may describe a one-class subset.
    codes, names = encode_class_labels(values.tolist(), f"Label column {values.name!r}", ids=ids,
                                       class_names=label_names, min_classes=1 if label_names is not None else 2)
    return datasets.ClassLabel(names=names), codes.tolist()


def phenotype_features(table: pd.DataFrame) -> tuple[dict[str, datasets.features.FeatureType], dict[str, list]]:
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

