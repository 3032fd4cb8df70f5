"""A checkpoint carries its code: model and feature extractor load with trust_remote_code in an interpreter that
sees only torch, transformers, numpy and their requirements (not brainmass_hf, datasets, pandas, nilearn, scipy),
from a folder and from a Hub repo (the local Hub-protocol server of tests/hub_server.py)."""

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import distribution
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import brainmass_hf as bm
from brainmass_hf.hub import complete_checkpoint_folder
from conftest import tiny_config
from hub_server import LocalHub

BLOCKED = ("brainmass_hf", "datasets", "pandas", "nilearn", "scipy", "sklearn")


def minimal_site(site: Path) -> Path:
    """A folder of links to torch, transformers, numpy and the distributions they require (their files and
    metadata), nothing else: with ``python -S`` and ``PYTHONPATH=site`` that is a fresh environment where only
    those are installed. (Hiding packages with a meta-path finder is not enough: transformers probes optional
    packages with importlib.util.find_spec and breaks when a finder raises.)"""
    site.mkdir(parents=True)
    todo, seen = ["torch", "transformers", "numpy"], set()
    while todo:
        dist = distribution(todo.pop())
        name = canonicalize_name(dist.metadata["Name"])
        if name in seen:
            continue
        seen.add(name)
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
        for top in {f.parts[0] for f in dist.files or [] if f.parts[0] != ".."}:
            source = Path(dist.locate_file(top))
            if source.exists() and not (site / top).exists():
                (site / top).symlink_to(source)
    assert not seen & {canonicalize_name(b) for b in BLOCKED}, seen
    return site


@pytest.mark.slow  # ~20 s: a fresh interpreter imports torch + transformers; the fast loop has
# tests/test_hub.py::test_remote_code_imports_only_torch_transformers_numpy (the same rule, checked statically)
@pytest.mark.parametrize("source", ["folder", "hub"])
def test_checkpoint_loads_with_only_torch_transformers_numpy(tmp_path, devfmri_scans, source):
    model = bm.BrainMassModel(tiny_config(atlas_name="AAL-116")).eval()
    folder = tmp_path / "ckpt"
    model.save_pretrained(folder)
    bm.BrainMassFeatureExtractor.from_config(model.config).save_pretrained(folder)
    complete_checkpoint_folder(folder)  # the card and the pipeline (the code and auto_map came with save_pretrained)
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert set(auto_map) == {"AutoConfig", "AutoModel", "AutoModelForPreTraining", "AutoModelForSequenceClassification"}
    scans = [s[:120] for s in devfmri_scans[:2]]
    fe = bm.BrainMassFeatureExtractor.from_pretrained(folder)
    with torch.no_grad():
        pooled = model(**fe(scans, view="full")).pooler_output
    torch.save({"scans": [torch.tensor(s) for s in scans], "pooled": pooled}, tmp_path / "expected.pt")

    script = textwrap.dedent(
        f"""
        BLOCKED = {BLOCKED!r}
        for name in BLOCKED:  # the interpreter sees only torch, transformers, numpy and their requirements
            try:
                __import__(name)
                raise AssertionError(name + " must not be importable here")
            except ModuleNotFoundError:
                pass
        import torch
        from transformers import (AutoFeatureExtractor, AutoModel, AutoModelForPreTraining,
                                  AutoModelForSequenceClassification, pipeline)
        source = {str(folder)!r}
        if {source!r} == "hub":
            from huggingface_hub import HfApi
            HfApi().create_repo("user/remote-code")
            revision = HfApi().upload_folder(repo_id="user/remote-code", folder_path=source).oid
            source = "user/remote-code"
        else:
            revision = None
        expected = torch.load({str(tmp_path / "expected.pt")!r})
        kwargs = dict(trust_remote_code=True, revision=revision)
        model = AutoModel.from_pretrained(source, **kwargs).eval()
        fe = AutoFeatureExtractor.from_pretrained(source, **kwargs)
        assert type(model).__name__ == "BrainMassModel" and type(fe).__name__ == "BrainMassFeatureExtractor"
        assert fe.num_rois == 116 and fe.fc_kind == "ledoit_wolf" and fe.atlas_name == "AAL-116"
        with torch.no_grad():
            out = model(**fe([s.numpy() for s in expected["scans"]], view="full")).pooler_output
        assert torch.allclose(out, expected["pooled"], atol=1e-5), (out - expected["pooled"]).abs().max()
        # pipeline("feature-extraction"): a list of (T, R) arrays in, one 8R numpy vector per scan out
        extractor = pipeline("feature-extraction", model=source, **kwargs)
        assert type(extractor).__name__ == "BrainMassFeatureExtractionPipeline"
        vectors = extractor([s.numpy() for s in expected["scans"]])
        assert [v.shape for v in vectors] == [(928,)] * 2
        assert torch.allclose(torch.as_tensor(vectors[1]), expected["pooled"][1], atol=1e-5)
        one = extractor(expected["scans"][0].numpy(), view="pfc", seed=0)
        assert one.shape == (928,) and (one == extractor(expected["scans"][0].numpy(), view="pfc", seed=0)).all()
        clf = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2, **kwargs)
        assert type(clf).__name__ == "BrainMassForConnectomeClassification"
        assert type(AutoModelForPreTraining.from_pretrained(source, **kwargs)).__name__ == "BrainMassForPreTraining"
        print("remote-code-ok")
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"),
           "PYTHONPATH": str(minimal_site(tmp_path / "site"))}
    server = None
    if source == "hub":
        server = LocalHub().start()
        env.update(server.env(tmp_path / "hf"))
    try:
        result = subprocess.run(
            [sys.executable, "-S", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
    finally:
        if server is not None:
            server.stop()
    assert result.returncode == 0, result.stderr[-3000:]
    assert "remote-code-ok" in result.stdout
