"""Shared fixtures: the bundled real cohort (CC0) and tiny configs, so the suite stays fast on 2 CPU cores."""

import os
import warnings

os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pytest
import torch

import brainmass_hf as bm


@pytest.fixture(scope="session")
def devfmri():
    """The bundled development fMRI cohort: 155 real scans, 168 × 116 (AAL-116), child vs adult."""
    from brainmass_hf.data import load_devfmri

    return load_devfmri()


@pytest.fixture(scope="session")
def devfmri_scans(devfmri):
    from brainmass_hf.data import time_series_list

    return time_series_list(devfmri)


# on top of the "tiny" preset: the smallest widths that still exercise every module
TINY_SIZES = dict(intermediate_size=64, projection_hidden_size=128, projection_size=64, predictor_hidden_size=128)
# the same model from the command line: `brainmass pretrain --preset tiny --config_overrides TINY_OVERRIDES`
TINY_OVERRIDES = ",".join(f"{k}={v}" for k, v in TINY_SIZES.items())


def tiny_config(num_rois=116, **kwargs):
    values = {**TINY_SIZES, **kwargs}
    return bm.BrainMassConfig.from_preset("tiny", num_rois=num_rois, **values)


def pretraining_batch(time_series, config, time_mask=None, seed=0):
    """A pretraining batch of a padded ``time_series`` ``(B, T, R)``: ``time_series``, ``time_mask`` and the random
    choices of one step drawn from a generator seeded ``seed`` (what ``DataCollatorForPseudoFC`` returns)."""
    if time_mask is None:
        time_mask = torch.ones(time_series.shape[:2], dtype=torch.bool)
    choices = bm.draw_pretraining_choices(time_mask, config, torch.Generator().manual_seed(seed))
    return {"time_series": time_series, "time_mask": time_mask, **choices}


def write_nifti_scans(folder, subject_ids=("sub-01", "sub-02"), num_timepoints=40):
    """Synthetic 4D scans ``<id>_bold.nii.gz`` ``(4, 4, 4, T)`` and ``atlas.nii.gz`` with labels 1 and 2 (two ROIs)."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    atlas = np.zeros((4, 4, 4), dtype=np.int16)
    atlas[:2], atlas[2:] = 1, 2
    nib.save(nib.Nifti1Image(atlas, np.eye(4)), os.path.join(folder, "atlas.nii.gz"))
    for subject in subject_ids:
        scan = rng.normal(size=(4, 4, 4, num_timepoints)).astype(np.float32)
        nib.save(nib.Nifti1Image(scan, np.eye(4)), os.path.join(folder, f"{subject}_bold.nii.gz"))


def run_cli_with_local_hub(hub, argv, cwd, timeout=600):
    """``brainmass ARGV`` in a fresh interpreter pointed at the local Hub-protocol server ``hub`` (tests/hub_server.py;
    ``huggingface_hub`` reads the endpoint when it is imported, so this cannot run in the test's own process).
    Returns the ``subprocess.CompletedProcess``."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this checkout's brainmass_hf
    pythonpath = os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, **hub.env(os.path.join(cwd, "hf_home")), "PYTHONPATH": pythonpath}
    code = f"import sys; from brainmass_hf.cli import main; sys.exit(main({list(argv)!r}))"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def tiny():
    return tiny_config


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
    warnings.filterwarnings("ignore", category=FutureWarning)
