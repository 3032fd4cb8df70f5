"""Tests for brainmass_hf.data: every input format, the real bundled cohorts, the malformed-input catalogue and
NIfTI extraction. One claim per test; synthetic files are tiny and written to tmp_path."""

import re
import warnings
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest

from brainmass_hf.data import (
    BUNDLED_DIR,
    BrainMassDataError,
    BrainMassDataWarning,
    bundled_roi_names,
    extract_time_series,
    load_dataset_auto,
    load_devfmri,
    load_npz_bundle,
    load_time_series_folder,
    match_ids,
    resolve_dataset,
    time_series_list,
    validate_dataset,
    validate_time_series,
)

REPO = Path(__file__).resolve().parents[1]
STAGES_SLICE = REPO / "tests" / "data" / "stages_slice"
DOCS = REPO / "docs" / "data_formats.md"
R = 5


def _cohort(lengths=(20, 24, 30), num_rois=R, seed=0):
    """{scan id: (T, R) float64 array} with distinct lengths, so auto orientation is decidable."""
    rng = np.random.default_rng(seed)
    return {f"sub-{k + 1:02d}": rng.standard_normal((t, num_rois)) for k, t in enumerate(lengths)}


def _phenotype(tmp_path, ids, **columns):
    table = pd.DataFrame({"subject_id": list(ids), **columns})
    path = tmp_path / "phenotype.csv"
    table.to_csv(path, index=False)
    return path


def _write_npy(folder, cohort, transpose=False):
    folder.mkdir(parents=True, exist_ok=True)
    for key, a in cohort.items():
        np.save(folder / f"{key}.npy", a.T if transpose else a)
    return folder


def _assert_loaded(ds, cohort, atol=1e-6):
    arrays = dict(zip(ds["subject_id"], time_series_list(ds)))
    assert sorted(arrays) == sorted(cohort)
    for key, a in cohort.items():
        np.testing.assert_allclose(arrays[key], a, atol=atol)


# ---------------------------------------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------------------------------------


def test_npy_folder_loads_arrays_unchanged(tmp_path):
    cohort = _cohort()
    ds = load_time_series_folder(_write_npy(tmp_path / "scans", cohort))
    _assert_loaded(ds, cohort)


def test_abide_1d_files_with_comment_header_join_zero_padded_ids(tmp_path):
    cohort = {"Caltech_0051456": _cohort()["sub-01"], "Caltech_0051457": _cohort()["sub-02"]}
    folder = tmp_path / "abide"
    folder.mkdir()
    for key, a in cohort.items():
        header = "\t".join(f"#{2001 + r}" for r in range(R))
        np.savetxt(folder / f"{key}_rois_aal.1D", a, delimiter="\t", header=header, comments="")
    pheno = tmp_path / "Phenotypic.csv"
    pd.DataFrame({"SUB_ID": [51456, 51457], "DX_GROUP": [1, 2]}).to_csv(pheno, index=False)
    ds = load_time_series_folder(folder, pheno, id_column="SUB_ID", label_column="DX_GROUP")
    assert ds["subject_id"][:] == ["51456", "51457"]
    np.testing.assert_allclose(time_series_list(ds)[0], cohort["Caltech_0051456"], atol=1e-6)


def test_whitespace_txt_files_load(tmp_path):
    cohort = _cohort()
    folder = tmp_path / "txt"
    folder.mkdir()
    for key, a in cohort.items():
        np.savetxt(folder / f"{key}.txt", a)
    _assert_loaded(load_time_series_folder(folder), cohort)


def test_csv_with_header_row_loads(tmp_path):
    cohort = _cohort()
    folder = tmp_path / "csv"
    folder.mkdir()
    for key, a in cohort.items():
        pd.DataFrame(a, columns=[f"roi{r}" for r in range(R)]).to_csv(folder / f"{key}.csv", index=False)
    _assert_loaded(load_time_series_folder(folder), cohort)


def test_csv_without_header_loads(tmp_path):
    cohort = _cohort()
    folder = tmp_path / "csv"
    folder.mkdir()
    for key, a in cohort.items():
        np.savetxt(folder / f"{key}.csv", a, delimiter=",")
    _assert_loaded(load_time_series_folder(folder), cohort)


def test_tsv_loads(tmp_path):
    cohort = _cohort()
    folder = tmp_path / "tsv"
    folder.mkdir()
    for key, a in cohort.items():
        pd.DataFrame(a).to_csv(folder / f"{key}.tsv", sep="\t", index=False)
    _assert_loaded(load_time_series_folder(folder), cohort)


def test_mat_files_load_the_named_key(tmp_path):
    import scipy.io

    cohort = _cohort()
    folder = tmp_path / "mat"
    folder.mkdir()
    for key, a in cohort.items():
        scipy.io.savemat(folder / f"{key}.mat", {"tc": a.T, "motion": np.zeros((a.shape[0], 6))})
    _assert_loaded(load_time_series_folder(folder, mat_key="tc", orientation="roi_by_time"), cohort)


def test_npz_bundle_strips_ts_prefix_from_keys(tmp_path):
    cohort = _cohort()
    np.savez(tmp_path / "bundle.npz", **{f"ts_{k}": a for k, a in cohort.items()})
    _assert_loaded(load_npz_bundle(tmp_path / "bundle.npz"), cohort)


def test_roi_by_time_files_are_detected_and_transposed(tmp_path):
    cohort = _cohort()
    ds = load_time_series_folder(_write_npy(tmp_path / "scans", cohort, transpose=True))
    _assert_loaded(ds, cohort)


def test_explicit_roi_by_time_orientation_transposes_equal_shapes(tmp_path):
    cohort = _cohort(lengths=(20, 20))
    ds = load_time_series_folder(_write_npy(tmp_path / "scans", cohort, transpose=True), orientation="roi_by_time")
    _assert_loaded(ds, cohort)


def test_num_rois_settles_auto_orientation_for_equal_shapes(tmp_path):
    cohort = _cohort(lengths=(20, 20))
    ds = load_time_series_folder(_write_npy(tmp_path / "scans", cohort, transpose=True), num_rois=R)
    _assert_loaded(ds, cohort)


def test_load_dataset_auto_reads_folder_with_one_bundle_and_subjects_csv(tmp_path):
    cohort = _cohort()
    np.savez(tmp_path / "timeseries.npz", **{f"ts_{k}": a for k, a in cohort.items()})
    pd.DataFrame({"scan": list(cohort), "group": ["a", "b", "a"]}).to_csv(tmp_path / "subjects.csv", index=False)
    ds = load_dataset_auto(tmp_path, label_column="group")
    assert ds.features["label"].names == ["a", "b"]


# ---------------------------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------------------------


def test_schema_columns_and_feature_types(tmp_path):
    cohort = _cohort()
    pheno = _phenotype(tmp_path, cohort, dx=["ASD", "TD", "TD"], centre=["NYU", "NYU", "UCLA"], age=[9.5, 12.0, 30.1])
    ds = load_time_series_folder(_write_npy(tmp_path / "scans", cohort), pheno, label_column="dx",
                                 site_column="centre")
    assert ds.features == datasets.Features({
        "subject_id": datasets.Value("string"),
        "time_series": datasets.Array2D(shape=(None, R), dtype="float32"),
        "num_timepoints": datasets.Value("int32"),
        "num_constant_rois": datasets.Value("int32"),
        "label": datasets.ClassLabel(names=["ASD", "TD"]),
        "site": datasets.Value("string"),
        "age": datasets.Value("float64"),
    })


def test_num_timepoints_column_holds_each_scan_length(tmp_path):
    ds = load_time_series_folder(_write_npy(tmp_path / "scans", _cohort()))
    assert ds["num_timepoints"][:] == [20, 24, 30]


def test_small_integer_label_codes_become_class_label(tmp_path):
    cohort = _cohort()
    pheno = _phenotype(tmp_path, cohort, dx=[1, 2, 1])
    ds = load_time_series_folder(_write_npy(tmp_path / "scans", cohort), pheno, label_column="dx")
    assert (ds.features["label"].names, ds["label"][:]) == (["1", "2"], [0, 1, 0])


def test_continuous_label_becomes_float32(tmp_path):
    cohort = _cohort()
    pheno = _phenotype(tmp_path, cohort, score=[0.5, -1.25, 3.0])
    ds = load_time_series_folder(_write_npy(tmp_path / "scans", cohort), pheno, label_column="score")
    assert ds.features["label"] == datasets.Value("float32")


def test_label_names_fix_the_class_order(tmp_path):
    cohort = _cohort()
    pheno = _phenotype(tmp_path, cohort, group=["patient", "control", "control"])
    ds = load_time_series_folder(_write_npy(tmp_path / "scans", cohort), pheno, label_column="group",
                                 label_names=["control", "patient"])
    assert ds["label"][:] == [1, 0, 0]


def test_phenotype_row_order_sets_row_order(tmp_path):
    cohort = _cohort()
    pheno = _phenotype(tmp_path, ["sub-03", "sub-01", "sub-02"])
    ds = load_time_series_folder(_write_npy(tmp_path / "scans", cohort), pheno)
    assert ds["subject_id"][:] == ["sub-03", "sub-01", "sub-02"]


def test_id_tokens_do_not_confuse_sub_1_with_sub_10():
    assert match_ids(["sub-10_bold", "sub-1_bold"], ["sub-1", "sub-10"]) == {
        "sub-10_bold": "sub-10", "sub-1_bold": "sub-1"}


def test_id_without_bids_sub_prefix_matches():
    assert match_ids(["pixar001"], ["sub-pixar001"]) == {"pixar001": "sub-pixar001"}


def test_id_without_sub_prefix_must_start_the_file_name():
    assert match_ids(["sub-02_run-01"], ["sub-01"]) == {}


def test_zero_padded_file_id_matches_numeric_phenotype_id():
    assert match_ids(["Caltech_0051456_rois_aal"], ["51456", "5145"]) == {"Caltech_0051456_rois_aal": "51456"}


# ---------------------------------------------------------------------------------------------------------
# Real data
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def devfmri():
    return load_devfmri()


def test_bundled_cohort_has_155_scans(devfmri):
    assert devfmri.num_rows == 155


def test_bundled_cohort_has_122_children_and_33_adults(devfmri):
    names = devfmri.features["label"].names
    labels = [names[i] for i in devfmri["label"]]
    assert (names, labels.count("child"), labels.count("adult")) == (["child", "adult"], 122, 33)


def test_bundled_cohort_is_168_by_116_finite_float32(devfmri):
    arrays = time_series_list(devfmri)
    assert {a.shape for a in arrays} == {(168, 116)}
    assert all(a.dtype == np.float32 and np.isfinite(a).all() for a in arrays)


def test_bundled_cohort_time_series_is_array2d_with_116_rois(devfmri):
    assert devfmri.features["time_series"] == datasets.Array2D(shape=(None, 116), dtype="float32")


def test_bundled_cohort_site_is_ds000228(devfmri):
    assert set(devfmri["site"]) == {"ds000228"}


def test_bundled_cohort_ids_are_bids_subjects(devfmri):
    assert devfmri["subject_id"][0] == "sub-pixar001"


def test_bundled_roi_names_are_the_116_aal_regions_in_label_order():
    names = bundled_roi_names("aal116")
    assert (len(set(names)), names[0], names[30], names[-1]) == (116, "Precentral_L", "Cingulum_Ant_L", "Vermis_10")


def test_stages_slice_loads_419_raw_scale_rois_with_trial_arm_labels():
    # 234 time points < 419 ROIs: equal shapes with fewer rows than columns need num_rois (or orientation=)
    ds = load_npz_bundle(STAGES_SLICE / "timeseries.npz", STAGES_SLICE / "subjects.csv", id_column="scan",
                         label_column="trial_arm", num_rois=419)
    arrays = time_series_list(ds)
    assert ds.num_rows == 6 and {a.shape for a in arrays} == {(234, 419)}
    assert ds.features["label"].names == ["medication", "placebo", "unknown"]
    assert min(float(a.mean()) for a in arrays) > 100  # raw scale, not z-scored


# ---------------------------------------------------------------------------------------------------------
# Malformed input: one BrainMassDataError naming the file or scan.
# ---------------------------------------------------------------------------------------------------------


def test_inconsistent_roi_count_names_the_odd_scan(tmp_path):
    cohort = _cohort()
    cohort["sub-04"] = np.random.default_rng(1).standard_normal((26, R + 2))
    with pytest.raises(BrainMassDataError, match=r"sub-04.*\(R=7\)"):
        load_time_series_folder(_write_npy(tmp_path / "scans", cohort), orientation="time_by_roi")


def test_inconsistent_roi_count_under_auto_orientation_names_the_odd_file(tmp_path):
    cohort = _cohort()
    cohort["sub-04"] = np.random.default_rng(1).standard_normal((26, R + 2))
    with pytest.raises(BrainMassDataError, match="sub-04"):
        load_time_series_folder(_write_npy(tmp_path / "scans", cohort))


def test_nan_names_scan_count_and_first_position(tmp_path):
    cohort = _cohort()
    cohort["sub-02"][[3, 7], 1] = np.nan
    with pytest.raises(BrainMassDataError, match=r"'sub-02' \(2 NaN values, first at time point 3, ROI 1\)"):
        load_time_series_folder(_write_npy(tmp_path / "scans", cohort))


def test_inf_names_the_scan(tmp_path):
    cohort = _cohort()
    cohort["sub-03"][0, 0] = np.inf
    with pytest.raises(BrainMassDataError, match=r"'sub-03' \(1 Inf"):
        load_time_series_folder(_write_npy(tmp_path / "scans", cohort))


def test_too_short_scan_names_the_scan(tmp_path):
    cohort = _cohort(lengths=(20, 6, 30))
    with pytest.raises(BrainMassDataError, match=r"'sub-02' \(T=6\)"):
        load_time_series_folder(_write_npy(tmp_path / "scans", cohort), num_rois=R)


def test_duplicated_phenotype_ids_are_named(tmp_path):
    cohort = _cohort()
    pheno = _phenotype(tmp_path, ["sub-01", "sub-02", "sub-03", "sub-02"])
    with pytest.raises(BrainMassDataError, match="Duplicated.*'sub-02'"):
        load_time_series_folder(_write_npy(tmp_path / "scans", cohort), pheno)


def test_phenotype_row_without_file_is_named(tmp_path):
    cohort = _cohort()
    pheno = _phenotype(tmp_path, [*cohort, "sub-99"])
    with pytest.raises(BrainMassDataError, match=r"row\(s\) of .* have no file: 'sub-99'"):
        load_time_series_folder(_write_npy(tmp_path / "scans", cohort), pheno)


def test_file_without_phenotype_row_is_named(tmp_path):
    cohort = _cohort()
    pheno = _phenotype(tmp_path, ["sub-01", "sub-02"])
    with pytest.raises(BrainMassDataError, match=r"file\(s\) have no row in .*: 'sub-03'"):
        load_time_series_folder(_write_npy(tmp_path / "scans", cohort), pheno)


def test_on_missing_warn_drops_the_unmatched_file_with_a_warning(tmp_path):
    cohort = _cohort()
    pheno = _phenotype(tmp_path, ["sub-01", "sub-02"])
    with pytest.warns(BrainMassDataWarning, match="sub-03"):
        ds = load_time_series_folder(_write_npy(tmp_path / "scans", cohort), pheno, on_missing="warn")
    assert ds["subject_id"][:] == ["sub-01", "sub-02"]


def test_one_id_matching_two_files_is_an_error(tmp_path):
    cohort = {"sub-01_ses-1": _cohort()["sub-01"], "sub-01_ses-2": _cohort()["sub-02"]}
    pheno = _phenotype(tmp_path, ["sub-01"])
    with pytest.raises(BrainMassDataError, match="sub-01_ses-1"):
        load_time_series_folder(_write_npy(tmp_path / "scans", cohort), pheno)


def test_missing_mat_key_lists_the_available_keys(tmp_path):
    import scipy.io

    folder = tmp_path / "mat"
    folder.mkdir()
    scipy.io.savemat(folder / "sub-01.mat", {"tc": np.ones((R, 20))})
    with pytest.raises(BrainMassDataError, match=r"sub-01\.mat has no variable 'ROISignals'.*'tc'"):
        load_time_series_folder(folder, mat_key="ROISignals", orientation="roi_by_time")


def test_ambiguous_orientation_asks_for_orientation(tmp_path):
    cohort = _cohort(lengths=(20, 20))
    with pytest.raises(BrainMassDataError, match="Pass orientation="):
        load_time_series_folder(_write_npy(tmp_path / "scans", cohort))


def test_missing_label_column_lists_the_columns(tmp_path):
    cohort = _cohort()
    pheno = _phenotype(tmp_path, cohort, dx=[0, 1, 0])
    with pytest.raises(BrainMassDataError, match=r"Label column 'diagnosis' is not in .*'dx'"):
        load_time_series_folder(_write_npy(tmp_path / "scans", cohort), pheno, label_column="diagnosis")


def test_unreadable_file_is_named(tmp_path):
    folder = _write_npy(tmp_path / "scans", _cohort())
    (folder / "sub-02.npy").write_bytes(b"not a numpy file")
    with pytest.raises(BrainMassDataError, match=r"Could not read .*sub-02\.npy"):
        load_time_series_folder(folder)


def test_missing_label_value_names_the_scan(tmp_path):
    cohort = _cohort()
    pheno = _phenotype(tmp_path, cohort, dx=["a", None, "b"])
    with pytest.raises(BrainMassDataError, match="no value in label column 'dx': 'sub-02'"):
        load_time_series_folder(_write_npy(tmp_path / "scans", cohort), pheno, label_column="dx")


def test_constant_roi_is_counted_in_its_column(tmp_path):
    cohort = _cohort()
    cohort["sub-02"][:, [0, 3]] = 7.0
    with pytest.warns(BrainMassDataWarning):
        ds = load_time_series_folder(_write_npy(tmp_path / "scans", cohort))
    assert ds["num_constant_rois"][:] == [0, 2, 0]


def test_constant_roi_warning_names_the_scan():
    flat = np.random.default_rng(1).standard_normal((20, R))
    flat[:, :2] = 3.0
    arrays = [flat, np.random.default_rng(0).standard_normal((20, R))]
    with pytest.warns(BrainMassDataWarning, match=r"'flat' \(2\)"):
        validate_time_series(arrays, ["flat", "ok"])


def test_validate_time_series_returns_float32_scans_in_order():
    arrays = [np.random.default_rng(k).standard_normal((t, R)) for k, t in enumerate((12, 15))]
    scans = validate_time_series(arrays, ["a", "b"])
    assert [(a.dtype, a.shape) for a in scans] == [(np.float32, (12, R)), (np.float32, (15, R))]
    np.testing.assert_allclose(scans[1], arrays[1], rtol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# Issue 7: label/site columns pass on (item 3), whole-dataset validation (11), silent misreads (12), label
# spellings and single classes (13). Each test fails on the code before the fix.
# ---------------------------------------------------------------------------------------------------------


def test_shipped_layout_folder_with_label_column_gives_the_label_column():
    # the bundled folder: timeseries_aal116.npz + subjects.csv (subject, group, label, ...) + rois_aal116.csv
    from brainmass_hf.evaluation import labels_from_dataset

    ds = resolve_dataset(BUNDLED_DIR / "devfmri_aal116")
    assert "label_original" not in ds.column_names
    assert ds.features["label"].names == ["0", "1"]
    codes, names = labels_from_dataset(ds, "label")  # what `--label-column label` does with the loaded folder
    assert (int(codes.sum()), len(codes), names) == (33, 155, ["0", "1"])


def test_resolve_dataset_passes_label_and_site_columns_on(tmp_path):
    cohort = _cohort()
    np.savez(tmp_path / "timeseries.npz", **{f"ts_{k}": a for k, a in cohort.items()})
    pd.DataFrame({"subject_id": list(cohort), "site": ["x", "y", "x"], "dx": ["a", "b", "a"]}).to_csv(
        tmp_path / "subjects.csv", index=False)
    ds = resolve_dataset(str(tmp_path), label_column="dx")
    assert (ds.features["label"].names, ds["site"][:]) == (["a", "b"], ["x", "y", "x"])


def test_validate_dataset_names_every_bad_scan_of_a_load_from_disk_dataset(tmp_path):
    from brainmass_hf import BrainMassConfig

    rng = np.random.default_rng(0)
    nan_scan = rng.standard_normal((30, 20))
    nan_scan[4, 2] = np.nan
    scans = [rng.standard_normal((30, 20)), nan_scan, rng.standard_normal((11, 20))]
    datasets.Dataset.from_dict({"subject_id": ["ok", "has-nan", "too-short"], "time_series": scans}).save_to_disk(
        tmp_path / "ds")
    ds = datasets.load_from_disk(str(tmp_path / "ds"))
    with pytest.raises(BrainMassDataError, match=r"2 of 3 scan\(s\).*'has-nan' \(1 NaN.*'too-short' \(T=11\)"):
        validate_dataset(ds, BrainMassConfig(num_rois=20, num_attention_heads=4))


def test_validate_dataset_needs_the_pfc_view_length_only_for_pfc():
    from brainmass_hf import BrainMassConfig
    from brainmass_hf.connectivity import min_scan_length

    config = BrainMassConfig(num_rois=20, num_attention_heads=4)
    shortest = min_scan_length(config)
    ds = datasets.Dataset.from_dict({"time_series": [np.random.default_rng(0).standard_normal((shortest - 1, 20))]})
    validate_dataset(ds, config, pfc=False)
    with pytest.raises(BrainMassDataError, match=rf"'row 0' \(T={shortest - 1}\)"):
        validate_dataset(ds, config)


def test_validate_dataset_refuses_a_single_class_label_column():
    from brainmass_hf import BrainMassConfig

    scans = [np.random.default_rng(k).standard_normal((30, 20)) for k in range(3)]
    ds = datasets.Dataset.from_dict({"time_series": scans, "label": [1, 1, 1]})
    with pytest.raises(BrainMassDataError, match="single class"):
        validate_dataset(ds, BrainMassConfig(num_rois=20, num_attention_heads=4), label_column="label")


def test_loader_default_minimum_is_what_pretraining_needs(tmp_path):
    from brainmass_hf import BrainMassConfig
    from brainmass_hf.connectivity import min_scan_length

    shortest = min_scan_length(BrainMassConfig())
    ok = load_time_series_folder(_write_npy(tmp_path / "ok", _cohort(lengths=(shortest, 20))), num_rois=R)
    assert ok["num_timepoints"][:] == [shortest, 20]
    with pytest.raises(BrainMassDataError, match=rf"'sub-01' \(T={shortest - 1}\)"):
        load_time_series_folder(_write_npy(tmp_path / "short", _cohort(lengths=(shortest - 1, 20))), num_rois=R)


def test_npz_bundle_stored_roi_by_time_with_varying_lengths_is_transposed(tmp_path):
    cohort = _cohort()
    np.savez(tmp_path / "bundle.npz", **{f"ts_{k}": a.T for k, a in cohort.items()})
    _assert_loaded(load_npz_bundle(tmp_path / "bundle.npz"), cohort)


def test_npz_bundle_stored_roi_by_time_with_equal_lengths_is_an_error_not_a_misread(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "bundle.npz", **{f"ts_s{k}": rng.standard_normal((116, 168)) for k in range(3)})
    with pytest.raises(BrainMassDataError, match=r"\(116, 168\).*num_rois="):
        load_npz_bundle(tmp_path / "bundle.npz")
    ds = load_npz_bundle(tmp_path / "bundle.npz", num_rois=116)
    assert ds.features["time_series"].shape == (None, 116)


def test_npz_bundle_scan_with_as_many_time_points_as_rois_follows_the_convention(tmp_path):
    cohort = _cohort(lengths=(20, R, 30))  # sub-02 is R x R (ABIDE has a 116 x 116 scan)
    np.savez(tmp_path / "bundle.npz", **{f"ts_{k}": a for k, a in cohort.items()})
    _assert_loaded(load_npz_bundle(tmp_path / "bundle.npz", num_rois=R, min_timepoints=R), cohort)


SHARED_ABIDE = REPO.parent / "shared" / "data" / "abide1_aal116"


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_ABIDE.is_dir(), reason="../shared/data/abide1_aal116 is not here")
def test_shared_abide_folder_loads_through_resolve_dataset_with_its_site_column():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BrainMassDataWarning)  # some ABIDE scans have constant ROIs
        ds = resolve_dataset(SHARED_ABIDE)
    assert ds.num_rows == 783 and ds.features["time_series"].shape == (None, 116)
    assert ds.features["site"] == datasets.Value("string") and "CMU" in set(ds["site"])


def test_headerless_csv_whose_first_row_is_integers_keeps_that_row(tmp_path):
    folder = tmp_path / "csv"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in (1, 2):
        a = rng.standard_normal((20 + k, R))
        a[0] = [3, -1, 7, 2, 0]  # integer signal values, not column labels
        np.savetxt(folder / f"sub-{k:02d}.csv", a, delimiter=",", fmt="%g")
    ds = load_time_series_folder(folder)
    assert ds["num_timepoints"][:] == [21, 22]
    np.testing.assert_array_equal(time_series_list(ds)[0][0], [3, -1, 7, 2, 0])


def test_values_beyond_float32_range_are_named_not_turned_into_inf(tmp_path):
    cohort = _cohort()
    cohort["sub-02"][5, 1] = 1e39
    with pytest.raises(BrainMassDataError, match=r"'sub-02' \(1 values beyond float32 range.*time point 5, ROI 1"):
        load_time_series_folder(_write_npy(tmp_path / "scans", cohort))


def test_all_zero_scan_is_refused(tmp_path):
    cohort = _cohort()
    cohort["sub-03"][:] = 0.0
    with pytest.raises(BrainMassDataError, match=r"'sub-03' \(all zeros\)"):
        load_time_series_folder(_write_npy(tmp_path / "scans", cohort))


def test_label_spellings_differing_in_case_or_space_merge_with_a_warning(tmp_path):
    cohort = _cohort(lengths=(20, 24, 30, 34))
    pheno = _phenotype(tmp_path, cohort, dx=["ASD", "asd ", "TD", "ASD"])
    with pytest.warns(BrainMassDataWarning, match=r"'asd ' -> 'ASD'"):
        ds = load_time_series_folder(_write_npy(tmp_path / "scans", cohort), pheno, label_column="dx")
    assert (ds.features["label"].names, ds["label"][:]) == (["ASD", "TD"], [0, 0, 1, 0])


def test_single_class_label_column_is_an_error(tmp_path):
    cohort = _cohort()
    pheno = _phenotype(tmp_path, cohort, dx=["ASD", "ASD", "asd"])
    with pytest.raises(BrainMassDataError, match=r"'dx' holds a single class \('ASD'\)"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BrainMassDataWarning)
            load_time_series_folder(_write_npy(tmp_path / "scans", cohort), pheno, label_column="dx")


# ---------------------------------------------------------------------------------------------------------
# NIfTI extraction
# ---------------------------------------------------------------------------------------------------------


def _synthetic_scan(tmp_path, num_timepoints=30, seed=0):
    """A 6×6×4 scan with 3 labelled parcels (label values 10, 20, 30; 0 elsewhere)."""
    import nibabel as nib

    rng = np.random.default_rng(seed)
    atlas = np.zeros((6, 6, 4), dtype=np.int16)
    atlas[:3, :, :2] = 10
    atlas[3:, :3, :] = 20
    atlas[3:, 3:, 2:] = 30
    data = rng.standard_normal((6, 6, 4, num_timepoints)) * 5 + 100
    scan_path, atlas_path = tmp_path / "sub-01_bold.nii.gz", tmp_path / "atlas.nii.gz"
    nib.save(nib.Nifti1Image(data.astype(np.float32), np.eye(4)), scan_path)
    nib.save(nib.Nifti1Image(atlas, np.eye(4)), atlas_path)
    expected = np.stack([data[atlas == v].mean(axis=0) for v in (10, 20, 30)], axis=1)
    return scan_path, atlas_path, expected


def test_extraction_equals_numpy_parcel_means(tmp_path):
    scan, atlas, expected = _synthetic_scan(tmp_path)
    (series,) = extract_time_series([scan], atlas, standardize=False, show_progress=False)
    np.testing.assert_allclose(series, expected, rtol=1e-5)


def test_extraction_with_standardize_gives_zscored_columns(tmp_path):
    scan, atlas, expected = _synthetic_scan(tmp_path)
    (series,) = extract_time_series([scan], atlas, standardize="zscore_sample", show_progress=False)
    zscored = (expected - expected.mean(0)) / expected.std(0, ddof=1)
    np.testing.assert_allclose(series, zscored, atol=1e-4)


def test_extraction_zero_fills_a_label_lost_in_resampling_and_warns(tmp_path):
    import nibabel as nib

    scan, atlas_path, _ = _synthetic_scan(tmp_path)
    # A 12×12×8 atlas at 0.5 mm: label 40 sits on one odd voxel that a 1 mm nearest-neighbour grid skips.
    fine = np.repeat(np.repeat(np.repeat(np.asanyarray(nib.load(atlas_path).dataobj), 2, 0), 2, 1), 2, 2)
    fine[1, 1, 1] = 40
    fine_path = tmp_path / "fine_atlas.nii.gz"
    nib.save(nib.Nifti1Image(fine, np.diag([0.5, 0.5, 0.5, 1.0])), fine_path)
    with pytest.warns(BrainMassDataWarning, match="'40'"):
        (series,) = extract_time_series([scan], fine_path, standardize=False, show_progress=False)
    assert series.shape == (30, 4) and not series[:, 3].any()


def test_extraction_rejects_a_3d_scan_naming_it(tmp_path):
    import nibabel as nib

    _, atlas, _ = _synthetic_scan(tmp_path)
    nib.save(nib.Nifti1Image(np.ones((6, 6, 4), np.float32), np.eye(4)), tmp_path / "sub-02_T1w.nii.gz")
    with pytest.raises(BrainMassDataError, match="sub-02_T1w"):
        extract_time_series([tmp_path / "sub-02_T1w.nii.gz"], atlas, show_progress=False)


def test_extraction_rejects_a_probabilistic_atlas(tmp_path):
    import nibabel as nib

    scan, _, _ = _synthetic_scan(tmp_path)
    nib.save(nib.Nifti1Image(np.full((6, 6, 4), 0.3, np.float32), np.eye(4)), tmp_path / "prob.nii.gz")
    with pytest.raises(BrainMassDataError, match="non-integer"):
        extract_time_series([scan], tmp_path / "prob.nii.gz", show_progress=False)


@pytest.mark.parametrize("subject_id", ["../escaped", "a/b", "..", ".hidden", "c:\\x"])
def test_extraction_refuses_subject_ids_that_are_not_plain_file_names(tmp_path, subject_id):
    scan, atlas, _ = _synthetic_scan(tmp_path)
    out = tmp_path / "nested" / "out"
    with pytest.raises(BrainMassDataError, match="cannot be used as file names in output_dir"):
        extract_time_series([scan], atlas, subject_ids=[subject_id], output_dir=out, show_progress=False)
    assert not list((tmp_path / "nested").rglob("*.npy")) and not (tmp_path / "escaped.npy").exists()


def test_extraction_output_folder_loads_back_with_roi_names(tmp_path):
    scan, atlas, expected = _synthetic_scan(tmp_path)
    out = tmp_path / "ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BrainMassDataWarning)
        extract_time_series([scan], atlas, standardize=False, roi_names=["a", "b", "c"], output_dir=out,
                            show_progress=False)
        ds = load_dataset_auto(out)  # rois.csv supplies num_rois, settling the orientation of one file
    np.testing.assert_allclose(time_series_list(ds)[0], expected, rtol=1e-5)
    assert pd.read_csv(out / "rois.csv")["name"].tolist() == ["a", "b", "c"]


# ---------------------------------------------------------------------------------------------------------
# Documentation
# ---------------------------------------------------------------------------------------------------------


def test_every_python_example_in_data_formats_md_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    assert len(blocks) >= 8
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for block in blocks:
            exec(compile(block, str(DOCS), "exec"), namespace)
