"""A saved folder carries its code: it loads with trust_remote_code where brainmass_hf is not importable."""

import json
import os
import subprocess
import sys
import textwrap

import torch

import brainmass_hf as bm
from conftest import tiny_config


def test_saved_folder_loads_with_trust_remote_code_without_the_package(tmp_path, devfmri_scans):
    model = bm.BrainMassModel(tiny_config(atlas_name="AAL-116")).eval()
    folder = tmp_path / "ckpt"
    model.save_pretrained(folder)
    bm.BrainMassFeatureExtractor.from_config(model.config).save_pretrained(folder)
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert set(auto_map) == {"AutoConfig", "AutoModel", "AutoModelForPreTraining", "AutoModelForSequenceClassification"}
    fc = bm.functional_connectivity(torch.tensor(devfmri_scans[0])[None], kind="ledoit_wolf")
    torch.save({"fc": fc, "pooled": model(connectivity=fc).pooler_output.detach()}, tmp_path / "expected.pt")

    script = textwrap.dedent(
        f"""
        import sys
        sys.path = [p for p in sys.path if p not in ("", {os.getcwd()!r})]

        class NotInstalled:  # behave as a fresh environment even where the package is pip-installed
            def find_spec(self, name, path=None, target=None):
                if name == "brainmass_hf" or name.startswith("brainmass_hf."):
                    raise ModuleNotFoundError(name)
                return None

        sys.meta_path.insert(0, NotInstalled())
        try:
            import brainmass_hf
            raise AssertionError("the package must not be importable here")
        except ModuleNotFoundError:
            pass
        import torch
        from transformers import AutoModel, AutoModelForSequenceClassification, AutoFeatureExtractor
        folder = {str(folder)!r}
        expected = torch.load({str(tmp_path / "expected.pt")!r})
        model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        assert type(model).__name__ == "BrainMassModel"
        out = model(connectivity=expected["fc"]).pooler_output
        assert torch.allclose(out, expected["pooled"], atol=1e-6), (out - expected["pooled"]).abs().max()
        clf = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True, num_labels=2)
        assert type(clf).__name__ == "BrainMassForConnectomeClassification"
        fe = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
        assert fe.num_rois == 116 and fe.fc_kind == "ledoit_wolf" and fe.atlas_name == "AAL-116"
        print("remote-code-ok")
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"), "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "remote-code-ok" in result.stdout
