"""``pipeline("feature-extraction", model=<BrainMass checkpoint>, trust_remote_code=True)``: ROI time series in,
the encoder's ``8R`` readout features out.

A released checkpoint ships this file and names it in ``config.json`` (``custom_pipelines``), so the pipeline works
with only ``torch``, ``transformers`` and ``numpy`` installed. It imports nothing else (not even the other files of
the checkpoint: the feature extractor and the model come in through the ``Auto`` classes)."""

import numpy as np
import torch
from transformers import Pipeline

__all__ = ["BrainMassFeatureExtractionPipeline"]


class BrainMassFeatureExtractionPipeline(Pipeline):
    """Features of fMRI scans with a BrainMass encoder.

    Call it with one scan or a list of scans, each a ``(T, R)`` array of ROI time series (time points in rows, the
    checkpoint's atlas ROIs in columns). Returns, per scan, a float32 numpy vector of ``8 * R`` features (the
    encoder's ``pooler_output``); a list in, a list out.

    Keyword arguments (to the call or to ``pipeline(...)``):
        view (`str`, defaults to ``"full"``): ``"full"`` reads the FC of every time point (deterministic); ``"pfc"``
            reads one pseudo-FC view (the checkpoint's ``pfc_*`` settings), the view its card's results used.
        seed (`int`, *optional*): seeds the pFC view of each scan (the same seed gives the same features).
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = True
    _load_tokenizer = False

    def _sanitize_parameters(self, view=None, seed=None, **kwargs):
        preprocess = {}
        if view is not None:
            preprocess["view"] = view
        if seed is not None:
            preprocess["seed"] = seed
        return preprocess, {}, {}

    def preprocess(self, scan, view="full", seed=None):
        generator = None if seed is None else torch.Generator().manual_seed(int(seed))
        if not isinstance(scan, (np.ndarray, torch.Tensor)):
            scan = np.asarray(scan)  # nested lists; no dtype: the feature extractor checks the values
        return self.feature_extractor([scan], view=view, generator=generator, return_tensors="pt")

    def _forward(self, model_inputs):
        return {"features": self.model(**model_inputs).pooler_output}

    def postprocess(self, model_outputs):
        return model_outputs["features"][0].float().cpu().numpy()
