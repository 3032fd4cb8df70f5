"""``results.csv``: the evaluation report as a tidy table, one row per method x protocol x split x metric."""

import numpy as np
import pandas as pd

from brainmass_hf.metrics import METRICS
from brainmass_hf.evaluation.protocols import run_few_shot, run_split_protocol
from brainmass_hf.evaluation.report import TIDY_COLUMNS, EvaluationReport, tidy_rows, write_results_csv


def _report() -> EvaluationReport:
    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 20)
    features = rng.normal(size=(40, 6)) + labels[:, None]
    results = [run_split_protocol("paper", features, labels, n_repeats=3, method=method)
               for method in ("BrainMass", "raw FC", "some other baseline")]
    results.append(run_split_protocol("linear_probe", features, labels, n_repeats=2))
    results += run_few_shot(features, labels, k_values=(2,), n_draws=2)
    return EvaluationReport(results=results, class_names=["a", "b"])


def test_results_csv_has_one_row_per_method_protocol_split_and_metric_for_every_method(tmp_path):
    report = _report()
    written = report.save(tmp_path)
    table = pd.read_csv(written["results.csv"], keep_default_na=False)
    assert tuple(table.columns) == TIDY_COLUMNS
    expected = sum(len(r.splits) for r in report.results) * len(METRICS)
    assert len(table) == len(tidy_rows(report)) == expected
    assert not table.duplicated(["protocol", "setting", "method", "split", "metric"]).any()
    assert set(table["method"]) == {"BrainMass", "raw FC", "some other baseline"}  # whatever the report holds
    assert set(table["setting"]) == {"", "k=2"}
    paper = table[(table.protocol == "paper") & (table.method == "raw FC") & (table.metric == "auc")]
    assert np.allclose(paper["value"].astype(float).mean(), report.get("paper", "raw FC")[0].summary["auc"]["mean"])


def test_results_csv_of_a_report_without_splits_is_a_header(tmp_path):
    path = write_results_csv(EvaluationReport(results=[], class_names=[]), tmp_path / "results.csv")
    assert path.read_text().strip() == ",".join(TIDY_COLUMNS)
