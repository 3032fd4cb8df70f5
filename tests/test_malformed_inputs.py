"""The malformed-input catalogue (issue 7, "Keep it fixed"): each case feeds one kind of bad input to a loader,
``validate_dataset``, the feature extractor or a collator, and asserts the error type, that the message names the
file or scan, and that it says what to change. Model, CLI and checkpoint cases live beside those modules' tests."""

import os
import warnings
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
import torch

from brainmass_hf import (
    BrainMassConfig,
    BrainMassModel,
    BrainMassFeatureExtractor,
    DataCollatorForConnectomeClassification,
    DataCollatorForPseudoFC,
)
from brainmass_hf.data import (
    BrainMassDataError,
    BrainMassDataWarning,
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


def _evaluate_args_only(dataset, **kwargs):
    """``evaluate`` on a model path that does not exist: whatever it raises first is about its arguments (a check
    that reached the model would raise OSError about the path instead)."""
    from brainmass_hf.evaluation import evaluate

    return evaluate("no/such-model", dataset, protocols="paper", show_progress=False, **kwargs)


def _evaluate_tiny(dataset):
    from brainmass_hf.evaluation import evaluate

    return evaluate(BrainMassModel(_config()), dataset, protocols="paper", show_progress=False)


def _splits(labels, cv="repeated", sites=None):
    from brainmass_hf.evaluation import make_splits

    return make_splits(cv, np.asarray(labels), n_repeats=2, test_size=0.2, sites=sites)


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
    # -- issue 23: the cases a later probe found ------------------------------------------------------------------
    ("folder_huge_finite", lambda t: load_time_series_folder(_npy_folder(t, **{"sub-02": _set((2, 1), 1e20)})),
     BrainMassDataError, r"'sub-02' \(1 values too large for FC", r"rescale the data"),
    ("extractor_huge_float32", lambda t: _fe()([(_good() * 1e20).astype(np.float32)], subject_ids=["loud"]),
     BrainMassDataError, r"'loud' \(150 values too large for FC", r"z-score each ROI"),
    ("npz_connectivity_matrix_beside_the_scans",
     lambda t: (np.savez(t / "b.npz", ts_a=_good(40), ts_b=_good(50, 1), ts_meanfc=np.corrcoef(_good(60, 2).T)),
                load_npz_bundle(t / "b.npz")),
     BrainMassDataError, r"'meanfc' \(square and symmetric", r"keep only \(num_timepoints, num_rois\) scans"),
    ("folder_file_readable_only_the_other_way_with_num_rois",
     lambda t: load_time_series_folder(_npy_folder(t, _cohort(lengths=(40, 50, 30), num_rois=12),
                                                   **{"sub-03": lambda a: _good(12, 3)[:, :R].repeat(6, 1)}),
                                       num_rois=12),
     BrainMassDataError, r"'sub-03' \(12, 30\)", r"Pass orientation="),
    ("pheno_missing_site",
     lambda t: load_time_series_folder(_npy_folder(t), _phenotype(t, site=["A", None, "B"]), site_column="site"),
     BrainMassDataError, r"site column 'site' .*'sub-02'", r"Fill in each scan's site"),
    ("evaluate_site_column_with_gaps",
     lambda t: _evaluate_args_only(_dataset([_good(30, k) for k in range(4)], ["a", "b", "c", "d"],
                                            label=[0, 1, 0, 1], site=["x", None, "y", "y"]), site_column="site"),
     BrainMassDataError, r"site_column 'site'.*'b'", r"Fill them in"),
    ("evaluate_n_repeats_zero",
     lambda t: _evaluate_args_only(_dataset([_good(30, k) for k in range(4)], ["a", "b", "c", "d"],
                                            label=[0, 1, 0, 1]), n_repeats=0),
     ValueError, r"n_repeats", r"must be at least 1"),
    ("evaluate_label_column_missing",
     lambda t: _evaluate_args_only(_dataset([_good(30, k) for k in range(4)], ["a", "b", "c", "d"]),
                                   label_column="dx"),
     BrainMassDataError, r"'dx'", r"Pass the column that holds the classes"),
    ("evaluate_continuous_label_column",
     lambda t: _evaluate_args_only(_dataset([_good(30, k) for k in range(4)], ["a", "b", "c", "d"],
                                            age=[7.5, 8.25, 30.5, 41.0]), label_column="age"),
     BrainMassDataError, r"'age' holds continuous values", r"bin the score into classes"),
    ("five_scan_cohort_split",
     lambda t: _splits([0, 0, 0, 1, 1]), ValueError, r"A cohort of 5 scans with 2 classes",
     r"choose test_size so that both sides hold at least 2"),
    ("site_stratified_split_with_too_many_cells",
     lambda t: _splits([0] * 6 + [1] * 6, sites=["A", "A", "B", "B", "C", "C"] * 2), ValueError,
     r"6 label × site cells", r"or leave out site_column"),
    ("kfold_on_four_scans", lambda t: _splits([0, 0, 1, 1], cv="kfold"), ValueError,
     r"5-fold cross-validation needs at least 5 scans", r"use cv='repeated'"),
    ("empty_cohort", lambda t: _fe()([]), BrainMassDataError, r"list of scans is empty", r"pass at least one scan"),
    ("evaluate_empty_cohort",
     lambda t: _evaluate_args_only(datasets.Dataset.from_dict({"subject_id": [], "time_series": [], "label": []})),
     BrainMassDataError, r"'label' has no values", r"Pass a cohort with scans of two or more classes"),
    ("evaluate_scans_of_another_atlas_than_the_checkpoint",
     lambda t: _evaluate_tiny(_dataset([_good(30, k)[:, :4] for k in range(4)], ["a", "b", "c", "d"],
                                       label=[0, 1, 0, 1])),
     BrainMassDataError, r"4 of 4 scan\(s\).*'a' \(R=4\): num_rois is R=5", r"same atlas"),
    ("eval_forward_one_time_point",
     lambda t: BrainMassModel(_config()).eval()(time_series=torch.randn(2, 1, R)),
     BrainMassDataError, r"'batch item 0' \(T=1\)", r"drop the scan"),
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


# ---------------------------------------------------------------------------------------------------------------
# Issue 23: entry points beyond the loaders (model forward at inference, labels of any column, the CLI's seed,
# leave-one-site-out scoring, output folders, the Hub). Each test failed on the code before the fix.
# ---------------------------------------------------------------------------------------------------------------
def _tiny_encoder(num_rois=16):
    from conftest import tiny_config

    return BrainMassModel(tiny_config(num_rois=num_rois)).eval()


def test_functional_connectivity_refuses_values_whose_products_overflow_instead_of_returning_nan():
    from brainmass_hf.connectivity import functional_connectivity

    x = torch.randn(2, 50, 6)
    x[1] *= 1e20  # float32-finite, but sum of products overflows
    with pytest.raises(ValueError, match=r"batch positions \[1\] hold NaN, Inf or values above 1e\+15"):
        functional_connectivity(x)
    assert torch.isfinite(functional_connectivity(x[:1] * 1e6)).all()  # large but usable scale: exact FC


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.__setitem__((1, 2, 3), float("nan")), r"'batch item 1' \(1 NaN values, first at row 2, column 3\)"),
    (lambda c: c.__setitem__((0, 2, 3), 0.5), r"not symmetric: 'batch item 0' \(\|c - cᵀ\| up to 0\.5"),
    (lambda c: c.__setitem__((0, 4, 4), 1e30), r"'batch item 0' \(1 values too large for FC"),
])
def test_eval_mode_forward_checks_user_connectivity_through_validation(edit, message):
    model = _tiny_encoder()
    connectivity = torch.eye(16).repeat(2, 1, 1)
    edit(connectivity)
    with pytest.raises(BrainMassDataError, match=message):
        model(connectivity=connectivity)


def test_eval_mode_forward_checks_the_valid_points_of_user_time_series():
    model = _tiny_encoder()
    time_series, time_mask = torch.randn(2, 40, 16), torch.ones(2, 40, dtype=torch.bool)
    time_mask[0, 30:] = False
    time_series[0, 35] = float("nan")  # padding: ignored
    assert torch.isfinite(model(time_series=time_series, time_mask=time_mask).pooler_output).all()
    time_series[1, 3, 2] = float("inf")
    with pytest.raises(BrainMassDataError, match=r"'batch item 1' \(1 Inf values, first at time point 3, ROI 2\)"):
        model(time_series=time_series, time_mask=time_mask)


def test_training_forward_does_no_value_check():
    # the training step stays free of host synchronisation: its inputs were checked by the collator
    model = _tiny_encoder().train()
    connectivity = torch.eye(16).repeat(2, 1, 1)
    connectivity[0, 2, 3] = 0.5
    assert model(connectivity=connectivity).pooler_output.shape == (2, 16 * model.config.readout_dim)


def test_label_spellings_of_any_column_become_one_class_each_with_a_warning_in_evaluate():
    from brainmass_hf.evaluation import labels_from_dataset

    ds = _dataset([_good(30, k) for k in range(12)], [f"s{k}" for k in range(12)],
                  dx=["ASD", "asd", "TD ", "Td"] * 3)
    with pytest.warns(BrainMassDataWarning, match=r"Label column 'dx'.*'TD ' -> 'Td'.*'asd' -> 'ASD'"):
        codes, names = labels_from_dataset(ds, "dx")
    assert names == ["ASD", "Td"] and codes.tolist() == [0, 0, 1, 1] * 3


def _cohort_folder(tmp: Path, dx, num_rois=116) -> Path:
    folder = tmp / "cohort"
    folder.mkdir()
    ids = [f"sub-{k:02d}" for k in range(len(dx))]
    for k, subject in enumerate(ids):
        np.save(folder / f"{subject}.npy", _good(40 + k, k)[:, :1].repeat(num_rois, 1) + _noise(40 + k, num_rois, k))
    pd.DataFrame({"subject_id": ids, "dx": dx}).to_csv(folder / "subjects.csv", index=False)
    return folder


def _noise(t, r, seed):
    return np.random.default_rng(100 + seed).standard_normal((t, r))


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("enc") / "encoder"
    from conftest import tiny_config

    BrainMassModel(tiny_config()).save_pretrained(path)
    return path


def test_cli_finetune_refuses_a_one_class_label_column_of_any_name_before_training(encoder_dir, tmp_path, capsys):
    from brainmass_hf.cli import main

    folder = _cohort_folder(tmp_path, ["ASD"] * 8)
    argv = ["finetune", "--model_name_or_path", str(encoder_dir), "--data", str(folder), "--label_column", "dx",
            "--output_dir", str(tmp_path / "ft"), "--max_steps", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "'dx' holds a single class ('ASD')" in err and "Choose another label column" in err
    assert not (tmp_path / "ft" / "model.safetensors").exists()


def test_python_finetune_refuses_a_one_class_label_column_before_training(encoder_dir, tmp_path):
    from brainmass_hf.training import finetune

    one_class = _dataset([_noise(40, 116, k) for k in range(6)], [f"s{k}" for k in range(6)], dx=["TD"] * 6)
    with pytest.raises(BrainMassDataError, match=r"'dx' holds a single class \('TD'\)"):
        finetune(str(encoder_dir), one_class, label_column="dx", output_dir=str(tmp_path / "a"), max_steps=1)


@pytest.mark.slow
def test_cli_finetune_merges_label_spellings_with_a_warning(encoder_dir, tmp_path):
    from brainmass_hf import cli

    folder = _cohort_folder(tmp_path, ["ASD", "asd", "TD ", "Td"] * 3)
    with pytest.warns(BrainMassDataWarning, match=r"'asd' -> 'ASD'"):
        trainer = cli.finetune_main(
            ["--model_name_or_path", str(encoder_dir), "--data", str(folder), "--label_column", "dx",
             "--test_size", "0.34", "--output_dir", str(tmp_path / "ft"), "--max_steps", "1",
             "--per_device_train_batch_size", "4"])
    assert trainer.model.config.id2label == {0: "ASD", 1: "Td"}


@pytest.mark.slow
def test_pretrain_cli_with_the_same_seed_gives_identical_encoders(tmp_path):
    from conftest import TINY_OVERRIDES
    from safetensors.numpy import load_file

    from brainmass_hf.cli import main

    np.savez(tmp_path / "b.npz", **{f"ts_s{k}": _good(40 + k, k)[:, :1].repeat(16, 1) + _noise(40 + k, 16, k)
                                    for k in range(8)})
    weights = []
    for run in ("a", "b"):
        torch.manual_seed(int(run == "b"))  # a different global RNG state before each run
        assert main(["pretrain", "--data", str(tmp_path / "b.npz"), "--preset", "tiny", "--config_overrides",
                     TINY_OVERRIDES + ",mrc_num_masked=4", "--seed", "7", "--max_steps", "1", "--save_strategy", "no",
                     "--per_device_train_batch_size", "4", "--output_dir", str(tmp_path / run)]) == 0
        weights.append(load_file(tmp_path / run / "encoder" / "model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    assert all(np.array_equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_leave_one_site_out_names_the_unscored_one_class_site_and_counts_scored_splits():
    from brainmass_hf.evaluation import EvaluationReport, leave_one_site_out, run_paper_protocol

    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 6 + [1] * 4)
    sites = np.array(["A"] * 6 + ["B"] * 6 + ["C"] * 4)  # site C: one class
    features = rng.standard_normal((labels.size, 8)) + labels[:, None]
    result = run_paper_protocol(features, labels, splits=list(leave_one_site_out(sites)))
    assert np.isnan(result.splits[2]["balanced_accuracy"]) and np.isnan(result.splits[2]["auc"])
    assert result.summary["balanced_accuracy"]["n"] == 2 and result.summary["auc"]["n"] == 2
    text = EvaluationReport([result], ["TD", "ASD"], {"test_sites": ["A", "B", "C"]}).to_markdown()
    assert "| paper | BrainMass | 3 (2 scored) |" in text
    assert "split(s) 2 (site 'C') test one class only" in text and "(2 of 3 splits scored)" in text


def test_evaluate_records_the_site_of_each_leave_one_site_out_split():
    import brainmass_hf.evaluation as evaluation

    ds = _dataset([_good(30, k) for k in range(10)], [f"s{k}" for k in range(10)], label=[0, 1] * 4 + [1, 1],
                  site=["b"] * 4 + ["a"] * 4 + ["c"] * 2)
    report = evaluation.evaluate(BrainMassModel(_config()).eval(), ds, protocols="paper",
                                 site_column="site", cv="leave_one_site_out", include_random_baseline=False,
                                 show_progress=False)
    assert report.settings["test_sites"] == ["a", "b", "c"]
    assert "split(s) 2 (site 'c') test one class only" in report.to_markdown()


def test_a_second_run_into_a_busy_output_folder_fails_at_once_and_a_stale_lock_does_not_block(tmp_path, capsys,
                                                                                             monkeypatch):
    from brainmass_hf import training
    from brainmass_hf.cli import main
    from brainmass_hf.output_folder import LOCK_NAME, output_folder_lock

    monkeypatch.setattr(training, "pretrain", lambda *a, **k: pytest.fail("pretraining ran in a busy folder"))
    with output_folder_lock(tmp_path / "run") as folder:
        assert (folder / LOCK_NAME).read_text().strip() == str(os.getpid())
        assert main(["pretrain", "--output_dir", str(tmp_path / "run"), "--preset", "tiny"]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"is in use by another brainmass run (PID {os.getpid()}" in err and "choose another folder" in err
        with pytest.raises(OSError, match="in use by another brainmass run"):
            with output_folder_lock(tmp_path / "run"):
                pass
    assert not (tmp_path / "run" / LOCK_NAME).exists()  # released and removed
    (tmp_path / "run" / LOCK_NAME).write_text("999999999\n")  # left by a killed run: no process holds it
    with output_folder_lock(tmp_path / "run"):
        assert (tmp_path / "run" / LOCK_NAME).read_text().strip() == str(os.getpid())


def test_python_pretrain_holds_the_output_folder_lock_while_it_trains(tmp_path):
    from conftest import tiny_config
    from transformers import TrainerCallback

    from brainmass_hf.output_folder import LOCK_NAME
    from brainmass_hf.training import BrainMassPretrainingArguments, pretrain

    seen = []

    class Look(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            seen.append((Path(args.output_dir) / LOCK_NAME).read_text().strip())

    ds = _dataset([_good(40 + k, k)[:, :1].repeat(16, 1) + _noise(40 + k, 16, k) for k in range(4)],
                  [f"s{k}" for k in range(4)])
    args = BrainMassPretrainingArguments(output_dir=str(tmp_path / "pt"), max_steps=1, save_strategy="no",
                                         per_device_train_batch_size=4, report_to="none")
    pretrain(ds, tiny_config(num_rois=16, mrc_num_masked=4), args, callbacks=[Look()])
    assert seen == [str(os.getpid())] and not (tmp_path / "pt" / LOCK_NAME).exists()


WRITING_COMMANDS = {  # command line with an output folder that is a file; the library function it must not reach
    "pretrain": (["pretrain", "--output_dir", "{out}"], "brainmass_hf.training.pretrain"),
    "finetune": (["finetune", "--model_name_or_path", "{enc}", "--output_dir", "{out}"], "brainmass_hf.training.finetune"),
    "evaluate": (["evaluate", "--model", "{enc}", "--data", "devfmri", "--out", "{out}"], "brainmass_hf.evaluation.evaluate"),
    "demo": (["demo", "--fast", "--out", "{out}"], "brainmass_hf.demo.run_demo"),
    "explain": (["explain", "--model", "{enc}", "--data", "devfmri", "--out", "{out}"], "brainmass_hf.interpret.explain"),
    "extract": (["extract", "--scans", "x.nii.gz", "--atlas", "a.nii.gz", "--out", "{out}"],
                "brainmass_hf.data.extract_time_series"),
    "convert-official": (["convert-official", "x.pth", "--out", "{out}"],
                         "brainmass_hf.convert_official.convert_official"),
}


@pytest.mark.parametrize("command", sorted(WRITING_COMMANDS))
def test_every_writing_command_checks_its_output_folder_before_any_work(command, encoder_dir, tmp_path, capsys,
                                                                        monkeypatch):
    from brainmass_hf.cli import main

    template, target = WRITING_COMMANDS[command]
    monkeypatch.setattr(target, lambda *a, **k: pytest.fail(f"{target} ran before the output folder was checked"))
    (tmp_path / "taken").write_text("a file, not a folder")
    argv = [a.format(out=tmp_path / "taken" / "out", enc=encoder_dir) for a in template]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"'{tmp_path / 'taken' / 'out'}' cannot be written" in err and "choose a folder you can write to" in err


@pytest.mark.slow
def test_push_to_a_refused_endpoint_prints_one_line_not_a_traceback(encoder_dir, tmp_path):
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:  # a port nobody listens on: the connection is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_TOKEN="hf_dummy", HF_HOME=str(tmp_path / "hf"),
               HF_HUB_DISABLE_XET="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    code = f"import sys; from brainmass_hf.cli import main; sys.exit(main(['push', {str(encoder_dir)!r}, 'user/x']))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("brainmass push: error: the Hub at http://127.0.0.1:") and "could not be reached" in last
