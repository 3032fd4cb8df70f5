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


def tiny_config(num_rois=116, **kwargs):
    values = dict(intermediate_size=64, projection_hidden_size=128, projection_size=64, predictor_hidden_size=128)
    values.update(kwargs)
    return bm.BrainMassConfig.from_preset("tiny", num_rois=num_rois, **values)


@pytest.fixture
def tiny():
    return tiny_config


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
    warnings.filterwarnings("ignore", category=FutureWarning)
