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
scan and says what to change. The checks themselves live in :mod:`brainmass_hf.validation` (numpy only, shared
with the feature extractor and the model); :func:`validate_dataset` applies them to a dataset built elsewhere.

Modules: :mod:`.readers` (file formats, orientation), :mod:`.phenotype` (tables, id matching, label encoding),
:mod:`.loaders` (dataset build, public loaders, the bundled cohort, ``resolve_dataset``), :mod:`.nifti`
(NIfTI extraction). Everything public is importable from ``brainmass_hf.data``.
"""

from ..validation import (
    CONSTANT_ROI_STD,
    BrainMassDataError,
    BrainMassDataWarning,
    check_unique_ids,
    count_constant_rois,
    validate_time_series,
)
from .loaders import (
    BUNDLED_DIR,
    bundled_roi_names,
    class_labels,
    default_min_timepoints,
    load_dataset_auto,
    load_devfmri,
    load_npz_bundle,
    load_time_series_folder,
    pretraining_corpus,
    resolve_dataset,
    select_sites,
    scan_ids,
    time_series_list,
    validate_dataset,
    with_class_labels,
)
from .nifti import extract_time_series
from .phenotype import ID_COLUMN_CANDIDATES, PHENOTYPE_FILENAMES, find_phenotype_file, match_ids
from .readers import TIME_SERIES_SUFFIXES, orient_time_series, read_time_series_file

__all__ = [
    "BUNDLED_DIR",
    "ID_COLUMN_CANDIDATES",
    "PHENOTYPE_FILENAMES",
    "TIME_SERIES_SUFFIXES",
    "resolve_dataset",
    "pretraining_corpus",
    "select_sites",
    "BrainMassDataError",
    "BrainMassDataWarning",
    "CONSTANT_ROI_STD",
    "bundled_roi_names",
    "check_unique_ids",
    "class_labels",
    "count_constant_rois",
    "default_min_timepoints",
    "extract_time_series",
    "find_phenotype_file",
    "load_dataset_auto",
    "load_devfmri",
    "load_npz_bundle",
    "load_time_series_folder",
    "match_ids",
    "orient_time_series",
    "read_time_series_file",
    "scan_ids",
    "time_series_list",
    "validate_dataset",
    "validate_time_series",
    "with_class_labels",
]
