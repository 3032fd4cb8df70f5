"""``brainmass demo``: the package's main job on real data, on a laptop.

Loads the bundled CC0 development fMRI cohort (OpenNeuro ds000228, 155 scans, AAL-116, child vs adult) or the
user's own data, pretrains a small BrainMass with pFC views, extracts frozen features, runs the paper's SVM
protocol over repeated stratified splits beside the raw-FC and random-init baselines, prints a results table
and writes a report folder:

* ``report.md`` / ``report.json``: settings, timings, the results table, the loss history;
* ``results.json`` / ``results.md``: every per-split number (from :func:`brainmass_hf.evaluation.evaluate`);
* ``loss_curves.png``, ``roc_paper.png`` (and ``roc_linear_probe.png``), ``fc_example.png``
  (one scan's FC and two pFC views);
* ``encoder/``: the pretrained encoder + feature extractor, loadable with ``AutoModel.from_pretrained``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .configuration_brainmass import BrainMassConfig
from .connectivity import connectivity_view
from .modeling_brainmass import BrainMassForPreTraining
from .training import BrainMassPretrainingArguments, pretrain

__all__ = ["DemoSettings", "run_demo"]


@dataclass
class DemoSettings:
    """Defaults finish in about five minutes on 2 CPU cores (see README for the measured time)."""

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
    extra_config: dict = field(default_factory=dict)


def _plot_loss_curves(history: list[dict], path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [("loss", "total"), ("lra_loss", "LRA (BYOL)"), ("mrm_loss", "MRM (MSE)"), ("mrc_loss", "MRC (InfoNCE)"),
             ("mrc_accuracy", "MRC accuracy")]
    fig, axes = plt.subplots(1, len(parts), figsize=(4 * len(parts), 3.2))
    steps = [h["step"] for h in history]
    for ax, (key, title) in zip(axes, parts):
        ax.plot(steps, [h[key] for h in history], lw=1.2)
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_fc_example(scan: np.ndarray, config: BrainMassConfig, subject: str, path: Path, seed: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = torch.as_tensor(scan)[None]
    generator = torch.Generator().manual_seed(seed)
    mats = [connectivity_view(x, settings=config, pfc=view > 0, generator=generator)[0] for view in range(3)]
    titles = ["full FC", "pFC view 1", "pFC view 2"]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    for ax, mat, title in zip(axes, mats, titles):
        im = ax.imshow(mat.numpy(), vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_title(f"{subject}: {title}")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes, shrink=0.8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_demo(settings: DemoSettings | None = None, **overrides) -> dict:
    """Runs the demo end to end and returns the report dictionary (also written to ``report.json``)."""
    from .data import bundled_roi_names, time_series_list
    from .evaluation import evaluate, resolve_dataset

    settings = settings or DemoSettings()
    for key, value in overrides.items():
        setattr(settings, key, value)
    if settings.fast:  # for tests and smoke runs: a few steps, a few splits
        settings.epochs, settings.n_repeats = min(settings.epochs, 2), min(settings.n_repeats, 2)
    out = Path(settings.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()

    dataset = resolve_dataset(settings.data)
    if settings.label_column not in dataset.column_names:
        raise ValueError(
            f"The data has no {settings.label_column!r} column to evaluate diagnosis on (columns: "
            f"{dataset.column_names}); pass --label-column or a phenotype table with labels."
        )
    scans = time_series_list(dataset)
    num_rois = scans[0].shape[1]
    config_values = dict(settings.extra_config)
    if settings.data == "devfmri":
        config_values.setdefault("atlas_name", "AAL-116")
        config_values.setdefault("roi_names", bundled_roi_names("aal116"))
    config = BrainMassConfig.from_preset(settings.preset, num_rois=num_rois, **config_values)
    print(
        f"Data: {len(dataset)} scans, {num_rois} ROIs, T = {min(s.shape[0] for s in scans)}–"
        f"{max(s.shape[0] for s in scans)}; model: BrainMass-{settings.preset} "
        f"({config.num_hidden_layers} layers, {config.num_attention_heads} heads)"
    )
    _plot_fc_example(scans[0], config, str(dataset[0].get("subject_id", "scan 0")), out / "fc_example.png", settings.seed)

    # 1. self-supervised pretraining on every scan (no labels)
    args = BrainMassPretrainingArguments(
        output_dir=str(out / "pretraining"),
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        warmup_epochs=settings.warmup_epochs,
        logging_steps=1,
        save_strategy="no",
        seed=settings.seed,
        report_to="none",
    )
    t0 = time.perf_counter()
    trainer = pretrain(dataset, config, args, encoder_dir=str(out / "encoder"))
    timings["pretraining_s"] = time.perf_counter() - t0
    history = [h for h in trainer.loss_history if "lra_loss" in h]
    _plot_loss_curves(history, out / "loss_curves.png")
    encoder = trainer.model.brainmass if isinstance(trainer.model, BrainMassForPreTraining) else trainer.model

    # 2. frozen features → paper protocol (+ linear probe), beside raw FC and random-init baselines
    t0 = time.perf_counter()
    report = evaluate(
        encoder,
        dataset,
        protocols=settings.protocols,
        label_column=settings.label_column,
        n_repeats=settings.n_repeats,
        test_size=settings.test_size,
        seed=settings.seed,
        output_dir=out,
    )
    timings["evaluation_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - start
    table = report.to_markdown()
    print("\n" + table)

    summary = {
        "settings": asdict(settings),
        "data": {"scans": len(dataset), "num_rois": num_rois, "source": settings.data},
        "device": str(encoder.device),
        "torch_threads": torch.get_num_threads(),
        "timings": {k: round(v, 1) for k, v in timings.items()},
        "loss_history": history,
        "results": report.to_dict(),
    }
    (out / "report.json").write_text(json.dumps(summary, indent=2, default=str))
    first, last = history[0], history[-1]
    lines = [
        "# BrainMass demo report",
        "",
        f"Data: `{settings.data}`, {len(dataset)} scans, {num_rois} ROIs. Model: BrainMass-{settings.preset}, "
        f"pretrained {settings.epochs} epochs (batch {settings.batch_size}) on {summary['device']} in "
        f"{timings['pretraining_s']:.0f} s; evaluation {timings['evaluation_s']:.0f} s.",
        "",
        "## Pretraining losses (first → last logged step)",
        "",
        "| part | first | last |",
        "|---|---|---|",
        *[f"| {k} | {first[k]:.4f} | {last[k]:.4f} |" for k in ("loss", "lra_loss", "mrm_loss", "mrc_loss", "mrc_accuracy")],
        "",
        "## Diagnosis (frozen features, repeated stratified splits)",
        "",
        table,
        "",
        "Files: `results.json` (every split), `loss_curves.png`, `roc_paper.png`, `fc_example.png`, `encoder/`.",
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print(f"\nReport written to {out.resolve()} in {timings['total_s']:.0f} s")
    return summary
