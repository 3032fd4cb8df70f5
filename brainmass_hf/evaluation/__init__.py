"""Downstream evaluation of BrainMass encoders (SPEC §5).

The encoder is frozen and its `8R`-dim readout (`pooler_output`) is the feature of a scan. The paper's
protocol standardises the features and fits an RBF SVM (C = 1) on **one pFC view per training scan** and
tests on **one pFC view per test scan** (the authors' `Task2Data(is_test=True)`; the full FC is their
validation set). `test_view="full"` and `"tta"` (mean feature of K pFC views) are options. Protocols:

* ``"paper"``        frozen features → ``StandardScaler`` → ``SVC(kernel="rbf", C=1)``.
* ``"linear_probe"`` the same features → ``StandardScaler`` → ``LogisticRegression``.
* ``"finetune"``     the whole network trained per split (``brainmass_hf.training.finetune``).
* ``"few_shot"``     k ∈ {1, 5, 10, 20} labelled scans per class, tested on every other scan.
* ``"zero_shot"``    trained on one site / cohort, applied to another with none of its labels.

Every protocol reports three baselines beside the model, on the same splits and the same pFC views: the raw
FC upper triangle with the same classifier, `tangent_fc` (Ledoit-Wolf FC in the tangent space at each training
split's geometric mean → L2 logistic regression, Dadi et al. 2019: the strongest classical pipeline), and the same
architecture with random (seeded, never trained) weights. The report gives a verdict per protocol from the paired
differences over splits.

Layout: `features` (scan → feature), `tangent` (the tangent_fc baseline), `splits`, `metrics` (thin over sklearn),
`protocols` (classifiers per split), `report` (tables, verdicts, figures); `run` holds :func:`evaluate`, which
composes them. Everything public is importable from here.

Example::

    from brainmass_hf.data import load_devfmri
    from brainmass_hf.evaluation import evaluate

    report = evaluate("path/to/checkpoint", load_devfmri(), protocols=("paper", "linear_probe"))
    print(report.to_markdown())
    report.save("eval_out")   # results.json, results.md, roc_paper.png, roc_linear_probe.png
"""

from __future__ import annotations

from ..data import resolve_dataset
from .features import FEATURES, VIEWS, FCSettings, extract_features, random_init_like, raw_fc_features
from ..metrics import METRICS, classification_metrics, format_mean_std, paired_difference, summarize
from .protocols import (
    CLASSIFIERS,
    METHOD_MODEL,
    METHOD_RANDOM,
    METHOD_RAW_FC,
    METHOD_TANGENT,
    PROTOCOLS,
    ProtocolResult,
    decision_scores,
    evaluate_features,
    make_classifier,
    run_few_shot,
    run_finetune,
    run_linear_probe,
    run_paper_protocol,
    run_split_protocol,
    run_zero_shot,
)
from .report import EvaluationReport, card_rows, roc_curve_data
from .run import evaluate, labels_from_dataset, parse_protocols
from .splits import (
    CV_SCHEMES,
    few_shot_splits,
    kfold_splits,
    leave_one_site_out,
    make_splits,
    repeated_stratified_splits,
    site_pairs,
)
from .tangent import TangentSpace, tangent_fc_features

__all__ = [
    # features
    "VIEWS", "FEATURES", "FCSettings", "extract_features", "random_init_like", "raw_fc_features",
    # tangent_fc baseline
    "TangentSpace", "tangent_fc_features",
    # splits
    "CV_SCHEMES", "few_shot_splits", "kfold_splits", "leave_one_site_out", "make_splits",
    "repeated_stratified_splits", "site_pairs",
    # metrics
    "METRICS", "classification_metrics", "format_mean_std", "paired_difference", "summarize",
    # protocols
    "CLASSIFIERS", "METHOD_MODEL", "METHOD_RANDOM", "METHOD_RAW_FC", "METHOD_TANGENT", "PROTOCOLS", "ProtocolResult",
    "decision_scores", "evaluate_features", "make_classifier", "run_few_shot", "run_finetune", "run_linear_probe", "run_paper_protocol",
    "run_split_protocol", "run_zero_shot",
    # report
    "EvaluationReport", "roc_curve_data", "card_rows",
    # run
    "evaluate", "labels_from_dataset", "parse_protocols", "resolve_dataset",
]
