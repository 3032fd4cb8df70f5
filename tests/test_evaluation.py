"""Evaluation protocols (SPEC §5): metrics, splits, protocols, reports, and the real devfMRI cohort."""

from __future__ import annotations

import importlib.util
import json
import sys
import types

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    recall_score,
    roc_auc_score,
)

from brainmass_hf import evaluation as ev

HAS_TRAINING = importlib.util.find_spec("brainmass_hf.training") is not None


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _separable(num_per_class=(30, 30, 30), dim=20, gap=3.0, seed=0):
    """Gaussian blobs, one per class, `gap` apart along class-specific axes."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(num_per_class)])
    features = rng.normal(size=(labels.size, dim))
    features[np.arange(labels.size), labels] += gap
    return features, labels


def _labelled_dataset(labels, sites=None, num_rois=6, num_timepoints=20, seed=0):
    import datasets

    rng = np.random.default_rng(seed)
    columns = {
        "subject_id": [f"s{i}" for i in range(len(labels))],
        "time_series": [rng.normal(size=(num_timepoints, num_rois)).astype(np.float32) for _ in labels],
        "label": list(labels),
    }
    if sites is not None:
        columns["site"] = list(sites)
    return datasets.Dataset.from_dict(columns)


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------


def test_binary_metrics_match_sklearn():
    y_true = np.array([0, 0, 0, 1, 1, 1, 1, 0, 1, 0])
    y_pred = np.array([0, 1, 0, 1, 0, 1, 1, 0, 1, 1])
    scores = np.array([-1.0, 0.2, -0.5, 0.9, -0.1, 0.4, 1.2, -0.8, 0.3, 0.1])
    m = ev.classification_metrics(y_true, y_pred, scores)
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert m["auc"] == pytest.approx(roc_auc_score(y_true, scores))
    assert m["sensitivity"] == pytest.approx(recall_score(y_true, y_pred, pos_label=1))
    assert m["specificity"] == pytest.approx(recall_score(y_true, y_pred, pos_label=0))
    assert m["f1"] == pytest.approx(f1_score(y_true, y_pred))
    assert m["confusion_matrix"] == confusion_matrix(y_true, y_pred).tolist()


def test_three_class_metrics_match_sklearn():
    rng = np.random.default_rng(1)
    y_true = np.repeat([0, 1, 2], 8)
    logits = rng.normal(size=(24, 3))
    logits[np.arange(24), y_true] += 1.0
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y_pred = probabilities.argmax(axis=1)
    m = ev.classification_metrics(y_true, y_pred, probabilities, labels=[0, 1, 2])
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert m["auc"] == pytest.approx(roc_auc_score(y_true, probabilities, multi_class="ovr", average="macro"))
    assert m["sensitivity"] == pytest.approx(recall_score(y_true, y_pred, average="macro"))
    specificity = [recall_score(y_true != c, y_pred != c) for c in range(3)]
    assert m["specificity"] == pytest.approx(np.mean(specificity))
    assert m["f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert m["confusion_matrix"] == confusion_matrix(y_true, y_pred).tolist()


def test_binary_auc_from_two_column_scores_uses_their_difference():
    y_true = np.array([0, 1, 0, 1, 1, 0])
    logits = np.array([[2.0, 1.0], [0.0, 1.5], [1.0, 1.2], [0.3, 0.2], [0.0, 3.0], [0.5, -0.5]])
    m = ev.classification_metrics(y_true, logits.argmax(1), logits)
    assert m["auc"] == pytest.approx(roc_auc_score(y_true, logits[:, 1] - logits[:, 0]))


def test_auc_is_nan_when_the_test_set_holds_one_class():
    m = ev.classification_metrics([1, 1, 1], [1, 0, 1], [0.3, -0.2, 0.9], labels=[0, 1])
    assert np.isnan(m["auc"]) and np.isnan(m["specificity"])


def test_summarize_reports_mean_and_sample_std():
    summary = ev.summarize([{"auc": 0.6}, {"auc": 0.8}, {"auc": 1.0}])
    assert summary["auc"]["mean"] == pytest.approx(0.8)
    assert summary["auc"]["std"] == pytest.approx(np.std([0.6, 0.8, 1.0], ddof=1))
    assert summary["auc"]["n"] == 3


def test_summarize_leaves_out_nan_values():
    summary = ev.summarize([{"auc": 0.6}, {"auc": float("nan")}, {"auc": 0.8}], ["auc"])
    assert summary["auc"]["mean"] == pytest.approx(0.7) and summary["auc"]["n"] == 2


# ----------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------

LABELS_122_33 = np.array([0] * 122 + [1] * 33)


def test_repeated_splits_keep_class_proportions_within_one_scan():
    for train, test in ev.repeated_stratified_splits(LABELS_122_33, n_repeats=10, test_size=0.2, seed=3):
        for c, n in ((0, 122), (1, 33)):
            assert abs(np.sum(LABELS_122_33[test] == c) - 0.2 * n) <= 1
        assert np.intersect1d(train, test).size == 0 and train.size + test.size == 155


def test_repeated_splits_with_the_same_seed_are_identical():
    a = list(ev.repeated_stratified_splits(LABELS_122_33, n_repeats=5, seed=7))
    b = list(ev.repeated_stratified_splits(LABELS_122_33, n_repeats=5, seed=7))
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b))


def test_repeated_splits_with_another_seed_differ():
    a = list(ev.repeated_stratified_splits(LABELS_122_33, n_repeats=5, seed=7))
    b = list(ev.repeated_stratified_splits(LABELS_122_33, n_repeats=5, seed=8))
    assert not all(np.array_equal(x[1], y[1]) for x, y in zip(a, b))


def test_repeated_splits_with_sites_stratify_by_label_and_site():
    labels = np.array([0] * 40 + [1] * 40)
    sites = np.array((["A"] * 30 + ["B"] * 10) * 2)
    for _, test in ev.repeated_stratified_splits(labels, n_repeats=10, test_size=0.25, seed=0, sites=sites):
        for c in (0, 1):
            for s, n in (("A", 30), ("B", 10)):
                assert abs(np.sum((labels[test] == c) & (sites[test] == s)) - 0.25 * n) <= 1


def test_kfold_puts_every_index_in_exactly_one_test_fold():
    tests = np.concatenate([test for _, test in ev.kfold_splits(LABELS_122_33, n_splits=5, seed=0)])
    assert np.array_equal(np.sort(tests), np.arange(155))


def test_kfold_with_the_same_seed_is_identical():
    a = [t for _, t in ev.kfold_splits(LABELS_122_33, n_splits=5, seed=2)]
    b = [t for _, t in ev.kfold_splits(LABELS_122_33, n_splits=5, seed=2)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_leave_one_site_out_never_puts_a_site_in_train_and_test():
    sites = np.array(["A", "B", "C", "A", "C", "B", "B", "A"])
    splits = list(ev.leave_one_site_out(sites))
    assert len(splits) == 3
    for train, test in splits:
        assert set(sites[train]).isdisjoint(sites[test]) and len(set(sites[test])) == 1


def test_few_shot_draws_exactly_k_per_class_for_training():
    labels = np.repeat([0, 1, 2], [12, 30, 25])
    for train, test in ev.few_shot_splits(labels, 5, n_draws=4, seed=0):
        assert np.bincount(labels[train]).tolist() == [5, 5, 5]


def test_few_shot_tests_on_every_scan_not_drawn():
    labels = np.repeat([0, 1], [12, 30])
    for train, test in ev.few_shot_splits(labels, 3, n_draws=3, seed=1):
        assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(42))


def test_few_shot_skips_k_the_smallest_class_cannot_supply():
    features, labels = _separable((6, 30), dim=5)
    results = ev.run_few_shot(features, labels, k_values=(5, 6), n_draws=2)
    assert [r.skipped for r in results] == [False, True]
    assert "k=6 skipped" in results[1].notes[0]


# ----------------------------------------------------------------------------------------------
# Protocols on features
# ----------------------------------------------------------------------------------------------


def test_three_class_paper_protocol_on_separable_features_has_auc_above_0_9():
    features, labels = _separable()
    result = ev.run_paper_protocol(features, labels, n_repeats=3)
    assert result.summary["auc"]["mean"] > 0.9
    assert np.asarray(result.splits[0]["scores"]).shape[1] == 3


def test_three_class_linear_probe_on_separable_features_has_auc_above_0_9():
    features, labels = _separable()
    assert ev.run_linear_probe(features, labels, n_repeats=3).summary["auc"]["mean"] > 0.9


def test_test_rows_are_scored_from_test_features():
    features, labels = _separable((40, 40), gap=4.0)
    # Mirrored test features put each class where the other was: a linear model gets them all wrong.
    result = ev.run_linear_probe(features, labels, test_features=-features, n_repeats=2)
    assert result.summary["auc"]["mean"] < 0.1


def test_zero_shot_trains_on_the_source_and_tests_on_the_target():
    features, labels = _separable((20, 20), dim=4)
    sites = np.array(["A", "B"] * 20)
    (result,) = ev.run_zero_shot(features, labels, sites, pairs=[("A", "B")])
    split = result.splits[0]
    assert set(sites[split["train_index"]]) == {"A"} and set(sites[split["test_index"]]) == {"B"}


def test_zero_shot_covers_every_ordered_site_pair():
    features, labels = _separable((30, 30), dim=4)
    sites = np.array(["A", "B", "C"] * 20)
    results = ev.run_zero_shot(features, labels, sites)
    pairs = {(r.settings["source"], r.settings["target"]) for r in results}
    assert pairs == {(a, b) for a in "ABC" for b in "ABC" if a != b}


def test_finetune_protocol_scores_the_predicted_logits_of_test_rows(monkeypatch, tmp_path):
    """`run_finetune` trains on train rows and turns `trainer.predict` logits into metrics."""
    seen = {}

    class _Predictor:
        def predict(self, dataset):
            labels = np.asarray(dataset["label"])
            logits = np.stack([-labels, labels], axis=1).astype(float)  # a perfect classifier
            return types.SimpleNamespace(predictions=logits)

    def fake_finetune(path, train_dataset, eval_dataset=None, *, output_dir, **kwargs):
        seen.setdefault("train_sizes", []).append(len(train_dataset))
        seen["kwargs"] = kwargs
        return _Predictor()

    monkeypatch.setitem(sys.modules, "brainmass_hf.training", types.SimpleNamespace(finetune=fake_finetune))
    labels = np.array([0] * 10 + [1] * 10)
    data = _labelled_dataset(labels)
    splits = list(ev.repeated_stratified_splits(labels, n_repeats=2, test_size=0.25))
    result = ev.run_finetune("ckpt", data, splits, output_dir=tmp_path, finetune_kwargs={"num_train_epochs": 1})
    assert seen["train_sizes"] == [15, 15] and seen["kwargs"]["num_train_epochs"] == 1
    assert result.summary["auc"]["mean"] == 1.0 and result.summary["accuracy"]["mean"] == 1.0


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------


def test_feature_label_length_mismatch_raises_value_error():
    features, labels = _separable((10, 10))
    with pytest.raises(ValueError, match="one feature row per labelled scan"):
        ev.run_paper_protocol(features[:-1], labels, n_repeats=1)


def test_class_with_one_member_raises_value_error():
    with pytest.raises(ValueError, match="at least 2"):
        list(ev.repeated_stratified_splits([0, 0, 0, 1], n_repeats=1))


def test_unknown_protocol_raises_value_error():
    with pytest.raises(ValueError, match="Unknown protocol.*linear_prob"):
        ev.parse_protocols("paper,linear_prob")


def test_missing_label_column_raises_value_error():
    data = _labelled_dataset([0, 1] * 4).rename_column("label", "group")
    with pytest.raises(ValueError, match="label_column="):
        ev.evaluate(None, data)


def test_missing_site_column_raises_value_error():
    with pytest.raises(ValueError, match="site_column='scanner'"):
        ev.evaluate(None, _labelled_dataset([0, 1] * 4), site_column="scanner")


def test_zero_shot_without_a_site_column_raises_value_error():
    with pytest.raises(ValueError, match="need site_column"):
        ev.evaluate(None, _labelled_dataset([0, 1] * 4), protocols=["zero_shot"])


# ----------------------------------------------------------------------------------------------
# Reports (from feature-level results)
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_report():
    features, labels = _separable((20, 20), dim=6)
    noise = np.random.default_rng(5).normal(size=features.shape)
    results = []
    for method, x in ((ev.METHOD_MODEL, features), (ev.METHOD_RAW_FC, noise)):
        results.append(ev.run_paper_protocol(x, labels, n_repeats=2, method=method))
        results += ev.run_few_shot(x, labels, k_values=(1, 5, 25), n_draws=2, method=method)
    return ev.EvaluationReport(results, ["a", "b"], {"class_counts": [20, 20], "num_scans": 40})


def test_markdown_has_one_row_per_protocol_and_method(synthetic_report):
    lines = synthetic_report.to_markdown().splitlines()
    rows = [line for line in lines if line.startswith(("| paper", "| few_shot"))]
    assert len(rows) == 2 * 4  # (paper + three k) × two methods
    assert any("| paper | raw FC |" in r for r in rows)


def test_report_json_keeps_every_split_and_writes_nan_as_null(synthetic_report):
    data = json.loads(synthetic_report.to_json())
    paper = [r for r in data["results"] if r["protocol"] == "paper"]
    assert all(len(r["splits"]) == 2 and "scores" in r["splits"][0] for r in paper)
    assert "NaN" not in synthetic_report.to_json()


def test_report_save_writes_json_markdown_csv_and_plots(synthetic_report, tmp_path):
    synthetic_report.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"results.json", "results.md", "results.csv", "roc_paper.png",
                                                    "few_shot.png"}


# ----------------------------------------------------------------------------------------------
# Features from a (tiny) BrainMass model
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model():
    pytest.importorskip("brainmass_hf.modeling_brainmass")
    from brainmass_hf.configuration_brainmass import BrainMassConfig
    from brainmass_hf.modeling_brainmass import BrainMassModel

    config = BrainMassConfig.from_preset("tiny", num_rois=116)
    return ev.random_init_like(BrainMassModel(config), seed=0)


@pytest.fixture(scope="module")
def devfmri():
    from brainmass_hf.data import load_devfmri

    return load_devfmri()


@pytest.fixture(scope="module")
def devfmri_scans(devfmri):
    from brainmass_hf.data import time_series_list

    return time_series_list(devfmri)[:12]


def test_extract_features_returns_8R_values_per_scan(tiny_model, devfmri_scans):
    features = ev.extract_features(tiny_model, devfmri_scans)
    assert features.shape == (12, 8 * 116) and features.dtype == np.float32


def test_pfc_features_reproduce_with_the_same_seed(tiny_model, devfmri_scans):
    a = ev.extract_features(tiny_model, devfmri_scans, view="pfc", seed=4, batch_size=5)
    b = ev.extract_features(tiny_model, devfmri_scans, view="pfc", seed=4, batch_size=5)
    np.testing.assert_array_equal(a, b)


def test_pfc_features_change_with_the_seed(tiny_model, devfmri_scans):
    a = ev.extract_features(tiny_model, devfmri_scans, view="pfc", seed=4)
    b = ev.extract_features(tiny_model, devfmri_scans, view="pfc", seed=5)
    assert not np.allclose(a, b)


def test_tta_with_one_view_equals_the_pfc_view(tiny_model, devfmri_scans):
    pfc = ev.extract_features(tiny_model, devfmri_scans, view="pfc", seed=2)
    tta = ev.extract_features(tiny_model, devfmri_scans, view="tta", num_views=1, seed=2)
    np.testing.assert_allclose(tta, pfc, rtol=1e-6, atol=1e-6)


def test_tta_features_lie_between_full_fc_and_a_single_view(tiny_model, devfmri_scans):
    """Averaging views reduces the view noise: TTA features sit closer to full-FC features than one view."""
    full = ev.extract_features(tiny_model, devfmri_scans, view="full")
    pfc = ev.extract_features(tiny_model, devfmri_scans, view="pfc", seed=3)
    tta = ev.extract_features(tiny_model, devfmri_scans, view="tta", num_views=8, seed=3)
    assert np.linalg.norm(tta - full) < np.linalg.norm(pfc - full)


def test_raw_fc_full_view_is_the_fc_upper_triangle(devfmri_scans):
    from brainmass_hf.connectivity import functional_connectivity

    features = ev.raw_fc_features(devfmri_scans[:3], view="full", kind="pearson")
    fc = functional_connectivity(np.stack(devfmri_scans[:3]), kind="pearson").numpy()
    rows, cols = np.triu_indices(116, k=1)
    assert features.shape == (3, 116 * 115 // 2)
    np.testing.assert_allclose(features, fc[:, rows, cols], atol=1e-6)


def test_random_init_like_is_seeded_and_leaves_the_global_rng_alone(tiny_model):
    import torch

    state = torch.random.get_rng_state()
    a, b, c = (ev.random_init_like(tiny_model, seed=s) for s in (1, 1, 2))
    assert torch.equal(torch.random.get_rng_state(), state)
    pa, pb, pc = (next(m.parameters()) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_extract_features_restores_the_training_mode(tiny_model, devfmri_scans):
    tiny_model.train()
    try:
        ev.extract_features(tiny_model, devfmri_scans[:2])
        assert tiny_model.training
    finally:
        tiny_model.eval()


def test_scans_of_another_atlas_raise_value_error(tiny_model):
    with pytest.raises(ValueError, match="num_rois is R=116"):
        ev.extract_features(tiny_model, [np.random.default_rng(0).normal(size=(20, 100))])


# ----------------------------------------------------------------------------------------------
# The real development fMRI cohort (child vs adult, 122 / 33)
# ----------------------------------------------------------------------------------------------

ALL_PROTOCOLS = ("paper", "linear_probe", "few_shot", "zero_shot") + (("finetune",) if HAS_TRAINING else ())


@pytest.fixture(scope="module")
def devfmri_report(tiny_model, devfmri, tmp_path_factory):
    # One site only: two halves of the cohort stand in for two sites so zero-shot has something to transfer.
    data = devfmri.add_column("half", ["even" if i % 2 == 0 else "odd" for i in range(len(devfmri))])
    out = tmp_path_factory.mktemp("devfmri_eval")
    report = ev.evaluate(
        tiny_model, data, protocols=ALL_PROTOCOLS, site_column="half", n_repeats=3, few_shot_k=(5, 40),
        seed=0, output_dir=out, show_progress=False, finetune_repeats=1,
        finetune_kwargs={"num_train_epochs": 1, "per_device_train_batch_size": 32},
    )
    return report, out


@pytest.mark.slow  # shares the ~25 s devfmri_report fixture (every protocol, fine-tuning included)
def test_devfmri_tiny_brainmass_paper_protocol_is_well_above_chance(devfmri_report):
    # Measured: random-init tiny BrainMass, 5 weight seeds, 3-10 repeats: AUC 0.93-0.97; raw FC 0.98.
    (paper,) = devfmri_report[0].get("paper", ev.METHOD_MODEL)
    assert paper.summary["auc"]["mean"] > 0.85


@pytest.mark.slow  # shares the ~25 s devfmri_report fixture (every protocol, fine-tuning included)
def test_devfmri_raw_fc_paper_protocol_auc_is_above_0_9(devfmri_report):
    (paper,) = devfmri_report[0].get("paper", ev.METHOD_RAW_FC)
    assert paper.summary["auc"]["mean"] > 0.9


@pytest.mark.slow  # shares the ~25 s devfmri_report fixture (every protocol, fine-tuning included)
def test_devfmri_raw_fc_baseline_is_reported_beside_every_protocol(devfmri_report):
    report = devfmri_report[0]
    for name in {r.name for r in report.results}:
        assert {r.method for r in report.results if r.name == name} >= {ev.METHOD_MODEL, ev.METHOD_RAW_FC}


@pytest.mark.slow  # shares the ~25 s devfmri_report fixture (every protocol, fine-tuning included)
def test_devfmri_random_init_baseline_is_reported_beside_every_protocol(devfmri_report):
    report = devfmri_report[0]
    assert {r.protocol for r in report.results if r.method == ev.METHOD_RANDOM} == set(ALL_PROTOCOLS)


@pytest.mark.slow  # shares the ~25 s devfmri_report fixture (every protocol, fine-tuning included)
def test_devfmri_tangent_fc_baseline_is_reported_beside_every_protocol(devfmri_report):
    report = devfmri_report[0]
    assert {r.protocol for r in report.results if r.method == ev.METHOD_TANGENT} == set(ALL_PROTOCOLS)
    assert all("tangent_fc (" in line for line in report.verdicts() if "no verdict" not in line)


@pytest.mark.slow  # shares the ~25 s devfmri_report fixture (every protocol, fine-tuning included)
def test_devfmri_few_shot_says_which_k_the_33_adults_cannot_supply(devfmri_report):
    (k40,) = devfmri_report[0].get("few_shot (k=40)")
    assert k40.skipped and "smallest class has 33" in k40.notes[0]


@pytest.mark.slow  # shares the ~25 s devfmri_report fixture (every protocol, fine-tuning included)
def test_devfmri_evaluate_writes_every_report_file(devfmri_report):
    _, out = devfmri_report
    expected = {"results.json", "results.md", "few_shot.png"}
    expected |= {f"roc_{p}.png" for p in ALL_PROTOCOLS if p != "few_shot"}
    assert expected <= {p.name for p in out.iterdir()}
    assert "| paper | raw FC |" in (out / "results.md").read_text()


def _three_class_scans(num_per_class=12, num_rois=12, num_timepoints=60, seed=0):
    """Class c couples ROIs 4c … 4c+3 through a shared signal, so FC tells the classes apart."""
    import datasets

    rng = np.random.default_rng(seed)
    scans, labels = [], []
    for c in range(3):
        for _ in range(num_per_class):
            x = rng.normal(size=(num_timepoints, num_rois))
            x[:, 4 * c + 1 : 4 * c + 4] = x[:, [4 * c]] + 0.5 * rng.normal(size=(num_timepoints, 3))
            scans.append(x.astype(np.float32))
            labels.append(c)
    features = datasets.Features(
        {
            "time_series": datasets.Array2D((None, num_rois), "float32"),
            "label": datasets.ClassLabel(names=["a", "b", "c"]),
            "site": datasets.Value("string"),
        }
    )
    sites = ["s1" if i % 2 else "s2" for i in range(len(labels))]
    return datasets.Dataset.from_dict({"time_series": scans, "label": labels, "site": sites}, features=features)


def test_three_class_evaluate_runs_every_protocol_with_3x3_confusion_matrices():
    pytest.importorskip("brainmass_hf.modeling_brainmass")
    from brainmass_hf.configuration_brainmass import BrainMassConfig
    from brainmass_hf.modeling_brainmass import BrainMassModel

    model = BrainMassModel(BrainMassConfig.from_preset("tiny", num_rois=12, fc_kind="pearson"))
    protocols = ("paper", "linear_probe", "few_shot", "zero_shot") + (("finetune",) if HAS_TRAINING else ())
    report = ev.evaluate(
        model, _three_class_scans(), protocols=protocols, site_column="site", n_repeats=2, test_size=0.25,
        few_shot_k=(3,), show_progress=False, finetune_repeats=1, finetune_kwargs={"num_train_epochs": 1},
    )
    assert {r.protocol for r in report.results} == set(protocols)
    for r in report.results:
        assert all(np.shape(s["confusion_matrix"]) == (3, 3) for s in r.splits)
    (raw_fc,) = report.get("paper", ev.METHOD_RAW_FC)
    assert raw_fc.summary["auc"]["mean"] > 0.9


# ----------------------------------------------------------------------------------------------
# Issue 8: one place per idea
# ----------------------------------------------------------------------------------------------


def test_evaluation_is_a_package_of_modules_under_700_lines():
    from pathlib import Path

    package = Path(ev.__file__).parent
    sizes = {p.name: len(p.read_text().splitlines()) for p in package.glob("*.py")}
    assert {"features.py", "splits.py", "protocols.py", "report.py", "tangent.py", "run.py", "__init__.py"} <= set(sizes)
    assert max(sizes.values()) <= 700, sizes


def test_metrics_are_one_module_that_training_and_evaluation_share():
    """Fine-tuning's Trainer metrics and evaluation's protocols compute accuracy, balanced accuracy and AUC with the
    same function (binary AUC of the logit difference; NaN for a one-class evaluation set)."""
    from types import SimpleNamespace

    from brainmass_hf.metrics import classification_metrics
    from brainmass_hf.training import classification_compute_metrics

    logits = np.array([[0.2, 1.0], [1.5, -0.3], [0.1, 0.4], [2.0, 0.0], [0.0, 0.1]])
    labels = np.array([1, 0, 0, 0, 1])
    trainer = classification_compute_metrics(SimpleNamespace(predictions=logits, label_ids=labels))
    evaluation = classification_metrics(labels, logits.argmax(-1), logits, labels=[0, 1])
    assert trainer == {k: evaluation[k] for k in ("accuracy", "balanced_accuracy", "auc")}
    one_class = classification_compute_metrics(SimpleNamespace(predictions=logits, label_ids=np.zeros(5, int)))
    assert np.isnan(one_class["auc"]) and np.isnan(one_class["balanced_accuracy"])


def test_training_does_not_import_evaluation():
    import ast
    from pathlib import Path

    import brainmass_hf.training as training

    tree = ast.parse(Path(training.__file__).read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if "evaluation" in m]


def test_raw_fc_features_follow_every_fc_setting_of_the_checkpoint_config(devfmri_scans):
    """Features go through `connectivity_view`: a crop-view, Fisher-z, Ledoit-Wolf config gives exactly its views."""
    import torch

    from brainmass_hf.configuration_brainmass import BrainMassConfig
    from brainmass_hf.connectivity import connectivity_view, fc_upper_triangle, pad_time_series

    config = BrainMassConfig.from_preset("tiny", num_rois=116, fc_kind="ledoit_wolf", fisher_z=True,
                                         pfc_mask_way="crop", pfc_crop_length=40)
    scans = devfmri_scans[:4]
    features = ev.raw_fc_features(scans, view="pfc", seed=3, settings=config, batch_size=4)
    x, mask = pad_time_series(scans)
    expected = fc_upper_triangle(connectivity_view(x, mask, settings=config, pfc=True,
                                                   generator=torch.Generator().manual_seed(3)))
    np.testing.assert_allclose(features, expected.numpy(), atol=1e-6)


def _both_classes(devfmri, per_class):
    labels = np.asarray(devfmri["label"])
    return devfmri.select(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in (0, 1)]).tolist())


def test_evaluate_paper_rows_are_run_paper_protocol_on_the_same_splits(tiny_model, devfmri):
    """Raw FC's paper row is `run_paper_protocol` on its features; tangent_fc's paper and linear-probe rows are both
    its own pipeline (`tangent_logreg`) on its features, over the same splits."""
    data = _both_classes(devfmri, 30)
    report = ev.evaluate(tiny_model, data, protocols="paper,linear_probe", n_repeats=2, show_progress=False,
                         include_random_baseline=False)
    scans = [np.asarray(t, np.float32) for t in data["time_series"]]
    labels, _ = ev.labels_from_dataset(data)
    train_x = ev.raw_fc_features(scans, view="pfc", seed=0, settings=tiny_model.config)
    test_x = ev.raw_fc_features(scans, view="pfc", seed=1, settings=tiny_model.config)
    direct = ev.run_paper_protocol(train_x, labels, test_features=test_x, splits=ev.make_splits("repeated", labels,
                                   n_repeats=2), method=ev.METHOD_RAW_FC)
    (from_evaluate,) = report.get("paper", ev.METHOD_RAW_FC)
    assert [s["scores"] for s in from_evaluate.splits] == [s["scores"] for s in direct.splits]
    splits = ev.make_splits("repeated", labels, n_repeats=2)
    train_x, test_x = (ev.tangent_fc_features(scans, view="pfc", seed=k, settings=tiny_model.config) for k in (0, 1))
    tangent = ev.evaluate_features(train_x, labels, splits, test_features=test_x, classifier="tangent_logreg")
    for protocol in ("paper", "linear_probe"):
        (row,) = report.get(protocol, ev.METHOD_TANGENT)
        assert [s["scores"] for s in row.splits] == [s["scores"] for s in tangent.splits]
    assert report.settings["tangent_fc"].startswith("Ledoit-Wolf FC")


def test_a_scan_with_nan_values_is_named_in_one_error(tiny_model, devfmri_scans):
    from brainmass_hf.validation import BrainMassDataError

    scans = [s.copy() for s in devfmri_scans[:3]]
    scans[1][4, 2] = np.nan
    with pytest.raises(BrainMassDataError, match=r"scan #1.*NaN"):
        ev.extract_features(tiny_model, scans)


def test_features_with_nan_name_the_scan_row():
    features, labels = _separable((10, 10))
    features[7, 3] = np.inf
    with pytest.raises(ValueError, match="scan 7"):
        ev.run_paper_protocol(features, labels, n_repeats=1)


# ----------------------------------------------------------------------------------------------
# Issue 10: the authors' test view, subject-grouped splits, an honest report
# ----------------------------------------------------------------------------------------------


def test_paper_protocol_tests_on_one_pfc_view_by_default():
    import inspect

    assert inspect.signature(ev.evaluate).parameters["test_view"].default == "pfc"


SUBJECTS = np.repeat([f"sub{i:02d}" for i in range(30)], 3)  # three sessions per subject
SUBJECT_LABELS = np.repeat(np.arange(30) % 2, 3)


def test_repeated_splits_with_groups_never_put_a_subject_in_train_and_test():
    splits = list(ev.repeated_stratified_splits(SUBJECT_LABELS, n_repeats=5, test_size=0.2, seed=0, groups=SUBJECTS))
    assert len(splits) == 5 and len({tuple(test) for _, test in splits}) > 1
    for train, test in splits:
        assert set(SUBJECTS[train]).isdisjoint(SUBJECTS[test])
        assert 0.1 <= test.size / SUBJECTS.size <= 0.3 and set(SUBJECT_LABELS[test]) == {0, 1}


def test_kfold_with_groups_never_puts_a_subject_in_train_and_test():
    for train, test in ev.kfold_splits(SUBJECT_LABELS, n_splits=5, seed=0, groups=SUBJECTS):
        assert set(SUBJECTS[train]).isdisjoint(SUBJECTS[test])


def test_few_shot_with_groups_does_not_test_on_a_drawn_subject():
    for train, test in ev.few_shot_splits(SUBJECT_LABELS, 3, n_draws=4, seed=0, groups=SUBJECTS):
        assert set(SUBJECTS[train]).isdisjoint(SUBJECTS[test]) and test.size > 0


def test_leave_one_site_out_drops_a_subject_scanned_at_the_tested_site_from_training():
    sites = np.array(["A", "A", "B", "B", "C", "C"])
    groups = np.array(["s1", "s2", "s1", "s3", "s4", "s5"])  # s1 travelled from A to B
    splits = dict((sites[test][0], (train, test)) for train, test in ev.leave_one_site_out(sites, groups))
    train, _ = splits["B"]
    assert "s1" not in set(groups[train]) and set(groups[train]) == {"s2", "s4", "s5"}


def test_evaluate_with_a_group_column_keeps_subjects_on_one_side(tiny_model, devfmri):
    data = _both_classes(devfmri, 20)
    subjects = [f"sub{i // 2}" for i in range(40)]  # pretend two sessions per subject
    data = data.remove_columns([c for c in ("subject_id",) if c in data.column_names]).add_column("subject", subjects)
    report = ev.evaluate(tiny_model, data, protocols="paper", group_column="subject", n_repeats=3,
                         include_random_baseline=False, show_progress=False)
    subjects = np.asarray(subjects)
    for r in report.results:
        for split in r.splits:
            assert set(subjects[split["train_index"]]).isdisjoint(subjects[split["test_index"]])
    assert "grouped by `subject`" in report.to_markdown()


def test_unknown_group_column_raises_value_error():
    with pytest.raises(ValueError, match="group_column='subject'"):
        ev.evaluate(None, _labelled_dataset([0, 1] * 4), group_column="subject")


def test_metrics_report_the_majority_class_rate_beside_accuracy():
    m = ev.classification_metrics([0, 0, 0, 1], [0, 0, 0, 0], [-1, -1, -1, -1])
    assert m["accuracy"] == m["majority_rate"] == 0.75 and m["balanced_accuracy"] == 0.5


def test_paired_difference_pairs_splits_by_index():
    a = [{"split": 0, "auc": 0.9}, {"split": 1, "auc": 0.7}, {"split": 2, "auc": 0.8}]
    b = [{"split": 1, "auc": 0.6}, {"split": 0, "auc": 0.7}]  # split 2 missing: left out
    diff = ev.paired_difference(a, b)
    assert diff["n"] == 2 and diff["mean"] == pytest.approx(0.15)
    assert diff["std"] == pytest.approx(np.std([0.2, 0.1], ddof=1))


def _report_of(model_x, raw_x, random_x, labels, **settings):
    splits = list(ev.repeated_stratified_splits(labels, n_repeats=4, seed=0))
    results = [ev.run_paper_protocol(x, labels, splits=splits, method=m)
               for m, x in ((ev.METHOD_MODEL, model_x), (ev.METHOD_RAW_FC, raw_x), (ev.METHOD_RANDOM, random_x))]
    return ev.EvaluationReport(results, ["control", "patient"], {"class_counts": np.bincount(labels).tolist(),
                                                                 "test_view": "pfc", **settings})


def test_verdict_says_the_model_is_above_a_baseline_of_noise_and_gives_the_paired_difference():
    features, labels = _separable((30, 30), dim=6)
    noise = np.random.default_rng(1).normal(size=features.shape)
    report = _report_of(features, noise, features, labels)
    (verdict,) = report.verdicts()
    assert verdict.startswith("paper: BrainMass ROC AUC")
    assert "above raw FC" in verdict and "level with random-init BrainMass" in verdict
    assert "paired difference +0." in verdict and "over 4 splits" in verdict


def test_report_states_positive_class_test_view_and_transductive_pretraining():
    features, labels = _separable((30, 30), dim=6)
    text = _report_of(features, features, features, labels, pretrained_on_eval_scans=True).to_markdown()
    assert "Positive class: **patient**" in text
    assert "one pFC view per test scan" in text and "Task2Data(is_test=True)" in text
    assert "pretrained on these evaluation scans" in text and "label-free" in text
    assert "majority-class rate" in text and "balanced accuracy" in text and "operating point" in text
    not_pretrained = _report_of(features, features, features, labels, pretrained_on_eval_scans=False)
    assert "not pretrained on these evaluation scans" in not_pretrained.to_markdown()


def test_roc_operating_point_is_one_minus_specificity_and_sensitivity():
    features, labels = _separable((30, 30), dim=6, gap=1.0)
    result = ev.run_paper_protocol(features, labels, n_repeats=3)
    point = ev.roc_curve_data(result)["operating_point"]
    assert point == pytest.approx((1 - result.summary["specificity"]["mean"], result.summary["sensitivity"]["mean"]))


def test_docs_say_the_authors_sen_spe_are_ppv_npv():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "evaluation.md").read_text()
    assert "confusion_matrix(pred, true)" in text and "PPV" in text and "NPV" in text


# ----------------------------------------------------------------------------------------------
# Issue 12: figures a reader understands
# ----------------------------------------------------------------------------------------------


def _assert_labelled(fig):
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            assert ax.get_ylabel() or ax.get_xlabel(), "colour bar without a label"
        elif ax.axison:
            assert ax.get_xlabel() and ax.get_ylabel(), f"axes {ax.get_title()!r} lacks a label"


def test_roc_figure_names_the_protocol_positive_class_band_and_operating_point():
    features, labels = _separable((30, 30), dim=6, gap=1.0)
    report = _report_of(features, features, features, labels)
    fig = report.roc_figure("paper")
    _assert_labelled(fig)
    title = fig.get_suptitle()
    assert "Paper protocol" in title and "positive class: patient" in title and "band: ±1 SD" in title
    (ax,) = fig.axes
    markers = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert len(markers) == 3  # one operating point per method


def test_few_shot_figure_does_not_plot_the_degenerate_k1_auc_and_labels_roc_auc():
    labels = np.repeat([0, 1], 20)
    # thousands of features, like raw FC: with k=1 the RBF kernel underflows and every test score ties
    features = np.random.default_rng(0).normal(size=(40, 3000)) + 0.5 * labels[:, None]
    results = ev.run_few_shot(features, labels, k_values=(1, 5), n_draws=3)
    assert results[0].degenerate and results[0].summary["auc"]["mean"] == 0.5 and not results[1].degenerate
    fig = ev.EvaluationReport(results, ["a", "b"]).few_shot_figure()
    _assert_labelled(fig)
    (ax,) = fig.axes
    assert ax.get_ylabel().startswith("ROC AUC")
    plotted_k = {x for line in ax.get_lines() for x in np.atleast_1d(line.get_xdata()) if line.get_linestyle() != "--"}
    assert 1 not in plotted_k and 5 in plotted_k
    assert "not plotted: k = 1" in ax.get_title()


def test_every_saved_report_figure_is_a_non_empty_png(synthetic_report, tmp_path):
    written = synthetic_report.save(tmp_path)
    for name in ("roc_paper.png", "few_shot.png"):
        assert written[name].read_bytes()[:4] == b"\x89PNG" and written[name].stat().st_size > 5000


def test_verdict_does_not_judge_from_two_splits():
    features, labels = _separable((30, 30), dim=6)
    noise = np.random.default_rng(1).normal(size=features.shape)
    splits = list(ev.repeated_stratified_splits(labels, n_repeats=2, seed=0))
    results = [ev.run_paper_protocol(x, labels, splits=splits, method=m)
               for m, x in ((ev.METHOD_MODEL, features), (ev.METHOD_RAW_FC, noise))]
    (verdict,) = ev.EvaluationReport(results, ["a", "b"]).verdicts()
    assert "too few splits to judge" in verdict and "above" not in verdict


@pytest.mark.parametrize("view, text", [("full", "the full FC of each test scan"),
                                        ("tta", "the mean feature of 8 pFC views per test scan")])
def test_report_names_the_other_test_views(view, text):
    features, labels = _separable((30, 30), dim=6)
    assert text in _report_of(features, features, features, labels, test_view=view).to_markdown()


def test_unknown_test_view_raises_value_error():
    with pytest.raises(ValueError, match="view must be one of"):
        ev.evaluate(None, _labelled_dataset([0, 1] * 4), test_view="mean")


# ----------------------------------------------------------------------------------------------
# Issue 19: the tangent_fc baseline and the held-out-site protocol
# ----------------------------------------------------------------------------------------------


def test_tangent_fc_fits_its_reference_point_on_the_training_rows_only(devfmri_scans):
    import torch

    from brainmass_hf.connectivity import spd_geometric_mean, vector_sym_matrix

    features = ev.tangent_fc_features(devfmri_scans)  # 12 scans
    labels = np.arange(12) % 2
    train = np.arange(8)
    pipeline = ev.make_classifier("tangent_logreg").fit(features[train], labels[train])
    reference = pipeline[0].reference_.numpy()
    matrices = vector_sym_matrix(torch.as_tensor(features))
    np.testing.assert_allclose(reference, spd_geometric_mean(matrices[train]).numpy(), atol=1e-10)
    assert np.abs(reference - spd_geometric_mean(matrices).numpy()).max() > 1e-3  # test rows would move it


def test_tangent_fc_features_are_ledoit_wolf_views_whatever_the_checkpoints_fc_kind(devfmri_scans):
    import torch

    from brainmass_hf.configuration_brainmass import BrainMassConfig
    from brainmass_hf.connectivity import connectivity_view, pad_time_series, sym_matrix_vector

    config = BrainMassConfig.from_preset("tiny", num_rois=116, fc_kind="pearson", fisher_z=True, pfc_drop_ratio=0.5)
    scans = devfmri_scans[:4]
    features = ev.tangent_fc_features(scans, settings=config, view="pfc", seed=3, batch_size=4)
    x, mask = pad_time_series(scans)
    lw = ev.FCSettings.of(config, fc_kind="ledoit_wolf", fisher_z=False)
    view = connectivity_view(x, mask, settings=lw, pfc=True, generator=torch.Generator().manual_seed(3))
    np.testing.assert_allclose(features, sym_matrix_vector(view.double()).numpy(), atol=1e-12)


def test_evaluate_with_sites_scores_only_those_sites_scans(tiny_model, devfmri):
    data = _both_classes(devfmri, 20)
    data = data.remove_columns("site").add_column("site", ["kept" if i % 4 else "other" for i in range(len(data))])
    report = ev.evaluate(tiny_model, data, protocols="paper", n_repeats=2, show_progress=False, sites="kept",
                         include_random_baseline=False, include_tangent_baseline=False)
    assert report.settings["num_scans"] == 30 and report.settings["sites"] == ["kept"]
    assert "only those of site(s) kept" in report.to_markdown()
    assert "tangent_fc baseline was not run" in report.to_markdown()
    with pytest.raises(ValueError, match="not in column 'site'"):
        ev.evaluate(tiny_model, data, protocols="paper", sites="NYU", show_progress=False)


def test_card_rows_come_from_the_report_with_every_baseline_and_paired_differences():
    from brainmass_hf.evaluation import card_rows

    """A card's results rows are computed from an evaluation report: this file's AUC, raw FC, tangent_fc and random
    init, and model − baseline paired over the same splits (only the splits both ran)."""
    def result(protocol, method, aucs):
        splits = [{"split": i, "auc": a} for i, a in enumerate(aucs)]
        mean = sum(aucs) / len(aucs)
        std = (sum((a - mean) ** 2 for a in aucs) / (len(aucs) - 1)) ** 0.5
        return {"name": protocol, "method": method, "splits": splits, "summary": {"auc": {"mean": mean, "std": std}}}

    report = {"results": [
        result("paper", "BrainMass", [0.70, 0.80, 0.90]), result("paper", "raw FC", [0.60, 0.80, 0.70]),
        result("paper", "tangent_fc", [0.75, 0.85, 0.95]), result("paper", "random-init BrainMass", [0.5, 0.5, 0.5]),
        result("linear_probe", "BrainMass", [0.6, 0.7]), result("linear_probe", "raw FC", [0.7, 0.8]),
    ]}
    paper, probe = card_rows(report, "cohort X")
    assert paper == {
        "cohort": "cohort X", "protocol": "paper", "BrainMass (this file)": "0.800 ± 0.100",
        "raw FC": "0.700 ± 0.100", "tangent_fc": "0.850 ± 0.100", "random init": "0.500 ± 0.000",
        "paired Δ vs raw FC": "+0.100 ± 0.100", "paired Δ vs tangent_fc": "-0.050 ± 0.000",
        "paired Δ vs random init": "+0.300 ± 0.100",
    }
    assert list(probe) == ["cohort", "protocol", "BrainMass (this file)", "raw FC", "paired Δ vs raw FC"]
    assert probe["paired Δ vs raw FC"] == "-0.100 ± 0.000"
