"""The main job end to end (fast mode) and the command line."""

import json
import re
import warnings

import nibabel as nib
import numpy as np
import pytest

from brainmass_hf.cli import main
from brainmass_hf.demo import (
    DemoSettings,
    fc_example_figure,
    interpretation_markdown,
    logging_interval,
    loss_curves_figure,
    run_demo,
)

INTERPRETATION_FILES = (
    "explain.md", "roi_importance.csv", "edges.csv", "importance_per_split.csv", "attention_received.csv",
    "top_regions.png", "roi_importance_glass_brain.png", "top_edges_glass_brain.png", "fc_by_class.png",
    "attention_rollout_by_class.png",
)


@pytest.mark.slow  # pretrains, evaluates and explains on 155 scans: ~60 s on 2 cores
def test_demo_runs_end_to_end_on_the_bundled_cohort_and_writes_every_report_file(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = run_demo(output_dir=str(tmp_path), fast=True, epochs=1, n_repeats=2, batch_size=64, explain=True,
                           explain_group_permutations=200)
    for name in ("report.md", "report.json", "results.json", "results.md", "loss_curves.png", "roc_paper.png",
                 "roc_linear_probe.png", "fc_example.png", "encoder/model.safetensors",
                 "encoder/preprocessor_config.json", *(f"interpretation/{f}" for f in INTERPRETATION_FILES)):
        assert (tmp_path / name).exists() and (tmp_path / name).stat().st_size > 0, name
    report = json.loads((tmp_path / "report.json").read_text())
    methods = {r["method"] for r in report["results"]["results"]}
    assert {"BrainMass", "raw FC", "tangent_fc", "random-init BrainMass"} <= methods
    assert summary["data"] == {"scans": 155, "num_rois": 116, "source": "devfmri"}
    text = (tmp_path / "report.md").read_text()
    assert "raw FC" in text and "pretrained on these evaluation scans" in text and "paired difference" in text
    assert "| paper | tangent_fc |" in text
    assert report["results"]["settings"]["pretrained_on_eval_scans"] is True
    # the interpretation section: a top-10 table of named regions, and every figure / table linked relative to
    # the report (so the links work wherever the folder is moved)
    assert "## Interpretation: which regions drive the classification" in text
    assert "| rank | region |" in text and "importance (± SD over 1 split)" in text and "Precentral_L" in (tmp_path / "interpretation/roi_importance.csv").read_text()
    links = re.findall(r"\]\(([^)]+)\)", text)
    for name in ("interpretation/top_regions.png", "interpretation/roi_importance_glass_brain.png",
                 "interpretation/roi_importance.csv", "results.json", "loss_curves.png", "encoder/"):
        assert name in links, name
    assert all((tmp_path / link).exists() for link in links), [link for link in links if not (tmp_path / link).exists()]
    assert summary["timings"]["interpretation_s"] > 0
    if not __import__("torch").cuda.is_available():
        assert not [w for w in caught if "pin_memory" in str(w.message)]


def test_demo_interpretation_is_skipped_with_the_command_that_makes_it(tmp_path):
    from datasets import Dataset

    fast = interpretation_markdown(DemoSettings(fast=True), None, None, tmp_path)
    assert "Skipped in `--fast` runs" in fast and "--explain" in fast and "brainmass explain --model" in fast
    off = interpretation_markdown(DemoSettings(explain=False), None, None, tmp_path)
    assert "Skipped (`--no-explain`)" in off and "brainmass explain" in off
    three = Dataset.from_dict({"label": ["a", "b", "c"] * 2})
    multi = interpretation_markdown(DemoSettings(), None, three, tmp_path)
    assert "compare two classes" in multi and "has 3" in multi
    assert not (tmp_path / "interpretation").exists()


def test_cli_demo_explain_flags_reach_the_settings(monkeypatch):
    import brainmass_hf.demo

    seen = []
    monkeypatch.setattr(brainmass_hf.demo, "run_demo", seen.append)
    main(["demo", "--no-explain"])
    main(["demo", "--fast", "--explain"])
    main(["demo"])
    assert [(s.explain, s.fast) for s in seen] == [(False, False), (True, True), (None, False)]


def test_demo_logs_every_10_steps_on_long_runs_and_about_ten_points_on_short_ones():
    assert logging_interval(938, 32, 45) == 10  # 1350 steps
    assert logging_interval(155, 32, 12) == 6  # 60 steps: ten points, not sixty dicts
    assert logging_interval(155, 64, 1) == 1


def _assert_labelled(fig):
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            assert ax.get_ylabel() or ax.get_xlabel(), "colour bar without a label"
        elif ax.axison:
            assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel(), f"axes {ax.get_title()!r}"


@pytest.fixture(scope="module")
def tiny_aal_config():
    from brainmass_hf import BrainMassConfig

    return BrainMassConfig.from_preset("tiny", num_rois=116)


def test_fc_example_has_a_difference_panel_and_labelled_colour_bars(tiny_aal_config):
    scan = np.random.default_rng(0).normal(size=(120, 116)).astype(np.float32)
    fig = fc_example_figure(scan, tiny_aal_config, "sub-01", seed=0)
    _assert_labelled(fig)
    images = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert len(images) == 4
    np.testing.assert_allclose(images[3], images[1] - images[0], atol=1e-6)  # pFC view 1 − full FC
    bars = [ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert bars == ["correlation r", "Δr (pFC − full)"]


def test_loss_curves_are_legible_with_y_labels_and_the_masked_roi_chance_line(tiny_aal_config):
    history = [{"step": s, "loss": 1.0 / s, "lra_loss": 0.5, "mrm_loss": 0.3, "mrc_loss": 2.0, "mrc_accuracy": 0.2}
               for s in range(1, 20)]
    fig = loss_curves_figure(history, tiny_aal_config)
    _assert_labelled(fig)
    width, height = fig.get_size_inches()
    assert width / height < 2  # was 2200 × 352 px (6.25 : 1)
    accuracy = next(ax for ax in fig.axes if ax.get_title() == "MRC accuracy")
    chance = [line for line in accuracy.get_lines() if line.get_linestyle() == "--"]
    assert chance and chance[0].get_ydata()[0] == pytest.approx(1 / tiny_aal_config.mrc_num_masked)


def test_cli_without_a_command_prints_usage(capsys):
    assert main([]) == 0
    assert "brainmass demo" in capsys.readouterr().out
    assert main(["nonsense"]) == 2


def test_cli_extract_writes_parcel_means(tmp_path):
    rng = np.random.default_rng(0)
    atlas = np.zeros((4, 4, 4), dtype=np.int16)
    atlas[:2] = 1
    atlas[2:] = 2
    data = rng.normal(size=(4, 4, 4, 30)).astype(np.float32)
    affine = np.eye(4)
    nib.save(nib.Nifti1Image(atlas, affine), tmp_path / "atlas.nii.gz")
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "sub-01.nii.gz")
    out = tmp_path / "ts"
    assert main(["extract", "--scans", str(tmp_path / "sub-01.nii.gz"), "--atlas", str(tmp_path / "atlas.nii.gz"),
                 "--out", str(out), "--standardize", "none", "--t-r", "2"]) == 0
    files = sorted(out.glob("*.npy"))
    assert len(files) == 1
    ts = np.load(files[0])
    assert ts.shape == (30, 2)
    np.testing.assert_allclose(ts[:, 0], data[:2].reshape(-1, 30).mean(0), atol=1e-5)


def test_cli_evaluate_on_a_saved_encoder(tmp_path):
    import brainmass_hf as bm
    from conftest import tiny_config

    bm.BrainMassModel(tiny_config()).save_pretrained(tmp_path / "enc")
    assert main(["evaluate", "--model", str(tmp_path / "enc"), "--data", "devfmri", "--protocols", "paper",
                 "--n-repeats", "2", "--no-random-baseline", "--group-column", "subject_id",
                 "--pretrained-on-eval-scans", "--out", str(tmp_path / "eval")]) == 0
    settings = json.loads((tmp_path / "eval" / "results.json").read_text())["settings"]
    assert settings["group_column"] == "subject_id" and settings["test_view"] == "pfc"
    assert "pretrained on these evaluation scans" in (tmp_path / "eval" / "results.md").read_text()
