"""The main job end to end (fast mode) and the command line."""

import json

import nibabel as nib
import numpy as np
import pytest

from brainmass_hf.cli import main
from brainmass_hf.demo import run_demo


def test_demo_runs_end_to_end_on_the_bundled_cohort_and_writes_every_report_file(tmp_path):
    summary = run_demo(output_dir=str(tmp_path), fast=True, epochs=1, n_repeats=2, batch_size=64)
    for name in ("report.md", "report.json", "results.json", "results.md", "loss_curves.png", "roc_paper.png",
                 "roc_linear_probe.png", "fc_example.png", "encoder/model.safetensors",
                 "encoder/preprocessor_config.json"):
        assert (tmp_path / name).exists(), name
    report = json.loads((tmp_path / "report.json").read_text())
    methods = {r["method"] for r in report["results"]["results"]}
    assert {"BrainMass", "raw FC", "random-init BrainMass"} <= methods
    assert summary["data"] == {"scans": 155, "num_rois": 116, "source": "devfmri"}
    assert "raw FC" in (tmp_path / "report.md").read_text()


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
                 "--n-repeats", "2", "--no-random-baseline", "--out", str(tmp_path / "eval")]) == 0
    assert (tmp_path / "eval" / "results.json").exists()
