"""`evaluate`: one call that composes features, splits, protocols and the report (the package's evaluation door).

Steps, one function each: check the options (`_checked_options`), load the cohort and its labels / sites / subjects
(`_load_cohort`), compute every method's features once (`_method_features`), run each protocol on them
(`_protocol_results`, `_finetune_all`), and build the `EvaluationReport`.
"""

from __future__ import annotations

import copy
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data import class_labels, resolve_dataset, scan_ids, select_sites, time_series_list, validate_dataset
from ..modeling_brainmass import BrainMassModel
from ..validation import check_no_missing
from .features import FEATURES, FCSettings, _encoder_of, _view_count, extract_features, random_init_like
from .features import raw_fc_features
from .protocols import METHOD_MODEL, METHOD_RANDOM, METHOD_RAW_FC, METHOD_TANGENT, PROTOCOLS, ProtocolResult
from .protocols import run_few_shot, run_finetune, run_split_protocol, run_zero_shot
from .report import EvaluationReport
from .splits import CV_SCHEMES, _check_per_scan, make_splits, site_pairs
from .tangent import tangent_fc_features

__all__ = ["evaluate", "labels_from_dataset", "parse_protocols"]

# Baselines whose pipeline carries its own classifier, whatever the protocol's (see `make_classifier`).
_OWN_CLASSIFIER = {METHOD_TANGENT: "tangent_logreg"}
TANGENT_FC_TEXT = ("Ledoit-Wolf FC of the same views → tangent space at the geometric mean of each split's training "
                   "scans → StandardScaler → L2 LogisticRegression(C=1) (Dadi et al. 2019), in every protocol")


def parse_protocols(protocols: str | Sequence[str]) -> tuple[str, ...]:
    """`"paper,linear_probe"` or a sequence → a checked tuple of protocol names (`"all"` = every one)."""
    if isinstance(protocols, str):
        protocols = [p.strip() for p in protocols.split(",") if p.strip()]
    protocols = tuple(dict.fromkeys(protocols))
    if protocols == ("all",):
        return PROTOCOLS
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise ValueError(f"Unknown protocol(s) {unknown or list(protocols)}; choose from {list(PROTOCOLS)} or 'all'.")
    return protocols


def labels_from_dataset(dataset: Any, label_column: str = "label") -> tuple[np.ndarray, list[str]]:
    """Integer class codes `[N]` and class names from any dataset column (`brainmass_hf.data.class_labels`).

    A ClassLabel keeps its names (classes without scans are dropped and the rest re-coded in order); any
    other column is encoded by its sorted distinct values. Missing values, one class, a class with fewer than 2
    scans and continuous values are errors; spellings differing only in case or whitespace are merged with a
    warning.
    """
    return class_labels(dataset, label_column, min_per_class=2, drop_unused=True)


def _column(dataset: Any, column: str | None, argument: str, n: int) -> np.ndarray | None:
    """A per-scan id column (site, subject) as strings, or None when `column` is None."""
    if column is None:
        return None
    if column not in dataset.column_names:
        raise ValueError(f"{argument}={column!r} is not a column of the dataset (columns: {dataset.column_names}).")
    check_no_missing(dataset[column], scan_ids(dataset), f"{argument} {column!r}",
                     "Fill them in or drop these scans (a blank would become a site or subject named 'None').")
    return _check_per_scan(dataset[column], n, argument)


def _load_encoder(model_or_path: Any) -> torch.nn.Module:
    if isinstance(model_or_path, (str, os.PathLike)):
        return BrainMassModel.from_pretrained(str(model_or_path)).eval()
    if not isinstance(model_or_path, torch.nn.Module) or not hasattr(_encoder_of(model_or_path), "config"):
        raise ValueError(
            "model_or_path must be a BrainMass model or the path / hub id of a saved checkpoint; got "
            f"{type(model_or_path).__name__}."
        )
    return _encoder_of(model_or_path)


def _checked_options(
    protocols: str | Sequence[str], cv: str, test_view: str, num_tta_views: int, feature: str,
    few_shot_k: Sequence[int], n_repeats: int,
) -> tuple[tuple[str, ...], int]:
    """The protocol names and the number of test views per scan, after checking every option that needs no data."""
    protocols = parse_protocols(protocols)
    if int(n_repeats) < 1:
        raise ValueError(f"n_repeats must be at least 1 (splits, and few-shot draws per k); got {n_repeats}.")
    if cv not in CV_SCHEMES:
        raise ValueError(f"cv must be one of {CV_SCHEMES}; got {cv!r}.")
    test_views = _view_count(test_view, num_tta_views if test_view == "tta" else 1)
    if feature not in FEATURES:
        raise ValueError(f"feature must be one of {FEATURES}; got {feature!r}.")
    if "few_shot" in protocols and (not few_shot_k or any(int(k) < 1 for k in few_shot_k)):
        raise ValueError(f"few_shot_k must list labelled scans per class, each at least 1; got {list(few_shot_k)}.")
    return protocols, test_views


@dataclass
class _Cohort:
    """The evaluation scans and everything per scan the protocols need."""

    dataset: Any
    labels: np.ndarray
    class_names: list[str]
    sites: np.ndarray | None
    groups: np.ndarray | None
    time_series: list[np.ndarray] | None
    splits: list[tuple[np.ndarray, np.ndarray]] | None
    zero_shot_pairs: list[tuple[str, str]] | None


def _load_cohort(dataset: Any, options: dict[str, Any], protocols: tuple[str, ...]) -> _Cohort:
    """Resolve `dataset`, keep the scans of `options["sites"]` (the `site_column`, else `"site"`;
    `data.select_sites`), encode the labels and read the site and subject columns. The time series and the splits
    come after `evaluate` has checked every scan against the checkpoint (both None here)."""
    dataset = resolve_dataset(dataset)
    site_column = options["site_column"]
    dataset = select_sites(dataset, keep=options["sites"], site_column=site_column or "site",
                           name="the evaluation data")
    labels, class_names = labels_from_dataset(dataset, options["label_column"])
    sites = _column(dataset, site_column, "site_column", labels.shape[0])
    groups = _column(dataset, options["group_column"], "group_column", labels.shape[0])
    if sites is None and ("zero_shot" in protocols or options["cv"] == "leave_one_site_out"):
        raise ValueError("zero_shot and cv='leave_one_site_out' need site_column= naming each scan's site/cohort.")
    pairs = site_pairs(sites, options["zero_shot_pairs"]) if "zero_shot" in protocols else None
    return _Cohort(dataset, labels, class_names, sites, groups, None, None, pairs)


def _method_features(
    models: dict[str, torch.nn.Module], time_series: list[np.ndarray], fc_settings: FCSettings, *, frozen: bool,
    tangent: bool, seed: int, test_view: str, test_views: int, feature: str, batch_size: int, device: str | None,
    show_progress: bool,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """`{method: (train features, test features)}`: training rows use one pFC view (seed `seed`), test rows
    `test_view` (pFC: seed `seed + 1`, TTA: `seed + 2`). Encoders only for the frozen-feature protocols; raw FC
    (and the tangent_fc input) always, since they are reported beside fine-tuning too."""
    test_seed = {"full": seed, "pfc": seed + 1, "tta": seed + 2}[test_view]
    train = {"view": "pfc", "seed": seed, "batch_size": batch_size, "show_progress": show_progress}
    test = {"view": test_view, "num_views": test_views, "seed": test_seed, "batch_size": batch_size,
            "show_progress": show_progress}
    features: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for method, model in models.items() if frozen else ():
        features[method] = tuple(
            extract_features(model, time_series, device=device, feature=feature, **views) for views in (train, test)
        )
    features[METHOD_RAW_FC] = tuple(raw_fc_features(time_series, settings=fc_settings, **v) for v in (train, test))
    if tangent:
        features[METHOD_TANGENT] = tuple(
            tangent_fc_features(time_series, settings=fc_settings, **views) for views in (train, test)
        )
    return features


def _protocol_results(
    protocol: str, features: dict[str, tuple[np.ndarray, np.ndarray]], cohort: _Cohort, options: dict[str, Any],
    reuse: dict[str, ProtocolResult],
) -> list[ProtocolResult]:
    """Every method's results under one frozen-feature protocol. A baseline with its own classifier gives the same
    numbers under `paper` and `linear_probe` (same features, splits and classifier): it runs once and the second
    row is a copy (`reuse` carries it from one call to the next)."""
    results, labels, seed = [], cohort.labels, options["seed"]
    for method in [m for m in (METHOD_MODEL, METHOD_RAW_FC, METHOD_TANGENT, METHOD_RANDOM) if m in features]:
        train_x, test_x = features[method]
        own = _OWN_CLASSIFIER.get(method)
        shared = {"test_features": test_x, "method": method, "show_progress": options["show_progress"]}
        if protocol in ("paper", "linear_probe") and own is not None and method in reuse:
            result = copy.deepcopy(reuse[method])
            result.protocol = protocol
            results.append(result)
        elif protocol in ("paper", "linear_probe"):
            reuse[method] = run_split_protocol(protocol, train_x, labels, splits=cohort.splits, seed=seed,
                                               classifier=own, **shared)
            results.append(reuse[method])
        elif protocol == "few_shot":
            results += run_few_shot(train_x, labels, k_values=options["few_shot_k"], n_draws=options["n_repeats"],
                                    seed=seed, groups=cohort.groups, classifier=own or "svm", **shared)
        else:
            results += run_zero_shot(train_x, labels, cohort.sites, pairs=cohort.zero_shot_pairs,
                                     classifier=own or "svm", **shared)
    return results


def _finetune_dataset(dataset: Any, label_column: str, codes: np.ndarray, class_names: list[str]) -> Any:
    """The dataset with a ClassLabel `label` column holding `codes` (what `finetune` reads)."""
    from datasets import ClassLabel

    drop = [c for c in ("label", label_column) if c in dataset.column_names]
    dataset = dataset.remove_columns(list(dict.fromkeys(drop)))
    dataset = dataset.add_column("label", codes.tolist())
    return dataset.cast_column("label", ClassLabel(names=class_names))


def _finetune_all(
    models: dict[str, torch.nn.Module], features: dict[str, tuple[np.ndarray, np.ndarray]], cohort: _Cohort,
    options: dict[str, Any],
) -> list[ProtocolResult]:
    """Fine-tune the model and its random-init twin on the same splits (the first `finetune_repeats`); the frozen
    baselines beside them on those splits (raw FC + SVM, the paper protocol's classifier; tangent_fc with its own)."""
    data = _finetune_dataset(cohort.dataset, options["label_column"], cohort.labels, cohort.class_names)
    splits = cohort.splits[: options["finetune_repeats"] or len(cohort.splits)]
    output_dir, model_or_path, results = options["output_dir"], options["model_or_path"], []
    with tempfile.TemporaryDirectory(prefix="brainmass_ckpt_") as scratch:
        for method, model in models.items():
            if method == METHOD_MODEL and isinstance(model_or_path, (str, os.PathLike)):
                path = str(model_or_path)
            else:
                path = os.path.join(scratch, method.replace(" ", "_"))
                model.save_pretrained(path)
            run_dir = None if output_dir is None else Path(output_dir) / "finetune" / method.replace(" ", "_")
            results.append(run_finetune(path, data, splits, method=method, output_dir=run_dir,
                                        finetune_kwargs=options["finetune_kwargs"], seed=options["seed"],
                                        show_progress=options["show_progress"]))
    for method in [m for m in (METHOD_RAW_FC, METHOD_TANGENT) if m in features]:
        train_x, test_x = features[method]
        result = run_split_protocol("paper", train_x, cohort.labels, test_features=test_x, splits=splits,
                                    seed=options["seed"], method=method, show_progress=options["show_progress"],
                                    classifier=_OWN_CLASSIFIER.get(method))
        result.protocol = "finetune"
        result.notes.append(f"{method} with its frozen-feature classifier ({result.settings['classifier']}) on the "
                            "fine-tuning splits.")
        results.append(result)
    return results


def _settings_record(options: dict[str, Any], encoder: torch.nn.Module, cohort: _Cohort) -> dict[str, Any]:
    """The report's `settings`: the arguments and model facts the numbers depend on."""
    record = {k: options[k] for k in _RECORDED}
    sites = options["sites"]
    record.update(
        protocols=list(parse_protocols(options["protocols"])), train_view="pfc",
        few_shot_k=list(options["few_shot_k"]),
        sites=[s.strip() for s in sites.split(",")] if isinstance(sites, str) else sites and list(sites),
        **vars(FCSettings.of(encoder.config)), num_scans=int(cohort.labels.size),
        class_counts=np.bincount(cohort.labels).tolist(), num_rois=int(cohort.time_series[0].shape[1]),
        model=str(getattr(encoder.config, "_name_or_path", "") or type(encoder).__name__),
        input_space=encoder.config.input_space, tangent_reference_scans=encoder.config.tangent_reference_scans,
        finetune_kwargs=dict(options["finetune_kwargs"] or {}),
        # leave-one-site-out split k tests the k-th site in sorted order (the report names unscored ones)
        test_sites=np.unique(cohort.sites).tolist() if options["cv"] == "leave_one_site_out" else None,
    )
    if options["include_tangent_baseline"]:
        record["tangent_fc"] = TANGENT_FC_TEXT
    return record


# The arguments of `evaluate` that its report records as they were passed (`_settings_record` adds the rest).
_RECORDED = ("label_column", "site_column", "group_column", "cv", "n_repeats", "test_size", "test_view",
             "num_tta_views", "feature", "seed", "pretrained_on_eval_scans", "include_random_baseline",
             "include_tangent_baseline")


def _results(models: dict[str, torch.nn.Module], cohort: _Cohort, options: dict[str, Any],
             protocols: tuple[str, ...], test_views: int) -> list[ProtocolResult]:
    """Every method's features once, then every protocol's results on them."""
    features = _method_features(
        models, cohort.time_series, FCSettings.of(models[METHOD_MODEL].config),
        frozen=any(p != "finetune" for p in protocols), tangent=options["include_tangent_baseline"],
        seed=options["seed"], test_view=options["test_view"], test_views=test_views, feature=options["feature"],
        batch_size=options["batch_size"], device=options["device"], show_progress=options["show_progress"],
    )
    results: list[ProtocolResult] = []
    reuse: dict[str, ProtocolResult] = {}
    for protocol in tqdm(protocols, desc="protocols", disable=not options["show_progress"]):
        if protocol == "finetune":
            results += _finetune_all(models, features, cohort, options)
        else:
            results += _protocol_results(protocol, features, cohort, options, reuse)
    return results


def evaluate(
    model_or_path: Any, dataset: Any, *, protocols: str | Sequence[str] = ("paper", "linear_probe"),
    label_column: str = "label", site_column: str | None = None, group_column: str | None = None,
    sites: str | Sequence[str] | None = None, n_repeats: int = 10, test_size: float = 0.2, test_view: str = "pfc",
    num_tta_views: int = 8, feature: str = "readout", few_shot_k: Sequence[int] = (1, 5, 10, 20), seed: int = 0,
    output_dir: str | os.PathLike | None = None, show_progress: bool = True, include_random_baseline: bool = True,
    include_tangent_baseline: bool = True, pretrained_on_eval_scans: bool | None = None,
    finetune_kwargs: dict[str, Any] | None = None, cv: str = "repeated",
    zero_shot_pairs: Sequence[tuple[str, str]] | None = None, finetune_repeats: int | None = None,
    batch_size: int = 32, device: str | None = None,
) -> EvaluationReport:
    """Evaluate a BrainMass encoder on a labelled dataset, beside the raw-FC, tangent_fc and random-init baselines.

    Args:
        model_or_path: a BrainMass model (or any model whose `base_model` is one) or a checkpoint path / hub id.
        dataset: a `datasets.Dataset` with `time_series` (`[T, R]` per row) and `label_column`, or a string for
            `resolve_dataset` (`"devfmri"`, a `save_to_disk` folder, an npz bundle, a folder of per-scan files).
        protocols: names from `PROTOCOLS`, a comma-separated string, or `"all"`.
        label_column: the class column; binary: the second class (ClassLabel order, else sorted) is positive.
        site_column: each scan's site: label × site strata, `zero_shot` pairs, `cv="leave_one_site_out"`.
        group_column: each scan's subject: a subject's scans fall on one side of every split.
        sites: only these sites' scans (the `site_column`, else `"site"`): with an encoder pretrained with
            `brainmass pretrain --exclude_sites` on the same names, the held-out-site protocol.
        n_repeats, test_size: repeated splits (`cv="repeated"`; also few-shot draws per k) and their test fraction.
        test_view: test features from one `"pfc"` view (default, the authors' test set), the `"full"` FC, or
            `"tta"` (the mean of `num_tta_views` pFC views).
        feature: `"readout"` (the paper's `8R`) or `"mean_hidden"` (`R` values); see `extract_features`.
        few_shot_k: labelled scans per class for `few_shot`.
        seed: seeds splits, pFC views, few-shot draws, random-init weights and fine-tuning.
        output_dir: `report.save(output_dir)` (fine-tuning runs in `<output_dir>/finetune`).
        include_random_baseline, include_tangent_baseline: run those baselines (`tangent_fc`: `evaluation.tangent`,
            about 30 s per split for 620 training scans × 116 ROIs on one CPU thread).
        pretrained_on_eval_scans: whether the encoder was pretrained (label-free) on these scans (transductive);
            the report states it, or that it is unknown (None).
        finetune_kwargs, finetune_repeats: for `brainmass_hf.training.finetune`, and how many splits it runs on.
        cv: `"repeated"`, `"kfold"` (5 folds) or `"leave_one_site_out"` (paper, linear_probe, finetune).
        zero_shot_pairs: `(source, target)` site pairs; default every ordered pair.
        batch_size, device: for feature extraction.

    Training features: one pFC view per scan (seed `seed`); test features: `test_view` (pFC seed `seed + 1`, TTA
    `seed + 2`). Every baseline sees the same views. docs/evaluation.md has the details.
    """
    options = dict(locals())
    protocols, test_views = _checked_options(protocols, cv, test_view, num_tta_views, feature, few_shot_k,
                                                 n_repeats)
    cohort = _load_cohort(dataset, options, protocols)
    encoder = _load_encoder(model_or_path)
    validate_dataset(cohort.dataset, encoder.config)  # every scan against the checkpoint (R, length), named
    cohort.time_series = time_series_list(cohort.dataset)
    cohort.splits = make_splits(cv, cohort.labels, n_repeats=n_repeats, test_size=test_size, seed=seed,
                                sites=cohort.sites, groups=cohort.groups)
    models = {METHOD_MODEL: encoder}
    if include_random_baseline:
        models[METHOD_RANDOM] = random_init_like(encoder, seed=seed)
    results = _results(models, cohort, options, protocols, test_views)
    notes = [f"The {name} baseline was not run (include_{flag}_baseline=False)."
             for name, flag, on in (("random-init", "random", include_random_baseline),
                                    ("tangent_fc", "tangent", include_tangent_baseline)) if not on]
    report = EvaluationReport(results, cohort.class_names, _settings_record(options, encoder, cohort), notes)
    if output_dir is not None:
        report.save(output_dir)
    return report
