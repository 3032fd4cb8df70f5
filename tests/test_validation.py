"""Tests for brainmass_hf.validation: the one numpy-only layer of input checks (issue 8) that loaders, the feature
extractor and the model share, and that ships as remote code."""

import ast
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from brainmass_hf.validation import (
    CONSTANT_ROI_STD,
    BrainMassDataError,
    BrainMassDataWarning,
    check_labels,
    constant_roi_mask,
    count_constant_rois,
    describe_nonfinite,
    label_spelling_groups,
    validate_connectivity,
    validate_time_series,
)

PACKAGE = Path(__file__).resolve().parents[1] / "brainmass_hf"
R = 6


def _scan(num_timepoints=20, seed=0):
    return np.random.default_rng(seed).standard_normal((num_timepoints, R))


def test_validation_module_imports_only_numpy_and_the_standard_library():
    tree = ast.parse((PACKAGE / "validation.py").read_text())
    roots = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    roots |= {node.module.split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.level == 0}
    assert roots - set(sys.stdlib_module_names) == {"numpy"}
    assert not any(isinstance(node, ast.ImportFrom) and node.level > 0 for node in ast.walk(tree))


def test_feature_extractor_module_needs_no_data_stack():
    # processing_brainmass ships as remote code: it must load where pandas/datasets/nilearn/scipy cannot import
    code = (
        "import sys, types\n"
        "for name in ('pandas', 'datasets', 'nilearn', 'scipy', 'brainmass_hf'):\n"
        "    sys.modules[name] = None  # import raises ImportError, find_spec answers 'not installed'\n"
        f"pkg = types.ModuleType('bm'); pkg.__path__ = [{str(PACKAGE)!r}]; sys.modules['bm'] = pkg\n"
        "import bm.processing_brainmass as p\n"
        "import numpy as np\n"
        "fe = p.BrainMassFeatureExtractor(num_rois=6)\n"
        "print(tuple(fe([np.random.default_rng(0).standard_normal((20, 6))])['connectivity'].shape))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("(1, 6, 6)")


def test_loaders_and_feature_extractor_have_no_finite_check_of_their_own():
    own = [PACKAGE / "processing_brainmass.py", *sorted((PACKAGE / "data").glob("*.py"))]
    found = [p.name for p in own for word in ("isfinite", "isnan", "isinf") if word in p.read_text()]
    assert found == [] and "np.isfinite" in (PACKAGE / "validation.py").read_text()


def test_loader_and_feature_extractor_report_a_nan_scan_with_the_same_words(tmp_path):
    # one finite check: both entry points go through validation.describe_nonfinite
    from brainmass_hf import BrainMassFeatureExtractor
    from brainmass_hf.data import load_time_series_folder

    scans = {"sub-01": _scan(20, 0), "sub-02": _scan(24, 1)}
    scans["sub-02"][7, 3] = np.nan
    (tmp_path / "scans").mkdir()
    for key, a in scans.items():
        np.save(tmp_path / "scans" / f"{key}.npy", a)
    with pytest.raises(BrainMassDataError) as from_loader:
        load_time_series_folder(tmp_path / "scans")
    with pytest.raises(BrainMassDataError) as from_extractor:
        BrainMassFeatureExtractor(num_rois=R)(list(scans.values()), subject_ids=list(scans))
    assert str(from_loader.value) == str(from_extractor.value)
    assert "'sub-02' (1 NaN values, first at time point 7, ROI 3)" in str(from_loader.value)


def test_returns_float32_contiguous_scans_in_input_order():
    scans = validate_time_series([_scan(20, 0), np.asfortranarray(_scan(25, 1))], ["a", "b"])
    assert [(a.dtype, a.shape, a.flags["C_CONTIGUOUS"]) for a in scans] == [
        (np.float32, (20, R), True), (np.float32, (25, R), True)]


def test_one_error_names_every_bad_scan_in_input_order():
    bad_nan, bad_short = _scan(20, 1), _scan(5, 2)
    bad_nan[3, 2] = np.nan
    with pytest.raises(BrainMassDataError) as info:
        validate_time_series([_scan(), bad_nan, _scan(seed=3), bad_short], ["ok", "nan", "ok2", "short"])
    message = str(info.value)
    assert message.startswith("2 of 4 scan(s) cannot be used")
    assert message.index("'nan' (1 NaN values, first at time point 3, ROI 2)") < message.index("'short' (T=5)")
    assert "'ok'" not in message


def test_beyond_float32_is_found_before_the_cast():
    scan = _scan()
    scan[2, 4] = -4e38
    assert describe_nonfinite(scan) == (
        "1 values beyond float32 range (|x| > 3.4e38; rescale the data), first at time point 2, ROI 4")
    with np.errstate(over="ignore"):
        assert describe_nonfinite(scan.astype(np.float32)) is not None  # inf after the cast is still caught


def test_complex_scan_is_an_error_not_a_dropped_imaginary_part():
    with pytest.raises(BrainMassDataError, match=r"'z' \(complex values\): pass the real signal"):
        validate_time_series([_scan() + 1j], ["z"])


def test_non_numeric_and_ragged_scans_are_named():
    with pytest.raises(BrainMassDataError, match=r"'txt' \(non-numeric dtype <U1\).*'ragged' \(not an array"):
        validate_time_series([np.full((20, R), "a"), [[1.0, 2.0], [3.0]]], ["txt", "ragged"])


def test_one_dimensional_scan_asks_for_two_dimensions():
    with pytest.raises(BrainMassDataError, match=r"'flat' \(shape \(20,\)\): a scan must be 2D"):
        validate_time_series([np.ones(20)], ["flat"])


@pytest.mark.parametrize("value, what", [(0.0, "all zeros"), (4.2, "constant in every ROI")])
def test_scan_constant_in_every_roi_is_an_error(value, what):
    with pytest.raises(BrainMassDataError, match=rf"'dead' \({what}\)"):
        validate_time_series([np.full((20, R), value)], ["dead"])


def test_requested_roi_count_is_enforced():
    with pytest.raises(BrainMassDataError, match=r"'a' \(R=6\): num_rois is R=7"):
        validate_time_series([_scan()], ["a"], num_rois=7)


def test_majority_roi_count_names_the_minority_scan():
    odd = np.random.default_rng(0).standard_normal((20, R + 1))
    with pytest.raises(BrainMassDataError, match=r"'odd' \(R=7\): the majority of scans have R=6"):
        validate_time_series([_scan(seed=1), _scan(seed=2), odd], ["a", "b", "odd"])


def test_duplicated_ids_and_count_mismatch_are_errors():
    with pytest.raises(BrainMassDataError, match="Duplicated scan ids: 'a'"):
        validate_time_series([_scan(), _scan(seed=1)], ["a", "a"])
    with pytest.raises(BrainMassDataError, match="Got 1 scans but 2 ids"):
        validate_time_series([_scan()], ["a", "b"])


def test_default_ids_number_the_scans():
    with pytest.raises(BrainMassDataError, match=r"'scan #1' \(T=3\)"):
        validate_time_series([_scan(), _scan(3)])


def test_constant_roi_rule_threshold_and_warning():
    scan = _scan()
    scan[:, 1] = 5.0
    scan[:, 4] = 5.0 + np.arange(20) * (CONSTANT_ROI_STD / 100)
    assert constant_roi_mask(scan).tolist() == [False, True, False, False, True, False]
    assert count_constant_rois(scan) == 2
    with pytest.warns(BrainMassDataWarning, match=r"'s' \(2\)"):
        validate_time_series([scan], ["s"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate_time_series([scan], ["s"], warn_constant_rois=False)


def test_constant_rule_keeps_raw_scale_variance():
    # float32 rounding at ~1e3 would hide a std of 1e-3; the rule works in float64
    scan = 1000.0 + np.random.default_rng(0).standard_normal((50, R)) * 1e-3
    assert count_constant_rois(scan) == 0


def test_validate_connectivity_checks_shape_roi_count_and_finiteness():
    fc = np.stack([np.eye(R), np.eye(R)])
    assert validate_connectivity(fc[0]).shape == (1, R, R)
    with pytest.raises(BrainMassDataError, match=r"got shape \(6, 5\)"):
        validate_connectivity(np.ones((R, R - 1)))
    with pytest.raises(BrainMassDataError, match="num_rois=8"):
        validate_connectivity(fc, num_rois=8)
    fc[1, 2, 3] = np.inf
    with pytest.raises(BrainMassDataError, match=r"'m1' \(1 Inf values, first at row 2, column 3\)"):
        validate_connectivity(fc, ["m0", "m1"])


def test_label_spellings_group_by_case_and_whitespace():
    assert label_spelling_groups(["ASD", "asd ", "TD", "ASD", " t  d", "Other"]) == {
        "ASD": "ASD", "asd ": "ASD", "TD": "TD", " t  d": "TD", "Other": "Other"}
    assert label_spelling_groups(["asd", "ASD "], canonical=["Asd"]) == {"asd": "Asd", "ASD ": "Asd"}


def test_check_labels_refuses_one_class_and_rare_classes():
    assert check_labels(["b", "a", "b"]) == ["a", "b"]
    with pytest.raises(BrainMassDataError, match=r"single class \('x'\)"):
        check_labels(["x", "x"])
    with pytest.raises(BrainMassDataError, match=r"Class\(es\) 'a' .*fewer than 2"):
        check_labels(["a", "b", "b"], min_per_class=2)


def test_constant_roi_mask_equals_the_float64_std_rule_on_edge_columns():
    from brainmass_hf.validation import CONSTANT_ROI_STD, constant_roi_mask

    rng = np.random.default_rng(0)
    scan = rng.standard_normal((150, 9)) * 10.0 + 1000.0  # raw scale
    scan[:, 1] = 1000.0  # constant
    scan[:, 2] = 1000.0 + rng.standard_normal(150) * 1e-9  # std below the threshold
    scan[:, 3] = 3.0 + rng.standard_normal(150) * 1e-7  # std above it, range small
    scan[:, 4] = 0.0
    scan[::2, 5], scan[1::2, 5] = 0.0, 3e-8  # std 1.5e-8: range 3e-8 is under the screen's bound, exact std decides
    for array in (scan, scan.astype(np.float32), scan[:1]):
        expected = np.asarray(array, dtype=np.float64).std(axis=0) < CONSTANT_ROI_STD
        assert np.array_equal(constant_roi_mask(array), expected)
    assert constant_roi_mask(scan).tolist() == [False, True, True, False, True, False, False, False, False]


# --- issue 23: the bound on finite values, symmetric connectivity, one label encoder ---------------------------
def test_values_above_1e15_are_refused_and_1e15_is_not():
    from brainmass_hf.validation import MAX_ABS_SIGNAL

    scan = _scan()
    scan[3, 1] = MAX_ABS_SIGNAL
    assert describe_nonfinite(scan) is None
    scan[3, 1] = -1.1e15
    assert describe_nonfinite(scan).startswith("1 values too large for FC")
    assert describe_nonfinite(scan.astype(np.float32)).endswith("first at time point 3, ROI 1")


def test_fc_of_real_scans_passes_the_symmetry_check(devfmri_scans):
    from brainmass_hf import BrainMassFeatureExtractor

    fc = BrainMassFeatureExtractor(num_rois=116)(devfmri_scans[:4])["connectivity"].numpy()
    assert validate_connectivity(fc).shape == (4, 116, 116)


def test_a_square_symmetric_scan_is_named_as_a_connectivity_matrix_but_a_square_signal_is_a_scan():
    from brainmass_hf.validation import looks_like_connectivity

    signal = _scan(R)  # square, not symmetric
    fc = np.corrcoef(_scan(40).T)
    assert not looks_like_connectivity(signal) and looks_like_connectivity(fc)
    validate_time_series([np.vstack([signal] * 3)], ["ok"])
    with pytest.raises(BrainMassDataError, match=r"'fc' \(square and symmetric, 6 × 6: a connectivity matrix"):
        validate_time_series([_scan(30), fc], ["ok", "fc"], min_timepoints=6)


def test_encode_class_labels_handles_codes_text_bools_and_given_names():
    from brainmass_hf.validation import encode_class_labels

    codes, names = encode_class_labels([1, 0, 1], class_names=["child", "adult"])  # ClassLabel codes
    assert (codes.tolist(), names) == ([1, 0, 1], ["child", "adult"])
    assert encode_class_labels([10, 2, 2, 10])[1] == ["2", "10"]  # integers sort as numbers
    assert encode_class_labels([True, False])[1] == ["False", "True"]
    codes, names = encode_class_labels([2, 2, 0], class_names=["a", "b", "c"], drop_unused=True)
    assert (codes.tolist(), names) == ([1, 1, 0], ["a", "c"])
    assert encode_class_labels(["a", "a"], class_names=["a", "b"], min_classes=1)[0].tolist() == [0, 0]
    with pytest.raises(BrainMassDataError, match=r"not in the class names \['a', 'b'\]: 'row 2'=c"):
        encode_class_labels(["a", "b", "c"], class_names=["a", "b"])
    with pytest.raises(BrainMassDataError, match=r"1 scan\(s\) have no value in dx: 'y'"):
        encode_class_labels(["a", float("nan")], "dx", ids=["x", "y"])
