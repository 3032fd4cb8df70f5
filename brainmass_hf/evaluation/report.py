"""The evaluation report: a table a reader can trust (positive class, majority-class rate, balanced
accuracy, operating point, transductive pretraining stated), one verdict per protocol with paired
differences, JSON with every split, and ROC / few-shot figures."""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_curve

from ..metrics import METRICS, format_mean_std, paired_difference
from .protocols import METHOD_MODEL, METHOD_RANDOM, METHOD_RAW_FC, METHOD_TANGENT, ProtocolResult

__all__ = ["EvaluationReport", "roc_curve_data", "TIDY_COLUMNS", "tidy_rows", "write_results_csv", "card_rows"]

BASELINES = (METHOD_RAW_FC, METHOD_TANGENT, METHOD_RANDOM)
_METHOD_ORDER = {METHOD_MODEL: 0, METHOD_RAW_FC: 1, METHOD_TANGENT: 2, METHOD_RANDOM: 3}
_METHOD_COLOR = {METHOD_MODEL: "tab:blue", METHOD_RAW_FC: "tab:orange", METHOD_TANGENT: "tab:green",
                 METHOD_RANDOM: "tab:gray"}
_METRIC_HEADER = {
    "accuracy": "accuracy", "majority_rate": "majority-class rate", "balanced_accuracy": "balanced accuracy",
    "auc": "ROC AUC", "sensitivity": "sensitivity", "specificity": "specificity", "f1": "F1",
}
_PROTOCOL_TITLE = {
    "paper": "Paper protocol: frozen features + RBF SVM",
    "linear_probe": "Linear probe: frozen features + logistic regression",
    "finetune": "Fine-tuned end to end (raw FC: SVM)",
    "few_shot": "Few-shot: frozen features + RBF SVM",
    "zero_shot": "Zero-shot transfer between sites (RBF SVM)",
}
TEST_VIEW_TEXT = {
    "pfc": "one pFC view per test scan (the authors' test set, `Task2Data(is_test=True)`)",
    "full": "the full FC of each test scan (the authors' validation set)",
    "tta": "the mean feature of {num_tta_views} pFC views per test scan (test-time augmentation)",
}
_CV_TEXT = {
    "repeated": "{n_repeats} random stratified splits, {test_size:g} of the scans held out",
    "kfold": "5-fold stratified cross-validation",
    "leave_one_site_out": "leave one site out (each site is the test set once)",
}


def _jsonable(value: Any) -> Any:
    """Plain JSON types; NaN/inf become null (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def roc_curve_data(result: ProtocolResult, num_points: int = 101) -> dict[str, Any] | None:
    """Mean ROC over the splits of `result` on a common FPR grid (multi-class: macro one-vs-rest).

    Returns `{"fpr", "tpr_mean", "tpr_std", "auc_mean", "auc_std", "operating_point"}` or None without
    usable splits. `operating_point` is `(1 - specificity, sensitivity)` of the classifier's own threshold,
    averaged over splits (binary only; None otherwise).
    """
    grid = np.linspace(0.0, 1.0, num_points)
    curves = []
    for split in result.splits:
        y_true, scores = np.asarray(split["y_true"]), np.asarray(split["scores"], dtype=np.float64)
        columns = [(y_true == 1, scores)] if scores.ndim == 1 else [(y_true == c, scores[:, c]) for c in range(scores.shape[1])]
        per_class = []
        for positive, score in columns:
            if 0 < positive.sum() < positive.size:
                fpr, tpr, _ = roc_curve(positive, score)
                per_class.append(np.interp(grid, fpr, tpr))
        if per_class:
            curve = np.mean(per_class, axis=0)
            curve[0] = 0.0
            curves.append(curve)
    if not curves:
        return None
    curves = np.asarray(curves)
    binary = np.asarray(result.splits[0]["scores"]).ndim == 1
    summary = result.summary
    operating = None
    if binary and np.isfinite(summary.get("specificity", {}).get("mean", np.nan)):
        operating = (1.0 - summary["specificity"]["mean"], summary["sensitivity"]["mean"])
    return {
        "fpr": grid, "tpr_mean": curves.mean(axis=0), "tpr_std": curves.std(axis=0),
        "auc_mean": summary.get("auc", {}).get("mean", float("nan")),
        "auc_std": summary.get("auc", {}).get("std", float("nan")), "operating_point": operating,
    }


def verdict_word(stats: dict[str, float]) -> str:
    """"above" / "below" when the paired mean difference is more than two standard errors from 0 (about a 95 %
    interval for ten or more splits), else "level with"; with fewer than 3 paired splits there is no spread to
    judge, and the word says so."""
    if stats["n"] < 3 or not np.isfinite(stats["mean"]):
        return "(too few splits to judge) vs"
    margin = 2 * stats["std"] / math.sqrt(stats["n"])
    return "above" if stats["mean"] > margin else "below" if stats["mean"] < -margin else "level with"


@dataclass
class EvaluationReport:
    """Every protocol × method result of one `evaluate` call.

    Attributes:
        results: one `ProtocolResult` per (protocol [, k or site pair], method).
        class_names: class names in code order (binary: the second is the positive class).
        settings: the arguments and model facts the numbers depend on.
        notes: warnings worth reading next to the numbers (skipped k, skipped protocols).
    """

    results: list[ProtocolResult]
    class_names: list[str]
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def get(self, protocol: str, method: str = METHOD_MODEL) -> list[ProtocolResult]:
        """Results of one protocol (by `protocol` or by `name`, e.g. `few_shot (k=5)`) and method."""
        return [r for r in self.results if protocol in (r.protocol, r.name) and r.method == method]

    @property
    def positive_class(self) -> str | None:
        """The class sensitivity, specificity, F1 and the ROC are about (binary only)."""
        return self.class_names[1] if len(self.class_names) == 2 else None

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(
            {
                "class_names": self.class_names, "positive_class": self.positive_class, "settings": self.settings,
                "notes": self.notes, "verdicts": self.verdicts(), "results": [r.to_dict() for r in self.results],
            }
        )

    def to_json(self, path: str | os.PathLike | None = None, *, indent: int | None = None) -> str:
        """The report as JSON text (NaN → null); also written to `path` when given."""
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            Path(path).write_text(text)
        return text

    # ---------------------------------------------------------------------------------------------- text
    def verdicts(self, metric: str = "auc", digits: int = 3) -> list[str]:
        """One line per protocol name: the model's `metric` beside raw FC, tangent_fc and random init, with the
        paired difference (model − baseline, mean ± std over the splits both ran) and whether it is above, below or
        level with the baseline (more than two standard errors of the paired difference from zero)."""
        lines = []
        for name in dict.fromkeys(r.name for r in self.results):
            by_method = {r.method: r for r in self.results if r.name == name and r.splits}
            model = by_method.get(METHOD_MODEL)
            if model is None:
                continue
            if model.degenerate:
                lines.append(f"{name}: no verdict: every test scan got the same score on every split, so AUC is "
                             "0.5 by construction.")
                continue
            parts = []
            for baseline in BASELINES:
                other = by_method.get(baseline)
                if other is None:
                    continue
                diff = paired_difference(model.splits, other.splits, metric)
                parts.append(
                    f"{verdict_word(diff)} {baseline} ({format_mean_std(other.summary.get(metric), digits)}; "
                    f"paired difference {format_mean_std(diff, digits, signed=True)} over {diff['n']} splits)"
                )
            label = _METRIC_HEADER.get(metric, metric)
            lines.append(f"{name}: {METHOD_MODEL} {label} {format_mean_std(model.summary.get(metric), digits)}, "
                         + ("; ".join(parts) if parts else "no baseline ran") + ".")
        return lines

    def _header_lines(self) -> list[str]:
        s = self.settings
        lines = []
        counts = s.get("class_counts")
        if counts:
            lines.append(f"{s.get('num_scans', sum(counts))} scans; classes: "
                         + ", ".join(f"{name} ({n})" for name, n in zip(self.class_names, counts)) + ".")
        if self.positive_class is not None:
            lines.append(f"Positive class: **{self.positive_class}** (sensitivity, specificity, F1 and the ROC "
                         f"curves treat {self.positive_class} as positive, {self.class_names[0]} as negative).")
        elif self.class_names:
            lines.append("Sensitivity, specificity, F1 and AUC are macro averages of one-vs-rest values.")
        if s.get("sites"):
            lines.append(f"Scans: only those of site(s) {', '.join(map(str, s['sites']))} (`sites=`).")
        if "test_view" in s:
            view = TEST_VIEW_TEXT[s["test_view"]].format(num_tta_views=s.get("num_tta_views", 8))
            lines.append(f"Views: training scans give one pFC view each; test scans give {view}.")
        if "cv" in s:
            cv = _CV_TEXT[s["cv"]].format(n_repeats=s.get("n_repeats", 10), test_size=s.get("test_size", 0.2))
            grouping = (f"grouped by `{s['group_column']}` (no subject in both train and test)"
                        if s.get("group_column") else "not grouped by subject (one scan per subject assumed)")
            strata = f", stratified by label × `{s['site_column']}`" if s.get("site_column") else ""
            lines.append(f"Splits: {cv}{strata}, {grouping}; seed {s.get('seed', 0)}.")
        pretrained = s.get("pretrained_on_eval_scans")
        if pretrained is True:
            lines.append("Encoder: **pretrained on these evaluation scans** (self-supervised, label-free: "
                         "transductive; test scans were seen without labels during pretraining).")
        elif pretrained is False:
            lines.append("Encoder: not pretrained on these evaluation scans (inductive).")
        elif pretrained is None and "pretrained_on_eval_scans" in s:
            lines.append("Encoder: whether it was pretrained on these scans was not stated "
                         "(pass pretrained_on_eval_scans=True/False).")
        if s.get("input_space") == "tangent":
            lines.append(f"Encoder tokens: FC in the tangent space at the reference point saved with the checkpoint "
                         f"(fitted on {s.get('tangent_reference_scans', 0)} pretraining scans; the random-init "
                         "twin uses the same point).")
        lines.append("Sensitivity and specificity are the operating point of each classifier's own threshold "
                     "(decision value 0), marked on the ROC plots; accuracy should be read beside the "
                     "majority-class rate (always answering the larger class).")
        return lines

    def to_markdown(self, digits: int = 3, heading_level: int = 1) -> str:
        """Header (data, positive class, views, splits, pretraining), verdicts, then a table: rows = protocol
        × method, columns = metrics as mean ± std over splits; then the notes. `heading_level` 2 nests the
        text under a document's own title."""
        lines = ["#" * heading_level + " BrainMass evaluation", "", *self._header_lines(), ""]
        verdicts = self.verdicts(digits=digits)
        if verdicts:
            lines += ["#" * (heading_level + 1) + " Verdict per protocol (ROC AUC, paired over the same splits)", ""]
            lines += [f"- {v}" for v in verdicts] + [""]
        header = ["protocol", "method", "splits", *(_METRIC_HEADER[m] for m in METRICS)]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        order = {name: i for i, name in enumerate(dict.fromkeys(r.name for r in self.results))}
        for r in sorted(self.results, key=lambda r: (order[r.name], _METHOD_ORDER.get(r.method, 9))):
            scored = r.summary.get("auc", {}).get("n", len(r.splits))
            cells = [r.name, r.method, str(len(r.splits)) + (f" ({scored} scored)" if scored < len(r.splits) else "")]
            cells += [format_mean_std(r.summary.get(m), digits) for m in METRICS]
            lines.append("| " + " | ".join(cells) + " |")
        notes = list(self.notes) + [f"{r.name} · {r.method}: {n}" for r in self.results
                                    for n in [*r.notes, *self._unscored_note(r)]]
        if notes:
            lines += ["", "Notes:", ""] + [f"- {n}" for n in dict.fromkeys(notes)]
        lines.append("")
        return "\n".join(lines)

    def _unscored_note(self, result: ProtocolResult) -> list[str]:
        """Splits whose test set holds one class (e.g. a one-class held-out site): AUC and balanced accuracy are
        undefined there and left out of the means; say which splits, and how many were scored."""
        unscored = [s["split"] for s in result.splits if len(set(s["y_true"])) < 2]
        if not unscored:
            return []
        sites = self.settings.get("test_sites")
        names = [f"{k} (site {sites[k]!r})" if sites and k < len(sites) else str(k) for k in unscored]
        return [f"split(s) {', '.join(names)} test one class only: AUC and balanced accuracy are undefined there and "
                f"left out of the means ({len(result.splits) - len(unscored)} of {len(result.splits)} splits scored)."]

    # ---------------------------------------------------------------------------------------------- figures
    def roc_figure(self, protocol: str):
        """`matplotlib.figure.Figure`: mean ROC over splits (±1 std band) of every method, one panel per
        protocol name (zero-shot: per site pair), the operating point marked; None without ROC data."""
        from matplotlib.figure import Figure

        groups: dict[str, list[ProtocolResult]] = {}
        for r in self.results:
            if r.protocol == protocol and r.splits:
                groups.setdefault(r.name, []).append(r)
        if not groups:
            return None
        fig = Figure(figsize=(max(6.0, 5.2 * len(groups)), 6.0), layout="constrained")
        axes = fig.subplots(1, len(groups), squeeze=False)[0]
        for ax, (name, results) in zip(axes, groups.items()):
            for r in sorted(results, key=lambda r: _METHOD_ORDER.get(r.method, 9)):
                curve = roc_curve_data(r)
                if curve is None:
                    continue
                color = _METHOD_COLOR.get(r.method)
                ax.plot(curve["fpr"], curve["tpr_mean"], color=color,
                        label=f"{r.method} (AUC {format_mean_std(r.summary.get('auc'), 2)}, {len(r.splits)} splits)")
                ax.fill_between(curve["fpr"], np.clip(curve["tpr_mean"] - curve["tpr_std"], 0, 1),
                                np.clip(curve["tpr_mean"] + curve["tpr_std"], 0, 1), color=color, alpha=0.15)
                if curve["operating_point"] is not None:
                    ax.plot(*curve["operating_point"], marker="o", ms=7, mec="k", color=color, ls="none", zorder=5,
                            clip_on=False)  # a point at FPR 0 sits on the axis; keep it whole
            ax.plot([0, 1], [0, 1], ls="--", color="k", lw=0.8, label="chance")
            subtitle = name.split(" ", 1)[1].strip("()") if name != protocol else ""
            ax.set(xlabel="false positive rate (1 − specificity)", ylabel="true positive rate (sensitivity)",
                   title=subtitle or None, xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
            ax.legend(loc="lower right", fontsize=8)
        positive = f"positive class: {self.positive_class}" if self.positive_class else "macro one-vs-rest"
        fig.suptitle(f"{_PROTOCOL_TITLE.get(protocol, protocol)}\nROC curve, {positive}\n"
                     "band: ±1 SD of the TPR over splits; dot: operating point at the classifier's threshold",
                     fontsize=9)
        return fig

    def few_shot_figure(self, metric: str = "auc"):
        """`matplotlib.figure.Figure`: `metric` (mean ± std over draws) against k, one line per method. A k
        whose every draw tied all test scores (AUC 0.5 by construction, e.g. k=1) is left out and named in the
        figure, not drawn as data. None when few-shot did not run."""
        from matplotlib.figure import Figure

        by_method: dict[str, list[tuple[int, dict[str, float]]]] = {}
        degenerate = set()
        for r in self.results:
            if r.protocol != "few_shot" or not r.splits:
                continue
            if r.degenerate:
                degenerate.add(r.settings["k"])
                continue
            by_method.setdefault(r.method, []).append((r.settings["k"], r.summary.get(metric, {})))
        if not by_method and not degenerate:
            return None
        fig = Figure(figsize=(6, 4.5), layout="constrained")
        ax = fig.subplots()
        for method in sorted(by_method, key=lambda m: _METHOD_ORDER.get(m, 9)):
            points = sorted(by_method[method])
            ax.errorbar([k for k, _ in points], [s["mean"] for _, s in points], yerr=[s["std"] for _, s in points],
                        marker="o", capsize=3, label=method, color=_METHOD_COLOR.get(method))
        ks = sorted({k for pts in by_method.values() for k, _ in pts})
        if ks:
            ax.set_xscale("log")
            ax.set_xticks(ks, [str(k) for k in ks])
            ax.minorticks_off()
        if metric in ("auc", "balanced_accuracy"):
            ax.axhline(0.5, ls="--", color="k", lw=0.8, label="chance")
        title = _PROTOCOL_TITLE["few_shot"]
        if degenerate:
            title += (f"\nnot plotted: k = {', '.join(map(str, sorted(degenerate)))} (all test scores tied: "
                      "AUC 0.5 by construction)")
        label = _METRIC_HEADER.get(metric, metric)
        ax.set(xlabel="labelled training scans per class (k)", ylabel=f"{label} (mean ± SD over draws)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8, loc="best")
        return fig

    def plot_roc(self, protocol: str, path: str | os.PathLike) -> Path | None:
        """Write `roc_figure(protocol)` to `path`; None when there is nothing to plot."""
        return _save(self.roc_figure(protocol), path)

    def plot_few_shot(self, path: str | os.PathLike, metric: str = "auc") -> Path | None:
        """Write `few_shot_figure(metric)` to `path`; None when few-shot did not run."""
        return _save(self.few_shot_figure(metric), path)

    def save(self, output_dir: str | os.PathLike) -> dict[str, Path]:
        """Write `results.json`, `results.md`, `results.csv` (:func:`write_results_csv`), `roc_<protocol>.png`
        per protocol with ROC data, and `few_shot.png` when few-shot ran. Returns the written paths by name."""
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        written = {"results.json": output_dir / "results.json", "results.md": output_dir / "results.md"}
        self.to_json(written["results.json"])
        written["results.md"].write_text(self.to_markdown())
        written["results.csv"] = write_results_csv(self, output_dir / "results.csv")
        for protocol in dict.fromkeys(r.protocol for r in self.results):
            if protocol == "few_shot":
                path = self.plot_few_shot(output_dir / "few_shot.png")
            else:
                path = self.plot_roc(protocol, output_dir / f"roc_{protocol}.png")
            if path is not None:
                written[path.name] = path
        return written


TIDY_COLUMNS = ("protocol", "setting", "method", "split", "train_size", "test_size", "metric", "value")


def tidy_rows(report: "EvaluationReport") -> list[dict[str, Any]]:
    """One row per method x protocol x split x metric (columns :data:`TIDY_COLUMNS`), for every method and
    protocol in ``report`` (whatever methods it holds). ``setting`` tells apart results of one protocol
    (``k=10`` for few-shot, ``A → B`` for zero-shot, else empty); ``split`` is the split's index; ``value`` is
    the metric on that split's test scans (NaN where it is undefined, e.g. AUC with one class)."""
    rows = []
    for result in report.results:
        setting = result.name[len(result.protocol):].strip().strip("()")
        for split in result.splits:
            for metric in METRICS:
                if metric in split:
                    rows.append({
                        "protocol": result.protocol, "setting": setting, "method": result.method,
                        "split": split["split"], "train_size": split.get("train_size"),
                        "test_size": split.get("test_size"), "metric": metric, "value": split[metric],
                    })
    return rows


def write_results_csv(report: "EvaluationReport", path: str | os.PathLike) -> Path:
    """Write :func:`tidy_rows` of ``report`` to ``path`` (CSV with a header; ``pandas.read_csv`` reads it)."""
    path = Path(path)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=TIDY_COLUMNS)
        writer.writeheader()
        writer.writerows(tidy_rows(report))
    return path


def _save(fig, path: str | os.PathLike) -> Path | None:
    if fig is None:
        return None
    fig.savefig(path, dpi=120)
    return Path(path)


# The columns of a card's results table, in order: this file, the three baselines, then the paired differences.
CARD_BASELINES = (("raw FC", METHOD_RAW_FC), ("tangent_fc", METHOD_TANGENT), ("random init", METHOD_RANDOM))


def card_rows(report: dict[str, Any], cohort: str, model_column: str = "BrainMass (this file)") -> list[dict]:
    """The rows of a card's results table from an evaluation report (``EvaluationReport.to_dict()`` or its
    ``results.json``): one row per protocol, with this checkpoint's ROC AUC, each baseline's that the report holds
    (raw FC, tangent_fc, random init) as ``"mean ± std"`` over splits, and the paired difference with each (model
    − baseline on the same splits). Nothing is typed by hand, so a card shows only numbers its file produced."""
    by = {(r["name"], r["method"]): r for r in report["results"]}
    rows = []
    for protocol in dict.fromkeys(r["name"] for r in report["results"] if r["method"] == METHOD_MODEL):
        model = by[(protocol, METHOD_MODEL)]
        row = {"cohort": cohort, "protocol": protocol, model_column: format_mean_std(model["summary"]["auc"])}
        present = [(column, method) for column, method in CARD_BASELINES if (protocol, method) in by]
        for column, method in present:
            row[column] = format_mean_std(by[(protocol, method)]["summary"]["auc"])
        for column, method in present:
            diff = paired_difference(model["splits"], by[(protocol, method)]["splits"])
            row[f"paired Δ vs {column}"] = format_mean_std(diff, signed=True)
        rows.append(row)
    return rows
