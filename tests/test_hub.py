"""Releasing checkpoints (issue 11): shipped code, model cards, pushes and loads against a local Hub-protocol server.

Clients talk to the server (tests/hub_server.py) from subprocesses, because ``huggingface_hub`` reads
``HF_ENDPOINT`` when it is imported; each subprocess gets a private ``HF_HOME``.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

import brainmass_hf as bm
from brainmass_hf import hub
from conftest import tiny_config
from hub_server import LocalHub

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def local_hub():
    server = LocalHub().start()
    yield server
    server.stop()


def run_client(script: str, local_hub: LocalHub, hf_home: Path, cwd: Path, extra_env: dict | None = None) -> str:
    """Run ``script`` in a fresh interpreter pointed at ``local_hub``; returns its stdout, fails with its stderr."""
    # this checkout's brainmass_hf (not an installed copy) and the tests' helpers
    pythonpath = os.pathsep.join([str(REPO_ROOT / "tests"), str(REPO_ROOT)])
    env = {**os.environ, **local_hub.env(hf_home), "PYTHONPATH": pythonpath, **(extra_env or {})}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


# ----------------------------------------------------------------------------------------------------------------
# What a checkpoint ships
# ----------------------------------------------------------------------------------------------------------------
def test_remote_code_imports_only_torch_transformers_numpy():
    files, packages = hub.remote_code_imports()
    assert files == set(hub.REMOTE_CODE_FILES)
    assert packages == set(hub.REMOTE_CODE_REQUIREMENTS)


def test_a_stray_import_in_shipped_code_is_found_and_refused(tmp_path, monkeypatch):
    """The old processing module imported `.data` inside a function (so datasets, pandas, ...): transformers ships
    and checks indented imports too, and so does remote_code_imports."""
    for name in hub.REMOTE_CODE_FILES:
        (tmp_path / name).write_text((Path(hub.__file__).parent / name).read_text())
    with open(tmp_path / "processing_brainmass.py", "a") as f:
        f.write("\n\ndef _load():\n    from .data import load_devfmri\n\n    return load_devfmri()\n")
    (tmp_path / "data.py").write_text("import pandas\nimport datasets\n")
    files, packages = hub.remote_code_imports(tmp_path)
    assert files == {*hub.REMOTE_CODE_FILES, "data.py"}
    assert packages == {"torch", "transformers", "numpy", "pandas", "datasets"}
    monkeypatch.setattr(hub, "remote_code_imports", lambda: (files, packages))
    bm.BrainMassModel(tiny_config()).save_pretrained(tmp_path / "ckpt")
    with pytest.raises(RuntimeError, match=r"would import \['data.py', 'datasets', 'pandas'\]"):
        hub.complete_checkpoint_folder(tmp_path / "ckpt")


def test_saved_model_and_feature_extractor_ship_the_code_and_auto_map(tmp_path):
    config = tiny_config(atlas_name="AAL-116")
    bm.BrainMassModel(config).save_pretrained(tmp_path / "model")
    bm.BrainMassFeatureExtractor.from_config(config).save_pretrained(tmp_path / "fe")
    # each copies its module and what that imports; a checkpoint (both in one folder) holds exactly the list
    # (the pipeline file comes with the release path, complete_checkpoint_folder)
    shipped = set(hub.REMOTE_CODE_FILES) - {"pipeline_brainmass.py"}
    assert {p.name for p in (tmp_path / "model").glob("*.py")} == shipped - {"processing_brainmass.py"}
    assert {p.name for p in (tmp_path / "fe").glob("*.py")} == shipped - {"modeling_brainmass.py"}
    auto_map = json.loads((tmp_path / "model" / "config.json").read_text())["auto_map"]
    assert {"AutoConfig", "AutoModel", "AutoModelForPreTraining", "AutoModelForSequenceClassification"} <= set(auto_map)
    fe_map = json.loads((tmp_path / "fe" / "preprocessor_config.json").read_text())["auto_map"]
    assert fe_map["AutoFeatureExtractor"] == "processing_brainmass.BrainMassFeatureExtractor"


def test_complete_checkpoint_folder_adds_feature_extractor_code_and_card(tmp_path):
    config = tiny_config(atlas_name="AAL-116", fc_kind="pearson")
    bm.BrainMassModel(config).save_pretrained(tmp_path)
    # weights and config without the code, as the Trainer's upload of output_dir had them
    for name in hub.REMOTE_CODE_FILES:
        (tmp_path / name).unlink(missing_ok=True)
    hub.complete_checkpoint_folder(tmp_path)
    assert {p.name for p in tmp_path.glob("*.py")} == set(hub.REMOTE_CODE_FILES)
    fe = bm.BrainMassFeatureExtractor.from_pretrained(tmp_path)
    assert (fe.fc_kind, fe.num_rois, fe.atlas_name) == ("pearson", 116, "AAL-116")
    assert "pipeline_tag: feature-extraction" in (tmp_path / "README.md").read_text()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        hub.complete_checkpoint_folder(tmp_path / "empty")


# ----------------------------------------------------------------------------------------------------------------
# Model cards
# ----------------------------------------------------------------------------------------------------------------
RESULTS = {
    "protocol": "ABIDE 783, 10 site-stratified 80/20 splits, linear SVM on pooler_output",
    "rows": [{"features": "BrainMass-small", "AUC": "0.70 ± 0.02"}, {"features": "raw FC", "AUC": "0.66 ± 0.03"}],
    "machine": "1x H100",
}


def test_card_is_filled_from_the_checkpoint(tmp_path):
    roi_names = [f"ROI_{i}" for i in range(116)]
    config = tiny_config(atlas_name="AAL-116", roi_names=roi_names, pfc_drop_ratio=0.3)
    model = bm.BrainMassModel(config)
    model.save_pretrained(tmp_path)
    facts = {"license": "cc-by-nc-sa-4.0", "recipe": "brainmass pretrain --preset tiny", "results": RESULTS,
             "pretraining_data": [{"dataset": "A", "scans": 3, "licence": "CC0"},
                                  {"dataset": "B", "scans": 4, "licence": "CC0"}]}
    text = hub.write_model_card(tmp_path, facts=facts, repo_id="user/brainmass-tiny").read_text()
    card = ModelCard(text)
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "feature-extraction"
    assert card.data.license == "cc-by-nc-sa-4.0" and "fmri" in card.data.tags
    n_params = sum(p.numel() for p in model.parameters())
    assert f"{n_params:,} parameters" in text
    assert "| preset | custom |" in text and "| layers / heads / FFN width | 2 / 2 / 64 |" in text
    assert "AAL-116" in text and "ROI_0, ROI_1" in text and "ROI_115" in text
    assert 'fc_kind="ledoit_wolf"' in text and "pfc_drop_ratio=0.3" in text
    assert "In total 7 scans" in text and "brainmass pretrain --preset tiny" in text
    assert "| raw FC | 0.66 ± 0.03 |" in text and RESULTS["protocol"] in text
    assert "Not for clinical use" in text and "arXiv" in text and 'from_pretrained("user/brainmass-tiny"' in text
    assert "Model Card for Model ID" not in text and "PENDING" not in text


def test_card_never_claims_weights_that_are_not_there(tmp_path):
    config = tiny_config()
    text = hub.render_model_card(config, facts={"results": RESULTS}, weights_file=tmp_path / "model.safetensors")
    assert "**Weights: PENDING.**" in text and "0.66" not in text
    bm.BrainMassModel(config).save_pretrained(tmp_path)
    text = hub.render_model_card(config, facts={"weights": "pending"}, weights_file=tmp_path / "model.safetensors")
    assert "PENDING" in text
    with pytest.raises(ValueError, match="lacks the columns"):
        hub.render_model_card(config, facts={"pretraining_data": [{"dataset": "A", "scans": 1}, {"dataset": "B"}]})


def test_release_cards_are_generated_from_their_facts():
    """model_cards/<name>.md is exactly what the template renders from model_cards/<name>.json (regenerate with
    brainmass_hf.hub.write_release_cards("model_cards") after editing either)."""
    facts_files = sorted((REPO_ROOT / "model_cards").glob("*.json"))
    assert [p.stem for p in facts_files] == [f"brainmass-{p}-aal116" for p in ("base", "large", "small")]
    for facts_path in facts_files:
        card = facts_path.with_suffix(".md").read_text()
        assert card == hub.render_release_card(facts_path, REPO_ROOT), f"{facts_path.name}: regenerate the card"
        facts = json.loads(facts_path.read_text())
        checkpoint = REPO_ROOT / facts["checkpoint"] / "model.safetensors"
        if facts.get("weights") == "pending" or not checkpoint.is_file():
            assert "**Weights: PENDING.**" in card, facts_path.name
        assert "In total 938 scans" in card and "cc-by-nc-sa-4.0" in card


SHIPPED_CARDS = sorted([*REPO_ROOT.glob("checkpoints/*/README.md"), *REPO_ROOT.glob("model_cards/*.md")])


@pytest.mark.parametrize("path", SHIPPED_CARDS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_card_loads_with_modelcard_and_holds_its_eval_results(path):
    """One model-index result per cohort x protocol x metric of the facts' table (trained weights only), with the
    table's numbers; datasets, the non-commercial licence of ABIDE-pretrained weights, the pipeline tag."""
    card = ModelCard.load(path)
    name = path.stem if path.parent.name == "model_cards" else path.parent.name
    facts = json.loads((REPO_ROOT / "model_cards" / f"{name}.json").read_text())
    assert card.data.license == "cc-by-nc-sa-4.0" and card.data.pipeline_tag == "feature-extraction"
    assert card.data.datasets == facts["datasets"] and card.data.model_name == name
    if facts.get("weights") == "pending":
        assert card.data.eval_results is None and "PENDING" in card.text
        return
    rows = facts["results"]["rows"]
    results = card.data.eval_results
    assert len(results) == len(rows) == len({(r.dataset_name, r.metric_config, r.metric_type) for r in results})
    datasets = facts["results"]["model_index"]["datasets"]
    for row, result in zip(rows, results):
        mean, std = (float(x) for x in row["BrainMass (this file)"].split("±"))
        assert result.dataset_name == datasets[row["cohort"]]["name"] and result.metric_config == row["protocol"]
        assert (result.metric_type, result.metric_value, result.metric_args) == ("roc_auc", mean, {"std": std})
    assert card.data.metrics == ["roc_auc"]


def test_card_tags_with_a_colon_or_a_quote_survive_the_yaml():
    tags = ["task:diagnosis", 'it\'s "quoted"', "a: b # not a comment"]
    card = ModelCard(hub.render_model_card(tiny_config(), facts={"tags": tags, "license": "cc0-1.0"}))
    assert set(tags) <= set(card.data.tags) and card.data.license == "cc0-1.0"


@pytest.mark.parametrize("path", SHIPPED_CARDS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_card_tells_a_stranger_what_it_is(path):
    """Unofficial, the corpus beside the paper's, the transformers versions, the code licence; nothing that only
    makes sense inside this repository or on its machines."""
    text = path.read_text()
    assert "unofficial reimplementation" in text.lower()
    assert "In total 938 scans" in text and f"{hub.PAPER_CORPUS['scans']:,} scans" in text
    assert f"`transformers` {hub.MIN_TRANSFORMERS} or\nnewer" in text
    assert "The code files of this repository are Apache-2.0" in text
    for internal in ("../shared", "/work/", "benchmarks/", "docs/", "tests/", "checkpoints/", "this project",
                     "This project", "E10"):
        assert internal not in text, f"{path}: {internal!r}"
    if "PENDING" not in text:
        assert "tested with `transformers` 5." in text


def test_card_usage_snippet_runs_and_uses_the_view_of_its_results(tmp_path, devfmri_scans):
    """The released card's snippet, run against the checkpoint folder: the pFC view its results were measured
    with, through the Auto classes and through pipeline("feature-extraction")."""
    text = (REPO_ROOT / "checkpoints" / "brainmass-small-aal116" / "README.md").read_text()
    code = text.split("## Use", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert 'view="pfc"' in code and "Results" in text and "train on one pFC view, test on one pFC view" in text
    folder = str(REPO_ROOT / "checkpoints" / "brainmass-small-aal116")
    code = code.replace('"brainmass-hf/brainmass-small-aal116"', repr(folder)).replace('"<commit sha>"', "None")
    namespace = {"scans": [s[:100] for s in devfmri_scans[:3]]}
    exec(code, namespace)
    assert tuple(namespace["features"].shape) == (3, 928)
    assert [v.shape for v in namespace["vectors"]] == [(928,)] * 3


def test_minimum_transformers_is_the_declared_bound_and_the_installed_api_has_what_the_code_imports():
    """The cards' minimum is pyproject's lower bound; every name the shipped code imports from transformers
    exists in the installed version (the one the remote-code tests run against)."""
    import ast
    import importlib
    import importlib.util
    import tomllib

    import transformers
    from packaging.requirements import Requirement
    from packaging.version import Version

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    requirement = next(Requirement(r) for r in project["dependencies"] if r.startswith("transformers"))
    lower = [spec.version for spec in requirement.specifier if spec.operator == ">="]
    assert lower == [hub.MIN_TRANSFORMERS]
    assert Version(transformers.__version__) in requirement.specifier
    package = Path(hub.__file__).parent
    for name in hub.REMOTE_CODE_FILES:
        for node in ast.walk(ast.parse((package / name).read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("transformers"):
                module = importlib.import_module(node.module)
                missing = [a.name for a in node.names
                           if not hasattr(module, a.name) and importlib.util.find_spec(f"{node.module}.{a.name}") is None]
                assert not missing, f"{name}: {node.module} lacks {missing}"


def test_licence_follows_the_checkpoint_a_push_or_fine_tuning_starts_from(tmp_path):
    """A folder's card licence is kept when a new card is rendered for it; fine-tuning facts carry it on; a
    checkpoint without a recorded licence says "unknown", never apache-2.0."""
    bm.BrainMassModel(tiny_config()).save_pretrained(tmp_path)
    hub.write_model_card(tmp_path, facts={"license": "cc-by-nc-sa-4.0"})
    hub.complete_checkpoint_folder(tmp_path, facts={"recipe": "brainmass pretrain --preset tiny"})
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.license == "cc-by-nc-sa-4.0" and "brainmass pretrain --preset tiny" in card.text
    assert hub.license_of(tmp_path) == "cc-by-nc-sa-4.0"
    facts = hub.fine_tuned_card_facts(tmp_path)
    assert facts["license"] == "cc-by-nc-sa-4.0" and facts["base_model"] is None  # a folder is not a Hub id
    fine_tuned = ModelCard(hub.render_model_card(tiny_config(), facts={**facts, "base_model": "user/encoder"}))
    assert (fine_tuned.data.license, fine_tuned.data.base_model) == ("cc-by-nc-sa-4.0", "user/encoder")
    assert "inherited from the base model `user/encoder`" in fine_tuned.text
    (tmp_path / "README.md").unlink()
    hub.complete_checkpoint_folder(tmp_path)
    assert ModelCard.load(tmp_path / "README.md").data.license == "unknown"
    assert hub.license_of(tmp_path) is None and hub.license_of(tmp_path / "missing") is None


def test_brainmass_release_writes_the_cards_and_completes_the_checkpoint(tmp_path):
    from brainmass_hf.cli import main

    (tmp_path / "model_cards").mkdir()
    folder = tmp_path / "checkpoints" / "tiny"
    model = bm.BrainMassModel(tiny_config(atlas_name="AAL-116"))
    model.save_pretrained(folder)
    for name in hub.REMOTE_CODE_FILES:
        (folder / name).unlink(missing_ok=True)
    hub.write_model_card(folder, facts={"license": "cc-by-nc-sa-4.0"})  # the checkpoint's licence, kept
    facts = {"name": "tiny", "checkpoint": "checkpoints/tiny", "datasets": ["toy"], "weights": "trained"}
    (tmp_path / "model_cards" / "tiny.json").write_text(json.dumps(facts))
    assert main(["release", "--cards-dir", str(tmp_path / "model_cards")]) == 0
    card = (tmp_path / "model_cards" / "tiny.md").read_text()
    assert (folder / "README.md").read_text() == card
    assert ModelCard(card).data.license == "cc-by-nc-sa-4.0"
    assert {p.name for p in folder.glob("*.py")} == set(hub.REMOTE_CODE_FILES)
    assert main(["release", "--cards-dir", str(tmp_path / "none")]) == 2


# ----------------------------------------------------------------------------------------------------------------
# The Hub protocol
# ----------------------------------------------------------------------------------------------------------------
def test_local_hub_speaks_the_protocol(local_hub, tmp_path):
    out = run_client(
        """
        from pathlib import Path
        from huggingface_hub import HfApi, hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
        api = HfApi()
        api.create_repo("user/proto")
        folder = Path("files"); (folder / "sub").mkdir(parents=True)
        (folder / "a.txt").write_text("one"); (folder / "sub" / "b.bin").write_bytes(b"x" * 300)
        first = api.upload_folder(repo_id="user/proto", folder_path=folder).oid
        (folder / "a.txt").write_text("two")
        api.upload_folder(repo_id="user/proto", folder_path=folder)
        assert open(hf_hub_download("user/proto", "a.txt")).read() == "two"
        assert open(hf_hub_download("user/proto", "a.txt", revision=first)).read() == "one"
        assert sorted(f.path for f in api.list_repo_tree("user/proto", recursive=True)) == [
            ".gitattributes", "a.txt", "sub", "sub/b.bin"]
        assert [type(i).__name__ for i in api.get_paths_info("user/proto", ["a.txt", "sub"])] == ["RepoFile", "RepoFolder"]
        api.create_branch("user/proto", branch="v1")
        api.upload_file(path_or_fileobj=b"v1 only", path_in_repo="c.txt", repo_id="user/proto", revision="v1")
        assert api.file_exists("user/proto", "c.txt", revision="v1") and not api.file_exists("user/proto", "c.txt")
        pr = api.upload_file(path_or_fileobj=b"pr", path_in_repo="p.txt", repo_id="user/proto", create_pr=True)
        assert pr.pr_url.endswith("/discussions/1") and not api.file_exists("user/proto", "p.txt")
        for call, error in ((lambda: api.model_info("user/none"), RepositoryNotFoundError),
                            (lambda: hf_hub_download("user/proto", "a.txt", revision="nope"), RevisionNotFoundError),
                            (lambda: hf_hub_download("user/proto", "none.txt"), EntryNotFoundError)):
            try:
                call()
                raise AssertionError("no error")
            except error:
                pass
        print("protocol-ok")
        """,
        local_hub, tmp_path / "hf", tmp_path,
    )
    assert "protocol-ok" in out
    paths = [path for method, path, status in local_hub.requests if status < 400]
    assert any("/resolve/" in p for p in paths) and any(p.endswith(".git/info/lfs/objects/batch") for p in paths)


@pytest.mark.slow
def test_push_and_load_every_model_class_revisions_and_offline(local_hub, tmp_path):
    """hub.push_model_to_hub (the release path; the model's own push_to_hub is transformers') + from_pretrained of
    every model class and the feature extractor; our card, not the generic one; a pinned revision loads the first
    push after a second one; then everything loads offline from the cache."""
    script = """
        import torch, brainmass_hf as bm
        from huggingface_hub import HfApi, hf_hub_download
        from brainmass_hf.hub import push_model_to_hub
        from conftest import tiny_config
        torch.manual_seed(0)
        config = tiny_config(atlas_name="AAL-116")
        fc = bm.functional_connectivity(torch.randn(2, 40, 116), kind="pearson")
        shas = {}
        for cls in (bm.BrainMassModel, bm.BrainMassForPreTraining, bm.BrainMassForConnectomeClassification):
            repo = f"user/{cls.__name__.lower()}"
            model = cls(config).eval()
            push_model_to_hub(model, repo)
            loaded = cls.from_pretrained(repo).eval()
            for k, v in model.state_dict().items():
                assert torch.equal(v, loaded.state_dict()[k]), (cls.__name__, k)
            card = open(hf_hub_download(repo, "README.md")).read()
            assert "pipeline_tag: feature-extraction" in card and "Model Card for Model ID" not in card, card[:300]
            shas[repo] = HfApi().model_info(repo).sha
        fe = bm.BrainMassFeatureExtractor.from_config(config)
        fe.push_to_hub("user/brainmassmodel")
        assert bm.BrainMassFeatureExtractor.from_pretrained("user/brainmassmodel").atlas_name == "AAL-116"

        # revision pinning: a second push to the same repo, then the first revision by its commit sha
        first = bm.BrainMassModel.from_pretrained("user/brainmassmodel").eval()
        second = bm.BrainMassModel(config).eval()
        push_model_to_hub(second, "user/brainmassmodel")
        with torch.no_grad():
            latest = bm.BrainMassModel.from_pretrained("user/brainmassmodel").eval()(connectivity=fc).pooler_output
            pinned = bm.BrainMassModel.from_pretrained("user/brainmassmodel", revision=shas["user/brainmassmodel"])
            pinned = pinned.eval()(connectivity=fc).pooler_output
            assert torch.allclose(latest, second(connectivity=fc).pooler_output)
            assert torch.allclose(pinned, first(connectivity=fc).pooler_output)
            assert not torch.allclose(pinned, latest)
        # the model's push carries the feature extractor too (and caches it for the offline load below)
        assert bm.BrainMassFeatureExtractor.from_pretrained("user/brainmassmodel").fc_kind == "ledoit_wolf"
        torch.save({"fc": fc, "latest": latest}, "expected.pt")
        print("push-ok")
    """
    assert "push-ok" in run_client(script, local_hub, tmp_path / "hf", tmp_path)
    n_requests = len(local_hub.requests)
    offline = """
        import torch, brainmass_hf as bm
        from transformers import AutoModel, AutoFeatureExtractor
        expected = torch.load("expected.pt")
        model = AutoModel.from_pretrained("user/brainmassmodel").eval()
        with torch.no_grad():
            assert torch.allclose(model(connectivity=expected["fc"]).pooler_output, expected["latest"])
        assert AutoFeatureExtractor.from_pretrained("user/brainmassmodel").num_rois == 116
        print("offline-ok")
    """
    out = run_client(offline, local_hub, tmp_path / "hf", tmp_path, {"HF_HUB_OFFLINE": "1"})
    assert "offline-ok" in out
    assert len(local_hub.requests) == n_requests  # nothing reached the server


@pytest.mark.slow
def test_brainmass_push_cli_revision_and_pr(local_hub, tmp_path):
    config = tiny_config(atlas_name="AAL-116")
    model = bm.BrainMassModel(config).eval()
    model.save_pretrained(tmp_path / "enc")  # no feature extractor, no card: push completes the folder
    fc = bm.functional_connectivity(torch.randn(2, 40, 116), kind="pearson")
    with torch.no_grad():
        torch.save({"fc": fc, "pooled": model(connectivity=fc).pooler_output}, tmp_path / "expected.pt")
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps({"recipe": "brainmass pretrain --preset tiny --output_dir enc", "license": "cc0-1.0"}))
    script = f"""
        import torch
        from huggingface_hub import HfApi, hf_hub_download
        from transformers import AutoFeatureExtractor, AutoModel
        from brainmass_hf.cli import main
        assert main(["push", "enc", "user/released", "--revision", "v1", "--card-facts", "facts.json"]) == 0
        assert main(["push", "enc", "user/released", "--create-pr"]) == 0
        api = HfApi()
        files = set(api.list_repo_files("user/released", revision="v1"))
        assert {{*{list(hub.REMOTE_CODE_FILES)!r}, "config.json", "model.safetensors", "preprocessor_config.json",
                "README.md"}} <= files, files
        assert set(api.list_repo_files("user/released")) == {{".gitattributes"}}  # main untouched
        refs = api.list_repo_refs("user/released", include_pull_requests=True)
        assert [r.ref for r in refs.pull_requests] == ["refs/pr/1"]
        card = open(hf_hub_download("user/released", "README.md", revision="v1")).read()
        assert "brainmass pretrain --preset tiny --output_dir enc" in card and "license: cc0-1.0" in card
        expected = torch.load("expected.pt")
        model = AutoModel.from_pretrained("user/released", revision="v1", trust_remote_code=True).eval()
        with torch.no_grad():
            assert torch.allclose(model(connectivity=expected["fc"]).pooler_output, expected["pooled"])
        fe = AutoFeatureExtractor.from_pretrained("user/released", revision="refs/pr/1", trust_remote_code=True)
        assert fe.atlas_name == "AAL-116"
        assert main(["push", "enc", "not a repo id"]) == 2
        print("cli-push-ok")
    """
    assert "cli-push-ok" in run_client(script, local_hub, tmp_path / "hf", tmp_path)


@pytest.mark.slow
def test_pretraining_pushes_loadable_revisions(local_hub, tmp_path):
    """Trainer pushes at every save (hub_strategy="every_save") with HubCodeCallback: each pushed revision has
    the code, feature extractor and card, and loads with trust_remote_code."""
    script = f"""
        import numpy as np, torch, datasets
        from transformers import AutoModel, Trainer, TrainingArguments
        from huggingface_hub import HfApi
        import brainmass_hf as bm
        from brainmass_hf.hub import HubCodeCallback
        from conftest import tiny_config
        rng = np.random.default_rng(0)
        scans = [rng.standard_normal((40, 116)).astype("float32") for _ in range(8)]
        ds = datasets.Dataset.from_dict({{"time_series": scans}})
        model = bm.BrainMassForPreTraining(tiny_config(atlas_name="AAL-116"))
        args = TrainingArguments(output_dir="run", max_steps=2, save_steps=1, per_device_train_batch_size=4,
                                 push_to_hub=True, hub_model_id="user/pretraining", hub_strategy="every_save",
                                 report_to=[], use_cpu=True, remove_unused_columns=False)
        collator = bm.DataCollatorForPseudoFC(bm.BrainMassFeatureExtractor.from_config(model.config))
        trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=collator,
                          callbacks=[HubCodeCallback()])
        trainer.train()
        trainer.push_in_progress.wait_until_done() if trainer.push_in_progress else None
        api = HfApi()
        commits = [c for c in api.list_repo_commits("user/pretraining") if c.title.startswith("Training in progress")]
        assert commits, [c.title for c in api.list_repo_commits("user/pretraining")]
        for commit in commits:
            files = set(api.list_repo_files("user/pretraining", revision=commit.commit_id))
            assert {{*{list(hub.REMOTE_CODE_FILES)!r}, "preprocessor_config.json", "README.md"}} <= files, files
            encoder = AutoModel.from_pretrained("user/pretraining", revision=commit.commit_id, trust_remote_code=True)
            assert type(encoder).__name__ == "BrainMassModel"
        print("pretrain-push-ok")
    """
    assert "pretrain-push-ok" in run_client(script, local_hub, tmp_path / "hf", tmp_path)


@pytest.mark.slow
def test_pretrain_push_to_hub_pushes_every_save_and_the_encoder(local_hub, tmp_path):
    """pretrain(push_to_hub=True): every save is a loadable revision, and the repo ends with the encoder."""
    script = """
        import json
        import numpy as np, datasets
        from huggingface_hub import HfApi, hf_hub_download
        from transformers import AutoModel
        from brainmass_hf.training import BrainMassPretrainingArguments, pretrain
        from conftest import tiny_config
        rng = np.random.default_rng(0)
        scans = [rng.standard_normal((40, 116)).astype("float32") for _ in range(8)]
        ds = datasets.Dataset.from_dict({"subject_id": [f"s{i}" for i in range(8)], "time_series": scans})
        args = BrainMassPretrainingArguments(
            output_dir="run", max_steps=2, save_strategy="steps", save_steps=1, per_device_train_batch_size=4, push_to_hub=True,
            hub_model_id="user/pretrained", report_to=[], use_cpu=True, warmup_epochs=0)
        pretrain(ds, tiny_config(atlas_name="AAL-116"), args)
        commits = HfApi().list_repo_commits("user/pretrained")  # newest first; the last is the repo's first
        titles = [c.title for c in commits]
        assert titles[0] == "BrainMass encoder (end of pretraining)", titles
        # a save whose predecessor is still uploading is skipped (the Trainer's rule), so at least one
        assert any(t.startswith("Training in progress") for t in titles), titles
        for commit in commits[:-1]:
            model = AutoModel.from_pretrained("user/pretrained", revision=commit.commit_id, trust_remote_code=True)
            assert type(model).__name__ == "BrainMassModel"
        config = json.load(open(hf_hub_download("user/pretrained", "config.json")))
        assert config["architectures"] == ["BrainMassModel"], config["architectures"]
        pushed = {f for c in commits for f in HfApi().list_repo_files("user/pretrained", revision=c.commit_id)}
        assert not any("lock" in f for f in pushed), pushed  # the output folder's run lock stays local
        print("pretrain-hub-ok")
    """
    assert "pretrain-hub-ok" in run_client(script, local_hub, tmp_path / "hf", tmp_path)


@pytest.mark.slow
def test_dataset_push_to_hub_load_dataset_and_data_hub_id(local_hub, tmp_path):
    script = """
        import numpy as np
        import datasets
        rng = np.random.default_rng(0)
        ds = datasets.Dataset.from_dict({
            "subject_id": [f"s{i}" for i in range(6)], "label": [0, 1] * 3,
            "time_series": [rng.standard_normal((30 + i, 116)).astype("float32") for i in range(6)],
        })
        ds.push_to_hub("user/scans")
        loaded = datasets.load_dataset("user/scans", split="train")
        assert loaded["subject_id"] == ds["subject_id"] and loaded["label"] == ds["label"]
        for a, b in zip(loaded["time_series"], ds["time_series"]):
            assert np.allclose(np.asarray(a, dtype=np.float32), np.asarray(b))

        # a Hub dataset id wherever the library and the CLI take data (pinned with @revision too)
        from brainmass_hf.cli import main
        from brainmass_hf.data import resolve_dataset
        from huggingface_hub import HfApi
        sha = HfApi().dataset_info("user/scans").sha
        for spec in ("user/scans", f"user/scans@{sha}"):
            assert resolve_dataset(spec)["subject_id"] == ds["subject_id"]
        assert main(["pretrain", "--data", "user/scans", "--preset", "tiny", "--output_dir", "run", "--max_steps", "1",
                     "--per_device_train_batch_size", "2", "--report_to", "none", "--warmup_epochs", "0"]) == 0
        print("dataset-ok")
    """
    assert "dataset-ok" in run_client(script, local_hub, tmp_path / "hf", tmp_path)



def test_every_card_has_a_never_seen_section_and_the_released_small_reports_the_held_out_numbers(tmp_path):
    """Issue 19: cards say what is known of scans the pretraining never saw (transductive numbers are not that)."""
    for path in sorted((REPO_ROOT / "model_cards").glob("*.md")):
        text = path.read_text()
        section = text.split("## Scans never seen in pretraining", 1)[1].split("\n## ", 1)[0]
        assert section.strip(), path.name
    small = (REPO_ROOT / "checkpoints" / "brainmass-small-aal116" / "README.md").read_text()
    never_seen = small.split("## Scans never seen in pretraining", 1)[1].split("\n## ", 1)[0]
    assert "tangent" in never_seen and "NYU" in never_seen and "transductive" in never_seen
    model = bm.BrainMassModel(tiny_config())
    model.save_pretrained(tmp_path)
    card = hub.render_model_card(model.config, facts={"results": None}, weights_file=tmp_path / "model.safetensors")
    assert "Not measured for this file" in card  # a trained file without held-out numbers says so
