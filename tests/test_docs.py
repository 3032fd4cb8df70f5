"""Every code block in README.md and docs/*.md runs, in document order, in a fresh folder.

* ```python blocks are executed; one namespace per document, so a block may use what an earlier block made.
* ```bash blocks: every ``brainmass ...`` command runs through :func:`brainmass_hf.cli.main` with the flags of
  ``TINY_FLAGS`` appended (argparse keeps the last value of a repeated flag), so the documented command runs at
  tiny size on 2 CPU cores. Nothing else of the command is changed.
* Other shell commands are allowed only in the README's first two blocks (the environment setup, and
  ``bash .ci/run``, which is what runs this suite); they are not run here.
* Files that a user brings and a command reads (NIfTI scans, confounds, the authors' ``.pth``) are made first by
  :func:`write_user_files`; ``brainmass push`` runs in a subprocess against the local Hub-protocol server.
"""

import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from brainmass_hf.cli import main
from conftest import run_cli_with_local_hub, write_nifti_scans
from hub_server import LocalHub

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SETUP_BLOCKS = 2  # the README's setup + demo command and its test command

# Appended to each documented command in the test; nothing else is substituted.
TINY_FLAGS = {
    "demo": ["--fast"],
    "pretrain": ["--preset", "tiny", "--num_train_epochs", "2"],
    "finetune": ["--max_steps", "2"],
    "evaluate": ["--n-repeats", "2", "--no-random-baseline"],
    "explain": ["--n-splits", "2", "--n-permutations", "1", "--n-group-permutations", "200"],
    "extract": [],
    "push": [],
    "convert-official": [],
    "--version": [],
}

# Commands on the real cohorts kept outside the repo name them as ``../shared/...`` (a path from the repo root, where
# a user runs them); the test resolves that against the repo and skips such a command when ../shared is absent.
SHARED_PREFIX = "../shared/"
SHARED = REPO.parent / "shared"


def _shared_path(word: str) -> str:
    """``../shared/...`` (also inside a comma-separated list) → the absolute path beside the repo; else ``word``."""
    return ",".join(str(SHARED / part[len(SHARED_PREFIX):]) if part.startswith(SHARED_PREFIX) else part
                    for part in word.split(","))


FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)


def code_blocks(path: Path) -> list[tuple[str, str, int]]:
    """``(language, code, line number of the fence)`` for every fenced block of a Markdown file."""
    text = path.read_text()
    return [(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(text)]


def shell_commands(code: str) -> list[list[str]]:
    """The commands of a bash block: continuation lines joined, comments dropped, ``a && b`` split."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        while words:
            cut = words.index("&&") if "&&" in words else len(words)
            commands.append(words[:cut])
            words = words[cut + 1:]
    return commands


def test_shell_commands_are_split_the_way_a_shell_would():
    code = "python3 -m venv .venv && brainmass demo\nbrainmass pretrain --data x \\\n    --bf16   # a comment\n"
    assert shell_commands(code) == [["python3", "-m", "venv", ".venv"], ["brainmass", "demo"],
                                    ["brainmass", "pretrain", "--data", "x", "--bf16"]]


def test_every_document_has_runnable_blocks_and_every_bash_command_is_known():
    for path in DOCUMENTS:
        for index, (language, code, line) in enumerate(code_blocks(path)):
            if language != "bash" or (path.name == "README.md" and index < SETUP_BLOCKS):
                continue
            for words in shell_commands(code):
                where = f"{path.name}:{line}"
                assert words[0] == "brainmass", f"{where}: only `brainmass` commands can be run by the doc test"
                assert words[1] in TINY_FLAGS, f"{where}: add `brainmass {words[1]}` to TINY_FLAGS"


def write_user_files(folder: Path):
    """What the README's commands read that a user would bring: two NIfTI scans + confounds + an atlas
    (``brainmass extract``) and the authors' checkpoint ``test.pth`` (``brainmass convert-official``); and the
    repo's ``checkpoints/`` folder, which documented commands name relative to the repo root."""
    import pandas as pd

    from test_convert_official import official_state_dict, save_official

    write_nifti_scans(folder, num_timepoints=100)
    rng = np.random.default_rng(0)
    for subject in ("sub-01", "sub-02"):
        confounds = pd.DataFrame(rng.normal(size=(100, 2)), columns=["trans_x", "rot_z"])
        confounds.to_csv(folder / f"{subject}_confounds.tsv", sep="\t", index=False)
    save_official(folder / "test.pth", official_state_dict())
    # the released checkpoints the README loads by their path in the repo (read-only use: a link, not a copy)
    (folder / "checkpoints").symlink_to(REPO / "checkpoints", target_is_directory=True)


def _output_folder(words: list[str]) -> str | None:
    """The folder a ``brainmass`` command writes (``--output-dir`` / ``--output_dir`` and their old spellings)."""
    flags = {"--output-dir", "--output_dir", "--out"}
    return next((words[i + 1] for i, word in enumerate(words[:-1]) if word in flags), None)


def run_document(path: Path, folder: Path):
    namespace = {"__name__": "__doc_test__"}
    skipped: list[str] = []  # output folders of commands skipped for want of ../shared: their readers are skipped too
    for index, (language, code, line) in enumerate(code_blocks(path)):
        where = f"{path.relative_to(REPO)}:{line}"
        if language == "python":
            try:
                exec(compile(code, where, "exec"), namespace)
            except Exception as error:
                raise AssertionError(f"the python block at {where} failed: {error!r}") from error
        elif language == "bash":
            for words in shell_commands(code):
                if words[0] != "brainmass":
                    assert path.name == "README.md" and index < SETUP_BLOCKS, where
                    continue
                argv = [_shared_path(word) for word in words[1:]] + TINY_FLAGS[words[1]]
                reads_skipped = any(word == out or word.startswith(f"{out}/") for out in skipped for word in words)
                if (any(word.startswith(SHARED_PREFIX) for word in words) and not SHARED.is_dir()) or reads_skipped:
                    skipped += [out] if (out := _output_folder(words)) else []
                    continue  # a command on the data kept outside the repo (../shared): only where it is present
                if words[1] == "push":  # needs a Hub: the local Hub-protocol server
                    hub = LocalHub().start()
                    try:
                        done = run_cli_with_local_hub(hub, argv, folder)
                    finally:
                        hub.stop()
                    assert done.returncode == 0, f"`{' '.join(words)}` at {where} failed: {done.stderr[-3000:]}"
                else:
                    assert main(argv) == 0, f"`{' '.join(words)}` at {where} exited non-zero"


@pytest.mark.slow  # every document loads data or trains a model: 10 s to minutes each
@pytest.mark.parametrize("path", DOCUMENTS, ids=[p.name for p in DOCUMENTS])
def test_every_code_block_of_the_document_runs(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_user_files(tmp_path)
    run_document(path, tmp_path)
