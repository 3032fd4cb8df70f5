"""The malformed-input catalogue (issue 7, "Keep it fixed"): each case feeds one kind of bad input to a loader,
``validate_dataset``, the feature extractor or a collator, and asserts the error type, that the message names the
file or scan, and that it says what to change. Model, CLI and checkpoint cases live beside those modules' tests."""

import warnings
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
import torch

from brainmass_hf import (
    BrainMassConfig,
    BrainMassFeatureExtractor,
    DataCollatorForConnectomeClassification,
    DataCollatorForPseudoFC,
)
from brainmass_hf.data import (
    BrainMassDataError,
    extract_time_series,
    load_dataset_auto,
    load_npz_bundle,
    load_time_series_folder,
    read_time_series_file,
    validate_dataset,
)

R = 5


def _cohort(lengths=(20, 24, 30), num_rois=R):
    rng = np.random.default_rng(0)
    return {f"sub-{k + 1:02d}": rng.standard_normal((t, num_rois)) for k, t in enumerate(lengths)}


def _npy_folder(tmp: Path, cohort=None, **changes) -> Path:
    """A folder of .npy scans; ``changes`` maps a scan id to a function that edits (or replaces) its array."""
    cohort = cohort or _cohort()
    folder = tmp / "scans"
    folder.mkdir()
    for key, a in cohort.items():
        np.save(folder / f"{key}.npy", changes[key](a) if key in changes else a)
    return folder


def _set(index, value):
    def edit(a):
        a = a.astype(np.asarray(value).dtype if np.iscomplexobj(value) else a.dtype)
        a[index] = value
        return a
    return edit


def _phenotype(tmp: Path, **columns) -> Path:
    table = pd.DataFrame({"subject_id": ["sub-01", "sub-02", "sub-03"], **columns})
    path = tmp / "phenotype.csv"
    table.to_csv(path, index=False)
    return path


def _dataset(scans, ids=None, **columns):
    data = {"time_series": scans, **columns}
    if ids is not None:
        data["subject_id"] = ids
    return datasets.Dataset.from_dict(data)


def _config():
    return BrainMassConfig(num_rois=R, num_attention_heads=1, mrc_num_masked=2)


def _fe():
    return BrainMassFeatureExtractor(num_rois=R)


def _rows(scans, ids, **extra):
    return [{"time_series": s, "subject_id": i, **{k: v[n] for k, v in extra.items()}}
            for n, (s, i) in enumerate(zip(scans, ids))]


def _good(t=30, seed=0):
    return np.random.default_rng(seed).standard_normal((t, R))


def _mat(tmp: Path, variables: dict) -> Path:
    import scipy.io

    folder = tmp / "mat"
    folder.mkdir()
    scipy.io.savemat(folder / "sub-01.mat", variables)
    return folder


def _write(tmp: Path, name: str, content) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


def _two_format_folder(tmp: Path) -> Path:
    folder = _npy_folder(tmp, _cohort(lengths=(20, 24)))
    for k in (3, 4):
        np.savetxt(folder / f"sub-{k:02d}.csv", _good(20 + k), delimiter=",")
    return folder


# (case id, call(tmp) -> raises, error type, regex naming the file or scan, regex of the fix)
CASES = [
    # -- folder loader -----------------------------------------------------------------------------------------
    ("folder_missing", lambda t: load_time_series_folder(t / "nope"), BrainMassDataError,
     r"nope", r"pass the folder"),
    ("folder_without_scans", lambda t: load_time_series_folder(_write(t, "empty/readme.md", "x").parent),
     BrainMassDataError, r"empty", r"expected one of"),
    ("folder_nan", lambda t: load_time_series_folder(_npy_folder(t, **{"sub-02": _set((3, 1), np.nan)})),
     BrainMassDataError, r"'sub-02' \(1 NaN", r"fix the extraction"),
    ("folder_inf", lambda t: load_time_series_folder(_npy_folder(t, **{"sub-01": _set((0, 0), -np.inf)})),
     BrainMassDataError, r"'sub-01' \(1 Inf", r"drop the scan"),
    ("folder_beyond_float32", lambda t: load_time_series_folder(_npy_folder(t, **{"sub-03": _set((2, 2), 1e39)})),
     BrainMassDataError, r"'sub-03' \(1 values beyond float32", r"rescale the data"),
    ("folder_complex", lambda t: load_time_series_folder(_npy_folder(t, **{"sub-01": _set((0, 0), 1 + 2j)})),
     BrainMassDataError, r"'sub-01' \(complex values\)", r"pass the real signal"),
    ("folder_all_zero", lambda t: load_time_series_folder(_npy_folder(t, **{"sub-02": np.zeros_like})),
     BrainMassDataError, r"'sub-02' \(all zeros\)", r"re-extract or drop"),
    ("folder_too_short", lambda t: load_time_series_folder(_npy_folder(t, _cohort(lengths=(20, 8, 30))),
                                                           num_rois=R),
     BrainMassDataError, r"'sub-02' \(T=8\)", r"drop the scan or lower min_timepoints"),
    ("folder_inconsistent_rois",
     lambda t: load_time_series_folder(_npy_folder(t, **{"sub-03": lambda a: np.hstack([a, a[:, :2]])}),
                                       orientation="time_by_roi"),
     BrainMassDataError, r"'sub-03' \(R=7\)", r"same atlas"),
    ("folder_ambiguous_orientation", lambda t: load_time_series_folder(_npy_folder(t, _cohort(lengths=(20, 20)))),
     BrainMassDataError, r"shape \(20, 5\)", r"Pass orientation="),
    ("folder_unreadable_npy",
     lambda t: load_time_series_folder(_write(t, "scans/sub-01.npy", b"not numpy").parent),
     BrainMassDataError, r"sub-01\.npy", r"re-save it"),
    ("folder_3d_npy", lambda t: load_time_series_folder(_npy_folder(t, **{"sub-01": lambda a: a[None]})),
     BrainMassDataError, r"sub-01\.npy", r"one scan per file as a 2D"),
    ("folder_two_formats", lambda t: load_time_series_folder(_two_format_folder(t)),
     BrainMassDataError, r"scans", r"pass file_pattern="),
    ("folder_pattern_matches_nothing", lambda t: load_time_series_folder(_npy_folder(t), file_pattern="*.1D"),
     BrainMassDataError, r"\*\.1D", r"check the pattern"),
    ("bad_orientation_value", lambda t: load_time_series_folder(_npy_folder(t), orientation="rows"),
     BrainMassDataError, r"orientation", r"must be one of"),
    # -- csv / tsv / mat files ---------------------------------------------------------------------------------
    ("csv_text_cell", lambda t: read_time_series_file(_write(t, "sub-01.csv", "1,2\n3,oops\n4,5\n")),
     BrainMassDataError, r"sub-01\.csv", r"fix or remove that cell"),
    ("csv_no_rows", lambda t: read_time_series_file(_write(t, "sub-01.csv", "# only a comment\n")),
     BrainMassDataError, r"sub-01\.csv", r"fill it or remove"),
    ("unsupported_suffix", lambda t: read_time_series_file(_write(t, "sub-01.xlsx", "x")),
     BrainMassDataError, r"sub-01\.xlsx", r"supported:"),
    ("mat_missing_key", lambda t: load_time_series_folder(_mat(t, {"tc": _good().T}), mat_key="ROISignals",
                                                          orientation="roi_by_time"),
     BrainMassDataError, r"sub-01\.mat", r"Pass the right mat_key="),
    ("mat_two_variables", lambda t: load_time_series_folder(_mat(t, {"a": _good(), "b": _good(31)})),
     BrainMassDataError, r"sub-01\.mat", r"pass mat_key="),
    # -- npz bundles --------------------------------------------------------------------------------------------
    ("npz_missing", lambda t: load_npz_bundle(t / "none.npz"), BrainMassDataError, r"none\.npz",
     r"pass the path"),
    ("npz_not_a_bundle", lambda t: load_npz_bundle(_write(t, "b.npz", b"garbage")), BrainMassDataError,
     r"b\.npz", r"np\.savez"),
    ("npz_3d_array", lambda t: (np.savez(t / "b.npz", ts_a=np.zeros((2, 20, R))), load_npz_bundle(t / "b.npz")),
     BrainMassDataError, r"'ts_a' of .*b\.npz", r"one 2D .* per scan"),
    ("npz_stored_roi_by_time",
     lambda t: (np.savez(t / "b.npz", **{f"ts_{k}": np.random.default_rng(k).standard_normal((116, 168))
                                         for k in range(2)}), load_npz_bundle(t / "b.npz")),
     BrainMassDataError, r"\(116, 168\)", r"num_rois="),
    ("npz_prefix_collision",
     lambda t: (np.savez(t / "b.npz", ts_a=_good(), a=_good(31)), load_npz_bundle(t / "b.npz")),
     BrainMassDataError, r"b\.npz", r"key_prefix="),
    ("auto_path_missing", lambda t: load_dataset_auto(t / "nowhere"), BrainMassDataError, r"nowhere",
     r"pass an \.npz bundle or a folder"),
    # -- phenotype tables ---------------------------------------------------------------------------------------
    ("pheno_missing_file", lambda t: load_time_series_folder(_npy_folder(t), t / "nope.csv"), BrainMassDataError,
     r"nope\.csv", r"pass the path"),
    ("pheno_no_id_column", lambda t: load_time_series_folder(_npy_folder(t), _write(t, "p.csv", "who,dx\na,1\n")),
     BrainMassDataError, r"p\.csv", r"Pass id_column="),
    ("pheno_id_column_absent", lambda t: load_time_series_folder(_npy_folder(t), _phenotype(t), id_column="scan"),
     BrainMassDataError, r"phenotype\.csv", r"pass id_column= naming one of them"),
    ("pheno_duplicate_ids",
     lambda t: load_time_series_folder(_npy_folder(t), _write(t, "p.csv", "subject_id\nsub-01\nsub-02\nsub-02\n")),
     BrainMassDataError, r"'sub-02'", r"remove the duplicates"),
    ("pheno_blank_id",
     lambda t: load_time_series_folder(_npy_folder(t), _write(t, "p.csv", "subject_id,dx\nsub-01,1\n,0\n")),
     BrainMassDataError, r"p\.csv: rows \[3\]", r"fill in the id or delete"),
    ("pheno_row_without_file",
     lambda t: load_time_series_folder(_npy_folder(t), _write(t, "p.csv", "subject_id\nsub-01\nsub-02\nsub-03\nsub-9")),
     BrainMassDataError, r"'sub-9'", r"on_missing='warn'"),
    ("pheno_label_column_absent",
     lambda t: load_time_series_folder(_npy_folder(t), _phenotype(t, dx=[0, 1, 0]), label_column="diagnosis"),
     BrainMassDataError, r"'diagnosis' is not in .*phenotype\.csv", r"pass label_column= naming one of them"),
    ("pheno_missing_label_value",
     lambda t: load_time_series_folder(_npy_folder(t), _phenotype(t, dx=["a", None, "b"]), label_column="dx"),
     BrainMassDataError, r"'sub-02'", r"Fill them in"),
    ("pheno_single_class",
     lambda t: load_time_series_folder(_npy_folder(t), _phenotype(t, dx=["a", "a", "a"]), label_column="dx"),
     BrainMassDataError, r"'dx' holds a single class \('a'\)", r"Choose another label column"),
    ("pheno_label_not_in_names",
     lambda t: load_time_series_folder(_npy_folder(t), _phenotype(t, dx=["a", "b", "c"]), label_column="dx",
                                       label_names=["a", "b"]),
     BrainMassDataError, r"'sub-03'=c", r"Add them to label_names"),
    ("pheno_continuous_text",
     lambda t: load_time_series_folder(_npy_folder(t), _phenotype(t, dx=["a", "b", "c"]), label_column="dx",
                                       label_type="continuous"),
     BrainMassDataError, r"'dx'", r"label_type='categorical'"),
    ("pheno_no_id_matches",
     lambda t: load_time_series_folder(_npy_folder(t), _write(t, "p.csv", "subject_id\nx-1\nx-2\n"),
                                       on_missing="drop"),
     BrainMassDataError, r"p\.csv", r"check that its id column"),
    # -- validate_dataset (a dataset not built by our loaders) ---------------------------------------------------
    ("dataset_without_time_series", lambda t: validate_dataset(datasets.Dataset.from_dict({"x": [1]}), _config()),
     BrainMassDataError, r"'time_series'", r"add that column"),
    ("dataset_wrong_rois", lambda t: validate_dataset(_dataset([_good()[:, :3]], ["s1"]), _config()),
     BrainMassDataError, r"'s1' \(R=3\)", r"same atlas"),
    ("dataset_nan_without_ids", lambda t: validate_dataset(_dataset([_good(), _set((1, 1), np.nan)(_good())]),
                                                           _config()),
     BrainMassDataError, r"'row 1' \(1 NaN", r"drop the scan"),
    ("dataset_too_short_for_pfc", lambda t: validate_dataset(_dataset([_good(11)], ["s1"]), _config()),
     BrainMassDataError, r"'s1' \(T=11\)", r"lower min_timepoints"),
    ("dataset_label_absent",
     lambda t: validate_dataset(_dataset([_good()], ["s1"]), _config(), label_column="dx"),
     BrainMassDataError, r"'dx'", r"Pass the column that holds the classes"),
    # -- feature extractor ---------------------------------------------------------------------------------------
    ("extractor_complex", lambda t: _fe()([_good() + 1j], subject_ids=["z1"]), BrainMassDataError,
     r"'z1' \(complex values\)", r"pass the real signal"),
    ("extractor_wrong_rois", lambda t: _fe()([_good()[:, :4]], subject_ids=["a"]), BrainMassDataError,
     r"'a' \(R=4\)", r"same atlas"),
    ("extractor_short_for_pfc", lambda t: _fe()([_good(11)], view="pfc", subject_ids=["a"]), BrainMassDataError,
     r"'a' \(T=11\)", r"lower min_timepoints"),
    ("extractor_1d", lambda t: _fe()([np.ones(30)], subject_ids=["a"]), BrainMassDataError,
     r"'a' \(shape \(30,\)\)", r"must be 2D"),
    ("extractor_inf_tensor", lambda t: _fe()(torch.tensor(_set((4, 0), np.inf)(_good()))[None]),
     BrainMassDataError, r"'scan #0' \(1 Inf", r"drop the scan"),
    ("extractor_beyond_float32", lambda t: _fe()([_set((1, 1), 1e300)(_good())], subject_ids=["big"]),
     BrainMassDataError, r"'big' \(1 values beyond float32", r"rescale"),
    # -- collators ------------------------------------------------------------------------------------------------
    ("pfc_collator_nan", lambda t: DataCollatorForPseudoFC(_fe(), mrm_num_masked=2, mrc_num_masked=3)(
        _rows([_good(), _set((0, 0), np.nan)(_good())], ["ok", "bad"])),
     BrainMassDataError, r"'bad' \(1 NaN", r"fix the extraction"),
    ("classification_collator_all_zero",
     lambda t: DataCollatorForConnectomeClassification(_fe(), compute_fc_on="collator")(
         _rows([_good(), np.zeros((30, R))], ["ok", "flat"], label=[0, 1])),
     BrainMassDataError, r"'flat' \(all zeros\)", r"re-extract or drop"),
    # -- NIfTI extraction ----------------------------------------------------------------------------------------
    ("extract_missing_scan", lambda t: extract_time_series([t / "sub-01.nii.gz"], t / "atlas.nii.gz",
                                                           show_progress=False),
     BrainMassDataError, r"sub-01\.nii\.gz", r"check the paths"),
    ("extract_unreadable_scan",
     lambda t: extract_time_series([_write(t, "sub-07.nii.gz", b"junk")], t / "a.nii.gz", show_progress=False),
     BrainMassDataError, r"'sub-07'", r"Pass a 4D NIfTI file"),
    ("extract_subject_id_with_separator",
     lambda t: extract_time_series([_write(t, "s.nii.gz", b"")], t / "a.nii.gz", subject_ids=["../up"],
                                   output_dir=t / "out", show_progress=False),
     BrainMassDataError, r"'\.\./up'", r"Pass subject_ids= with plain names"),
]


def test_catalogue_has_at_least_30_cases():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("call, error, names, fix", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_input_gives_one_clear_error(tmp_path, call, error, names, fix):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant-ROI and merge warnings are not what is tested here
        with pytest.raises(error) as info:
            call(tmp_path)
    message = str(info.value)
    assert info.type is error or issubclass(info.type, error)
    assert _search(names, message), f"message does not name the file/scan ({names!r}): {message}"
    assert _search(fix, message), f"message does not say what to fix ({fix!r}): {message}"


def _search(pattern, text):
    import re

    return re.search(pattern, text, flags=re.S) is not None
