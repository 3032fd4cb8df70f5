"""``brainmass demo``: the package's main job on real data, on a laptop.

Loads the bundled CC0 development fMRI cohort (OpenNeuro ds000228, 155 scans, AAL-116, child vs adult) or the
user's own data, pretrains a small BrainMass with pFC views, extracts frozen features, runs the paper's SVM
protocol over repeated stratified splits beside the raw-FC, tangent_fc and random-init baselines, prints a results
table and writes a report folder:

* ``report.md`` / ``report.json``: settings, timings, the results table, the loss history;
* ``results.json`` / ``results.md``: every per-split number (from :func:`brainmass_hf.evaluation.evaluate`);
* ``loss_curves.png``, ``roc_paper.png`` (and ``roc_linear_probe.png``), ``fc_example.png``
  (one scan's FC, two pFC views and their difference), ``few_shot.png`` when few-shot runs;
* ``encoder/``: the pretrained encoder + feature extractor, loadable with ``AutoModel.from_pretrained``;
* ``interpretation/``: which regions drive the child/adult decision (:func:`brainmass_hf.interpret.explain`:
  gradient × input of the held-out SVM score for frozen features, a label-permutation test with FDR per region,
  glass-brain, top-region, FC and attention-rollout figures, CSV tables), linked from a section of ``report.md``.
  Off with ``--no-explain``; skipped by ``--fast`` unless ``--explain`` is given.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .configuration_brainmass import BrainMassConfig
from .connectivity import connectivity_view, num_timepoints_kept
from .modeling_brainmass import BrainMassForPreTraining
from .training import BrainMassPretrainingArguments, pretrain

__all__ = ["DemoSettings", "run_demo"]


@dataclass
class DemoSettings:
    """Defaults of ``brainmass demo``. Measured on this project's 2-core CPU (1 thread): pretraining 39 s,
    evaluation 4 s, interpretation 11 s, about a minute in all (README, "Measured results")."""

    data: str = "devfmri"
    output_dir: str = "brainmass_demo_report"
    preset: str = "tiny"
    epochs: int = 12
    batch_size: int = 32
    learning_rate: float = 3e-4
    warmup_epochs: int = 3
    label_column: str = "label"
    n_repeats: int = 10
    test_size: float = 0.2
    protocols: tuple[str, ...] = ("paper", "linear_probe")
    seed: int = 0
    fast: bool = False
    # interpretation section (brainmass_hf.interpret.explain): None = on, except in --fast runs. Its cost is one
    # encoder pass of every scan and one forward + backward pass per held-out scan and split (explain_splits);
    # explain_permutations is used only with explain's encoder_method="permutation"
    explain: bool | None = None
    explain_splits: int = 2
    explain_permutations: int = 1
    explain_group_permutations: int = 2000
    extra_config: dict = field(default_factory=dict)


_LOSS_PARTS = (("loss", "total loss"), ("lra_loss", "LRA loss (BYOL)"), ("mrm_loss", "MRM loss (MSE)"),
               ("mrc_loss", "MRC loss (InfoNCE)"), ("mrc_accuracy", "MRC accuracy"))


def loss_curves_figure(history: list[dict], config: BrainMassConfig):
    """`matplotlib.figure.Figure`, 2 × 3 panels: each pretraining loss part against the optimizer step, and the
    masked-ROI classification accuracy beside its chance level, 1 / `config.mrc_num_masked` (the head picks one
    of the masked ROIs)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 6.5), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    steps = [h["step"] for h in history]
    for ax, (key, title) in zip(axes, _LOSS_PARTS):
        ax.plot(steps, [h[key] for h in history], lw=1.4, marker="." if len(steps) < 30 else None)
        ax.set(title=title, xlabel="optimizer step", ylabel="accuracy" if key == "mrc_accuracy" else "loss")
        ax.grid(alpha=0.3)
    chance = 1.0 / config.mrc_num_masked
    axes[4].axhline(chance, ls="--", color="k", lw=0.9, label=f"chance (1/{config.mrc_num_masked} masked ROIs)")
    axes[4].set_ylim(0, 1)
    axes[4].legend(fontsize=8)
    axes[5].set_axis_off()
    fig.suptitle("Self-supervised pretraining losses (mean over each logging interval)")
    return fig


def fc_example_figure(scan: np.ndarray, config: BrainMassConfig, subject: str, seed: int):
    """`matplotlib.figure.Figure`: one scan's full FC, two pFC views, and the difference pFC view 1 − full FC on
    its own colour scale (the views differ by a few hundredths of r, invisible on a ±1 scale)."""
    from matplotlib.figure import Figure

    x = torch.as_tensor(scan)[None]
    generator = torch.Generator().manual_seed(seed)
    full, view1, view2 = (
        connectivity_view(x, settings=config, pfc=view > 0, generator=generator)[0].numpy() for view in range(3)
    )
    difference = view1 - full
    kept = num_timepoints_kept(scan.shape[0], config)
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    axes = fig.subplots(1, 4)
    panels = [(full, f"full FC ({scan.shape[0]} time points)"), (view1, f"pFC view 1 ({kept} points kept)"),
              (view2, f"pFC view 2 ({kept} points kept)")]
    for ax, (mat, title) in zip(axes, panels):
        im = ax.imshow(mat, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set(title=title, xlabel="ROI index", ylabel="ROI index")
    fig.colorbar(im, ax=axes[:3], shrink=0.8, label="correlation r")
    limit = float(np.abs(difference).max()) or 1.0
    im = axes[3].imshow(difference, vmin=-limit, vmax=limit, cmap="PuOr_r")
    axes[3].set(title=f"view 1 − full (mean |Δr| {np.abs(difference).mean():.3f})", xlabel="ROI index",
                ylabel="ROI index")
    fig.colorbar(im, ax=axes[3], shrink=0.8, label="Δr (pFC − full)")
    fig.suptitle(f"Scan {subject}: functional connectivity and two pseudo-FC views "
                 f"(drop {config.pfc_drop_ratio:.0%} of time points, "
                 f"{ {'pearson': 'Pearson', 'ledoit_wolf': 'Ledoit-Wolf'}.get(config.fc_kind, config.fc_kind)} FC)")
    return fig


def _files_line(out: Path, protocols) -> str:
    """The report's closing line: a relative link to every file and folder the demo wrote that exists."""
    described = {
        "results.json": "every split", "results.md": "results table", "loss_curves.png": "pretraining losses",
        "fc_example.png": "FC and pFC views of one scan",
        **{f"roc_{p}.png": f"ROC, {p.replace('_', ' ')} protocol" for p in protocols},
        "few_shot.png": "few-shot AUC", "interpretation/": "tables and figures of the interpretation",
        "encoder/": "the pretrained encoder + feature extractor, for `AutoModel.from_pretrained`",
    }
    links = [f"[{name}]({name}) ({what})" for name, what in described.items() if (out / name).exists()]
    return "Files: " + ", ".join(links) + "."


def logging_interval(num_scans: int, batch_size: int, epochs: int) -> int:
    """Optimizer steps between log lines: every 10 steps, or often enough for about ten points on a short run
    (a log line per step floods the console with one dict per step)."""
    total_steps = math.ceil(num_scans / batch_size) * epochs
    return max(1, min(10, total_steps // 10))


def interpretation_markdown(settings: DemoSettings, encoder, dataset, out: Path) -> str:
    """The report's interpretation section: :func:`brainmass_hf.interpret.interpretation_section` run on the
    pretrained ``encoder`` (files under ``out/interpretation/``, links relative to ``out``), or a short section
    saying why it was skipped and the command that produces it (``--fast`` runs, ``--no-explain``, or a label
    column without exactly two classes, which the two-class statistics need)."""
    from .evaluation import labels_from_dataset

    heading = "## Interpretation (skipped)\n\n"
    command = (f"`brainmass explain --model {out / 'encoder'} --data {settings.data} "
               f"--label-column {settings.label_column} --out {out / 'interpretation'}`")
    if settings.explain is False:
        return heading + f"Skipped (`--no-explain`). Run `brainmass demo` without it, or {command}.\n"
    if settings.explain is None and settings.fast:
        return heading + f"Skipped in `--fast` runs. Run `brainmass demo --fast --explain`, or {command}.\n"
    _, class_names = labels_from_dataset(dataset, settings.label_column)
    if len(class_names) != 2:
        return heading + (
            f"Skipped: the region statistics compare two classes and {settings.label_column!r} has "
            f"{len(class_names)} ({class_names}). Filter the data to two classes and run {command}.\n"
        )
    from .interpret import interpretation_section

    print(f"\nInterpretation: gradient x input of each ROI ({settings.explain_splits} split(s)) and figures "
          f"into {out / 'interpretation'} (--no-explain skips it)")
    return interpretation_section(
        encoder, dataset, out, label_column=settings.label_column, n_splits=settings.explain_splits,
        n_permutations=settings.explain_permutations, n_group_permutations=settings.explain_group_permutations,
        seed=settings.seed,
    ) + "\n"


def _settings_with(settings: DemoSettings | None, overrides: dict) -> DemoSettings:
    """``settings`` (default ``DemoSettings()``) with ``overrides`` applied; ``--fast`` caps epochs and splits (a few
    steps, a few splits, one interpretation split: for tests and smoke runs)."""
    settings = settings or DemoSettings()
    for key, value in overrides.items():
        setattr(settings, key, value)
    if settings.fast:
        settings.epochs, settings.n_repeats = min(settings.epochs, 2), min(settings.n_repeats, 2)
        settings.explain_splits = min(settings.explain_splits, 1)
    return settings


def _demo_data(settings: DemoSettings):
    """``(dataset, scans, config)``: the labelled data, its time series and the model config of the preset."""
    from .data import bundled_roi_names, time_series_list
    from .evaluation import resolve_dataset

    dataset = resolve_dataset(settings.data)
    if settings.label_column not in dataset.column_names:
        raise ValueError(
            f"The data has no {settings.label_column!r} column to evaluate diagnosis on (columns: "
            f"{dataset.column_names}); pass --label-column or a phenotype table with labels."
        )
    scans = time_series_list(dataset)
    config_values = dict(settings.extra_config)
    if settings.data == "devfmri":
        config_values.setdefault("atlas_name", "AAL-116")
        config_values.setdefault("roi_names", bundled_roi_names("aal116"))
    config = BrainMassConfig.from_preset(settings.preset, num_rois=scans[0].shape[1], **config_values)
    print(
        f"Data: {len(dataset)} scans, {scans[0].shape[1]} ROIs, T = {min(s.shape[0] for s in scans)}–"
        f"{max(s.shape[0] for s in scans)}; model: BrainMass-{settings.preset} "
        f"({config.num_hidden_layers} layers, {config.num_attention_heads} heads)"
    )
    return dataset, scans, config


def _pretrain_demo(settings: DemoSettings, dataset, config: BrainMassConfig, out: Path):
    """Self-supervised pretraining on every scan (no labels): ``(encoder, loss history)``; writes ``encoder/`` and
    ``loss_curves.png``."""
    args = BrainMassPretrainingArguments(
        output_dir=str(out / "pretraining"),
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        warmup_epochs=settings.warmup_epochs,
        logging_steps=logging_interval(len(dataset), settings.batch_size, settings.epochs),
        logging_first_step=True,
        # pinned host memory only speeds copies to a GPU; on CPU torch warns once per batch
        dataloader_pin_memory=torch.cuda.is_available(),
        save_strategy="no",
        seed=settings.seed,
        report_to="none",
    )
    trainer = pretrain(dataset, config, args, encoder_dir=str(out / "encoder"))
    history = [h for h in trainer.state.log_history if "lra_loss" in h]
    loss_curves_figure(history, config).savefig(out / "loss_curves.png", dpi=110)
    encoder = trainer.model.brainmass if isinstance(trainer.model, BrainMassForPreTraining) else trainer.model
    return encoder, history


def _report_markdown(settings: DemoSettings, summary: dict, config: BrainMassConfig, table: str,
                     interpretation: str, out: Path) -> str:
    """``report.md``: what ran and how long, the first and last pretraining losses, the evaluation table (the model
    beside raw FC, tangent_fc and random init), the interpretation section and links to every file."""
    history, timings, data = summary["loss_history"], summary["timings"], summary["data"]
    first, last = history[0], history[-1]
    lines = [
        "# BrainMass demo report",
        "",
        f"Data: `{settings.data}`, {data['scans']} scans, {data['num_rois']} ROIs. Model: BrainMass-{settings.preset}, "
        f"pretrained {settings.epochs} epochs (batch {settings.batch_size}) on {summary['device']} in "
        f"{timings['pretraining_s']:.0f} s; evaluation {timings['evaluation_s']:.0f} s; interpretation "
        f"{timings['interpretation_s']:.0f} s.",
        "",
        "## Pretraining losses (first → last logged step)",
        "",
        "| part | first | last |",
        "|---|---|---|",
        *[f"| {k} | {first[k]:.4f} | {last[k]:.4f} |" for k in ("loss", "lra_loss", "mrm_loss", "mrc_loss", "mrc_accuracy")],
        "",
        f"MRC accuracy at chance is 1/{config.mrc_num_masked} = {1 / config.mrc_num_masked:.3f} (one of the masked ROIs).",
        "",
        table,
        "",
        interpretation,
        _files_line(out, settings.protocols),
    ]
    return "\n".join(lines) + "\n"


def run_demo(settings: DemoSettings | None = None, **overrides) -> dict:
    """Runs the demo end to end and returns the report dictionary (also written to ``report.json``)."""
    from .evaluation import evaluate

    settings = _settings_with(settings, overrides)
    out = Path(settings.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    dataset, scans, config = _demo_data(settings)
    subject = str(dataset[0].get("subject_id", "scan 0"))
    fc_example_figure(scans[0], config, subject, settings.seed).savefig(out / "fc_example.png", dpi=110)
    # 1. self-supervised pretraining on every scan (no labels)
    t0 = time.perf_counter()
    encoder, history = _pretrain_demo(settings, dataset, config, out)
    timings["pretraining_s"] = time.perf_counter() - t0
    # 2. frozen features → paper protocol (+ linear probe), beside the raw FC, tangent_fc and random-init baselines
    t0 = time.perf_counter()
    report = evaluate(
        encoder, dataset, protocols=settings.protocols, label_column=settings.label_column,
        n_repeats=settings.n_repeats, test_size=settings.test_size, seed=settings.seed, output_dir=out,
        # the demo pretrains on every scan it then evaluates (no labels used): the report must say so
        pretrained_on_eval_scans=True,
    )
    timings["evaluation_s"] = time.perf_counter() - t0
    table = report.to_markdown(heading_level=2)
    print("\n" + table)
    # 3. which regions drive the classification (after the table: it takes about as long as the evaluation)
    t0 = time.perf_counter()
    interpretation = interpretation_markdown(settings, encoder, dataset, out)
    timings["interpretation_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - start
    summary = {
        "settings": asdict(settings), "data": {"scans": len(dataset), "num_rois": scans[0].shape[1],
                                               "source": settings.data},
        "device": str(encoder.device), "torch_threads": torch.get_num_threads(),
        "timings": {k: round(v, 1) for k, v in timings.items()}, "loss_history": history,
        "results": report.to_dict(),
    }
    (out / "report.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "report.md").write_text(_report_markdown(settings, summary, config, table, interpretation, out))
    print(f"\nReport written to {out.resolve()} in {timings['total_s']:.0f} s")
    return summary
