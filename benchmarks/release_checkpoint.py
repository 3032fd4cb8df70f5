#!/usr/bin/env python
"""Release an encoder that came back from the GPU (issue 18): checkpoint folder, evaluation, facts, card.

    python benchmarks/gpu_pretrain.py unpack <files_at> runs/gpu_release             # the encoder folders
    python benchmarks/release_checkpoint.py --encoder runs/gpu_release/base-drop50-s0-e80 \\
        --name brainmass-base-aal116 --curve runs/gpu_release/curve.json --device "one NVIDIA H100 80GB"

Steps, each through the package's own path:

1. the encoder's weights, config and feature extractor go to ``checkpoints/<name>`` (as stored: bfloat16 from
   ``gpu_release.sh``);
2. ``brainmass_hf.evaluation.evaluate`` on the bundled devfmri cohort and, where ``--abide`` exists (it is never in
   the repository), ABIDE site-stratified and leave-one-site-out: the paper protocol, a linear probe and few-shot
   (k = 10, 20), 10 splits, seed 0, with raw FC, tangent_fc and random init beside it (``results.json`` of each
   run under ``--work``);
3. ``model_cards/<name>.json`` gets the rows (``evaluation.card_rows``: nothing typed by hand), the recipe with the
   epochs, steps, seconds and device read from ``curve.json``, and a sentence per cohort saying where the file is
   above, level with or below each baseline;
4. ``brainmass release`` renders the card and completes the folder (code, auto_map, pipeline).

``--repeats``/``--no-abide`` make a quick run (the smoke test uses them); a release uses the defaults. Without
``--curve``, with ``--encoder`` the checkpoint folder itself, it re-evaluates a released checkpoint and keeps its
recipe (how the small card got its tangent_fc column).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from harness import cpu_model  # noqa: E402  (the benchmarks' one reader of the CPU's name)

DEVFMRI = "bundled devfmri, child vs adult"
ABIDE = "ABIDE-I 783-scan subset, ASD vs TC (site-stratified)"
ABIDE_LOSO = "ABIDE-I 783-scan subset, ASD vs TC (leave one site out)"
WEIGHT_FILES = ("model.safetensors", "config.json", "preprocessor_config.json")


def _slug(cohort: str) -> str:
    """A folder name for a cohort's evaluation output: ``"ABIDE-I ... (leave one site out)"`` → ``ABIDE-I_..._leave_one_site_out``."""
    return "".join(c if c.isalnum() or c in "-." else "_" for c in cohort).strip("_")


def copy_encoder(encoder: Path, folder: Path) -> None:
    """The encoder's weights, config and feature extractor into ``folder`` (anything else there is kept)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in WEIGHT_FILES:
        shutil.copy(encoder / name, folder / name)


def cohorts(abide: Path | None, repeats: int) -> list[tuple[str, object, dict]]:
    """(card cohort name, data, `evaluate` keyword arguments) for every cohort the card reports."""
    from brainmass_hf.data import load_devfmri, load_npz_bundle

    common = {"n_repeats": repeats, "seed": 0, "pretrained_on_eval_scans": True, "show_progress": False}
    out = [(DEVFMRI, load_devfmri(), {**common, "protocols": "paper,linear_probe,few_shot", "few_shot_k": (10, 20)})]
    if abide is not None and abide.is_dir():
        data = load_npz_bundle(abide / "timeseries.npz", abide / "subjects.csv", label_column="diagnosis",
                               site_column="site")
        out.append((ABIDE, data, {**common, "protocols": "paper,linear_probe,few_shot", "few_shot_k": (10, 20),
                                  "site_column": "site"}))
        out.append((ABIDE_LOSO, data, {**common, "protocols": "paper", "cv": "leave_one_site_out",
                                       "site_column": "site"}))
    return out


def verdicts(report: dict, cohort: str) -> str:
    """Where the file is above, level with or below each baseline, protocol by protocol (the evaluation report's
    rule: a paired mean difference more than two standard errors from zero)."""
    from brainmass_hf.evaluation import METHOD_MODEL, paired_difference
    from brainmass_hf.evaluation.report import CARD_BASELINES, verdict_word

    by = {(r["name"], r["method"]): r["splits"] for r in report["results"]}
    sentences = []
    for protocol in dict.fromkeys(name for name, method in by if method == METHOD_MODEL):
        parts = [f"{verdict_word(paired_difference(by[(protocol, METHOD_MODEL)], by[(protocol, method)]))} {column}"
                 for column, method in CARD_BASELINES if (protocol, method) in by]
        sentences.append(f"{cohort}, {protocol}: " + "; ".join(parts) + ".")
    return " ".join(sentences)


def recipe(preset: str, run: str, curve: dict, device: str) -> tuple[str, int]:
    """The card's recipe text and the epoch of the released file, from ``gpu_pretrain.py``'s ``curve.json``."""
    spe = curve["steps_per_epoch"]
    saved = {int(step): seconds for step, seconds in curve["timing"][run]["seconds_at_save"].items()}
    step = max(saved)
    epoch = step // spe
    others = [r["name"] for r in curve["runs"] if r["name"] != run]
    text = (
        f"brainmass pretrain --data ABIDE_AAL116,devfmri --preset {preset} --atlas_name AAL-116 \\\n"
        f"    --num_train_epochs {epoch} --config_overrides pfc_drop_ratio=0.5 --seed 0 --output_dir runs/{preset}-aal116\n"
        "# Otherwise the authors' schedule (the command's defaults): batch 64, AdamW lr 3e-4, wd 5e-5, 10 warm-up epochs "
        "then a\n# constant rate, clipping by value at 1, EMA momentum 0.996.\n"
        "# ABIDE_AAL116: a folder with the 783 ABIDE-I AAL-116 time series and their subjects.csv.\n"
        f"# Trained on {device} (fp32 with TF32 matrix products: {' '.join(curve.get('extra_args', []))}), "
        f"side by side with {', '.join(others) or 'nothing'}: the file is the epoch-{epoch} checkpoint ({step:,} steps, "
        f"{saved[step]:.0f} s) of this command run with --num_train_epochs 2000 and stopped after "
        f"{curve['train_seconds']} s (the paper trains 2000 epochs). The schedule is constant after the warm-up, so "
        f"that checkpoint is what --num_train_epochs {epoch} trains. The ABIDE time series travelled to the GPU as "
        "float16. The weights are stored as bfloat16."
    )
    return text, epoch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--encoder", required=True, type=Path, help="an encoder folder from `gpu_pretrain.py unpack`")
    p.add_argument("--name", required=True, help="model_cards/<name>.json (e.g. brainmass-base-aal116)")
    p.add_argument("--curve", type=Path, default=None,
                   help="curve.json from the GPU call's logs.tar.gz (without it the facts' recipe is kept: a re-evaluation)")
    p.add_argument("--run", default=None, help="the run's name in curve.json (default: the encoder's, less -eN)")
    p.add_argument("--device", default=None, help="the GPU, in words, e.g. 'one NVIDIA H100 80GB' (with --curve)")
    p.add_argument("--abide", type=Path, default=ROOT.parent / "shared" / "data" / "abide1_aal116")
    p.add_argument("--no-abide", action="store_true", help="devfmri only (a quick check, not a release)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--repo-root", type=Path, default=ROOT, help="where model_cards/ and checkpoints/ are")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "release")
    a = p.parse_args(argv)
    if a.curve is not None and a.device is None:
        p.error("--curve needs --device (the GPU the run trained on)")
    from brainmass_hf.evaluation import card_rows, evaluate
    from brainmass_hf.hub import write_release_cards

    facts_path = a.repo_root / "model_cards" / f"{a.name}.json"
    facts = json.loads(facts_path.read_text())
    folder = a.repo_root / facts["checkpoint"]
    if a.encoder.resolve() != folder.resolve():
        copy_encoder(a.encoder, folder)
    rows, seconds, said = [], {}, []
    for cohort, data, kwargs in cohorts(None if a.no_abide else a.abide, a.repeats):
        started = time.time()
        report = evaluate(str(folder), data, output_dir=a.work / a.name / _slug(cohort), **kwargs)
        seconds[cohort] = time.time() - started
        cohort_rows = card_rows(report.to_dict(), cohort)
        if kwargs.get("cv") == "leave_one_site_out":  # the Hub groups results by dataset: the scheme goes with the protocol
            for row in cohort_rows:
                row["protocol"] += " (leave one site out)"
        rows += cohort_rows
        said.append(verdicts(report.to_dict(), cohort))
    trained = ""
    if a.curve is not None:
        run = a.run or a.encoder.name.rsplit("-e", 1)[0]
        facts["recipe"], epoch = recipe(facts["preset"], run, json.loads(a.curve.read_text()), a.device)
        trained = f"Pretrained for {epoch} of the paper's 2000 epochs. "
    import torch

    facts["results"] = {
        "protocol": (
            "frozen 8R readout features; `brainmass_hf.evaluation.evaluate`: the paper protocol (StandardScaler -> "
            "SVC(RBF, C=1), train on one pFC view, test on one pFC view), a linear probe and few-shot (k labelled scans "
            f"per class), {a.repeats} splits (ABIDE stratified by label x site; and leave one site out), seed 0; ROC "
            "AUC mean ± std over splits, paired differences over the same splits. **Transductive:** the encoder was "
            "pretrained (without labels) on these same scans. Baselines on the same views: raw FC, tangent_fc "
            "(tangent-space FC + logistic regression, fitted on each training split; Dadi et al. 2019) and random "
            "init. " + trained + " ".join(said)
        ),
        "rows": rows,
        "machine": (f"{cpu_model()} ({os.cpu_count()} cores), torch {torch.__version__}; "
                    + ", ".join(f"{s:.0f} s for {c}" for c, s in seconds.items())),
        "model_index": json.loads((a.repo_root / "model_cards" / "brainmass-small-aal116.json").read_text())[
            "results"]["model_index"],
    }
    datasets = facts["results"]["model_index"]["datasets"]
    datasets.setdefault(ABIDE_LOSO, datasets[ABIDE])  # one dataset on the Hub; the rows' protocol names the scheme
    facts.pop("weights", None)
    facts_path.write_text(json.dumps(facts, indent=1, ensure_ascii=False) + "\n")
    for path in write_release_cards(a.repo_root / "model_cards", a.repo_root):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
