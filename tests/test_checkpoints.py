"""Shipped code cannot drift (issue 20 item 4): the code a checkpoint folder under ``checkpoints/`` ships is a
byte-for-byte copy of the package modules, written by the release path alone
(``brainmass release``, i.e. ``brainmass_hf.hub.write_release_cards``)."""

import json
import shutil
from pathlib import Path

import pytest

from brainmass_hf import hub

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "brainmass_hf"
FOLDERS = sorted(p for p in (REPO / "checkpoints").iterdir() if p.is_dir()) if (REPO / "checkpoints").is_dir() else []


@pytest.mark.parametrize("folder", FOLDERS, ids=[f.name for f in FOLDERS])
def test_checkpoint_code_is_byte_identical_to_the_package_modules(folder):
    shipped = sorted(p.name for p in folder.glob("*.py"))
    assert shipped == sorted(hub.REMOTE_CODE_FILES), f"{folder.name}: run brainmass release"
    drifted = [name for name in shipped if (folder / name).read_bytes() != (PACKAGE / name).read_bytes()]
    assert drifted == [], (
        f"{folder.name}: {drifted} differ from brainmass_hf/; run brainmass release"
    )
    assert json.loads((folder / "config.json").read_text())["custom_pipelines"] == hub.CUSTOM_PIPELINES


def test_every_checkpoint_folder_is_a_release_that_the_release_path_refreshes():
    released = {json.loads(p.read_text()).get("checkpoint") for p in (REPO / "model_cards").glob("*.json")}
    assert {f"checkpoints/{f.name}" for f in FOLDERS} <= released


def test_release_path_rewrites_drifted_code_and_leaves_weights_config_and_card_alone(tmp_path):
    shutil.copytree(REPO / "model_cards", tmp_path / "model_cards")
    for folder in FOLDERS:
        shutil.copytree(folder, tmp_path / "checkpoints" / folder.name)
    copy = tmp_path / "checkpoints" / FOLDERS[0].name
    kept = {name: (copy / name).read_bytes() for name in ("model.safetensors", "config.json", "README.md",
                                                         "preprocessor_config.json")}
    (copy / "modeling_brainmass.py").write_text("# edited by hand\n")
    (copy / "connectivity.py").unlink()
    written = hub.write_release_cards(tmp_path / "model_cards", tmp_path)
    assert copy / "README.md" in written
    for name in hub.REMOTE_CODE_FILES:
        assert (copy / name).read_bytes() == (PACKAGE / name).read_bytes(), name
    assert all((copy / name).read_bytes() == content for name, content in kept.items())
