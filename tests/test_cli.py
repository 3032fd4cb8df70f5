"""The command line as a user meets it: every subcommand's ``--help``, every flag reaching the library, one-line
errors for mistakes in the input, and every subcommand run end to end at tiny size."""

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import brainmass_hf as bm
from brainmass_hf import cli
from brainmass_hf.cli import COMMANDS, main
from conftest import TINY_OVERRIDES, run_cli_with_local_hub, tiny_config, write_nifti_scans


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    """A saved tiny encoder (random weights): what ``brainmass pretrain`` writes to ``<output_dir>/encoder``."""
    path = tmp_path_factory.mktemp("pretrained") / "encoder"
    bm.BrainMassModel(tiny_config()).save_pretrained(path)
    return path


def error_line(stderr: str, command: str) -> str:
    """The one error line; other stderr output (logging, progress bars) may come before it, a traceback may not."""
    assert "Traceback" not in stderr
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert sum("error:" in line for line in lines) == 1, stderr
    assert lines[-1].startswith(f"brainmass {command}: error: "), stderr
    return lines[-1]


# ---------------------------------------------------------------------------------------------------------------
# --help
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_help_exits_0_with_its_usage_and_a_description(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: brainmass {command} ")
    before_options = out.split("options:")[0]
    paragraphs = [p for p in before_options.split("\n\n") if p.strip()]
    assert len(paragraphs) >= 2, f"`brainmass {command} --help` has no description"


def test_no_command_prints_the_list_and_an_unknown_one_is_an_error(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(f"brainmass {command}" in out for command in ("demo", "pretrain", "finetune", "evaluate", "extract"))
    assert main(["pretrian"]) == 2
    assert "unknown command 'pretrian'" in capsys.readouterr().err


@pytest.mark.slow
def test_installed_script_prints_pretrain_help_and_exits_2_on_a_mistake():
    exe = shutil.which("brainmass") or str(Path(sys.executable).with_name("brainmass"))
    done = subprocess.run([exe, "pretrain", "--help"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: brainmass pretrain")
    done = subprocess.run([exe, "pretrain", "--preset", "huge"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 2
    assert "Unknown preset 'huge'" in error_line(done.stderr, "pretrain")


# ---------------------------------------------------------------------------------------------------------------
# Flags reach the library
# ---------------------------------------------------------------------------------------------------------------
def test_finetune_takes_model_like_evaluate_and_explain():
    script, _ = cli.parse_finetune_args(["--model", "runs/enc", "--max_steps", "2"])
    assert script.model_name_or_path == "runs/enc"


def test_finetune_passes_every_given_training_arguments_flag_and_nothing_else():
    script, training = cli.parse_finetune_args(
        ["--model_name_or_path", "runs/enc", "--label_column", "dx", "--max_steps", "2", "--weight_decay", "0.5",
         "--push_to_hub", "--hub_model_id", "me/brainmass-ft", "--lr_scheduler_type", "cosine",
         "--gradient_accumulation_steps", "2", "--no_remove_unused_columns", "--sync_batchnorm"]
    )
    assert (script.model_name_or_path, script.label_column, script.data) == ("runs/enc", "dx", "devfmri")
    assert script.sync_batchnorm
    assert training == {
        "max_steps": 2, "weight_decay": 0.5, "push_to_hub": True, "hub_model_id": "me/brainmass-ft",
        "lr_scheduler_type": "cosine", "gradient_accumulation_steps": 2, "remove_unused_columns": False,
    }


@pytest.mark.slow
def test_finetune_push_to_hub_pushes_our_card_with_the_licence_of_the_encoder(encoder_dir, tmp_path):
    from huggingface_hub import ModelCard

    from brainmass_hf.hub import REMOTE_CODE_FILES, write_model_card
    from hub_server import LocalHub

    encoder = tmp_path / "encoder"
    shutil.copytree(encoder_dir, encoder)
    write_model_card(encoder, facts={"license": "cc-by-nc-sa-4.0"})  # pretrained on non-commercial data
    hub = LocalHub().start()
    try:
        done = run_cli_with_local_hub(
            hub, ["finetune", "--model_name_or_path", str(encoder), "--output-dir", "ft", "--max_steps", "2",
                  "--push_to_hub", "--hub_model_id", "user/brainmass-ft"], tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        files = hub.repo("model", "user/brainmass-ft").resolve("main").files
    finally:
        hub.stop()
    assert {"config.json", "model.safetensors", "preprocessor_config.json", *REMOTE_CODE_FILES} <= set(files)
    card = ModelCard(files["README.md"].decode())
    assert card.data.license == "cc-by-nc-sa-4.0" and "Model Card for" not in card.text
    assert "fine-tuned end to end with a classification head, starting from the encoder `encoder`" in card.text


def test_finetune_help_shows_finetunes_defaults(capsys):
    main(["finetune", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 20)" in out and "(default: runs/finetune)" in out


@pytest.mark.slow
def test_finetune_run_applies_max_steps_and_weight_decay(encoder_dir, tmp_path):
    trainer = cli.finetune_main(
        ["--model_name_or_path", str(encoder_dir), "--output_dir", str(tmp_path / "ft"), "--max_steps", "2",
         "--weight_decay", "0.5", "--per_device_train_batch_size", "8"]
    )
    assert trainer.state.global_step == 2
    assert 0.5 in {group["weight_decay"] for group in trainer.optimizer.param_groups}
    assert trainer.args.learning_rate == 1e-4  # finetune()'s default where no flag was given
    assert (tmp_path / "ft" / "model.safetensors").is_file()


# ---------------------------------------------------------------------------------------------------------------
# Mistakes: one line naming what to fix, exit status 2
# ---------------------------------------------------------------------------------------------------------------
MALFORMED = {
    "missing data folder": (
        ["evaluate", "--model", "{enc}", "--data", "{tmp}/no_such_cohort", "--protocols", "paper"], "no_such_cohort"),
    "bad label column (finetune)": (
        ["finetune", "--model_name_or_path", "{enc}", "--label_column", "diagnosis", "--output_dir", "{tmp}/ft"],
        "'diagnosis'"),
    "bad label column (evaluate)": (
        ["evaluate", "--model", "{enc}", "--data", "devfmri", "--label-column", "diagnosis"], "'diagnosis'"),
    "unknown preset": (["pretrain", "--preset", "huge", "--output_dir", "{tmp}/pt"], "Unknown preset 'huge'"),
    "bad protocol": (["evaluate", "--model", "{enc}", "--data", "devfmri", "--protocols", "paperr"], "paperr"),
    "bad --model path": (["evaluate", "--model", "{tmp}/no_encoder", "--data", "devfmri"], "no_encoder"),
    "bad --model_name_or_path": (
        ["finetune", "--model_name_or_path", "{tmp}/no_encoder", "--output_dir", "{tmp}/ft"], "no_encoder"),
    "bad --init_from": (["pretrain", "--init_from", "{tmp}/no_encoder", "--output_dir", "{tmp}/pt"], "no_encoder"),
    "misspelt override": (
        ["pretrain", "--config_overrides", "mrm_los_weight=1", "--output_dir", "{tmp}/pt"],
        "Did you mean 'mrm_loss_weight'"),
    "override without a value": (
        ["pretrain", "--config_overrides", "fc_kind", "--output_dir", "{tmp}/pt"], "must look like name=value"),
    "misspelt flag (pretrain)": (
        ["pretrain", "--maxsteps", "2", "--output_dir", "{tmp}/pt"], "--maxsteps -> did you mean --max_steps?"),
    "misspelt flag (finetune)": (
        ["finetune", "--model_name_or_path", "{enc}", "--weight-decai", "0.5"], "did you mean --weight-decay?"),
    "missing required flag": (["evaluate", "--data", "devfmri"], "--model"),
    "few-shot k not integers": (
        ["evaluate", "--model", "{enc}", "--data", "devfmri", "--few-shot-k", "1,five"], "--few-shot-k"),
    "resume from latest without a checkpoint": (
        ["pretrain", "--preset", "tiny", "--resume_from_checkpoint", "latest", "--output_dir", "{tmp}/empty_run"],
        "empty_run"),
    "missing NIfTI scan": (
        ["extract", "--scans", "{tmp}/sub-09_bold.nii.gz", "--atlas-image", "{tmp}/atlas.nii.gz", "--output-dir",
         "{tmp}/ts"], "sub-09_bold.nii.gz"),
    "missing required output folder": (
        ["extract", "--scans", "{tmp}/sub-09_bold.nii.gz", "--atlas-image", "{tmp}/atlas.nii.gz"], "--output-dir"),
    "missing required atlas image": (["extract", "--scans", "{tmp}/a.nii.gz", "--output-dir", "{tmp}/ts"],
                                     "--atlas-image"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_user_mistake_prints_one_line_naming_the_fix_and_exits_2(case, encoder_dir, tmp_path, capsys):
    template, expected = MALFORMED[case]
    argv = [a.format(enc=encoder_dir, tmp=tmp_path) for a in template]
    assert main(argv) == 2
    assert expected in error_line(capsys.readouterr().err, argv[0])


def test_debug_flag_shows_the_traceback(tmp_path, capsys):
    argv = ["pretrain", "--debug", "--config_overrides", "mrm_los_weight=1", "--output_dir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "_parse_overrides" in err
    assert err.strip().splitlines()[-1].startswith("brainmass pretrain: error: ")


def test_misspelt_override_lists_the_valid_fields():
    with pytest.raises(ValueError, match="mrm_los_weight") as error:
        cli._parse_overrides("fc_kind=pearson,mrm_los_weight=1")
    assert all(name in str(error.value) for name in ("num_hidden_layers", "fc_kind", "mrm_loss_weight"))
    assert cli._parse_overrides("fc_kind=pearson,mrm_loss_weight=1,fisher_z=true") == {
        "fc_kind": "pearson", "mrm_loss_weight": 1, "fisher_z": True}


# ---------------------------------------------------------------------------------------------------------------
# Every subcommand end to end
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("atlas_name, first_name", [("AAL-116", "Precentral_L"), ("my-atlas", None),
                                                    ("Schaefer100", None)])
def test_pretrain_records_the_roi_names_of_a_shipped_atlas_with_as_many_rois(tmp_path, atlas_name, first_name):
    # a folder of 116-ROI scans pretrained with --atlas_name: names come from the shipped table only when it is that
    # atlas and has that many rows (Schaefer-100 has 100; an unknown atlas has no table)
    rng = np.random.default_rng(0)
    folder = tmp_path / "scans"
    folder.mkdir()
    for i in range(4):
        np.save(folder / f"sub-{i}.npy", rng.standard_normal((40, 116)).astype(np.float32))
    assert main(["pretrain", "--data", str(folder), "--orientation", "time_by_roi", "--preset", "tiny", "--atlas_name",
                 atlas_name, "--config_overrides",
                 TINY_OVERRIDES, "--output_dir", str(tmp_path / "pt"), "--max_steps", "1",
                 "--per_device_train_batch_size", "4", "--save_strategy", "no", "--report_to", "none"]) == 0
    config = bm.BrainMassConfig.from_pretrained(tmp_path / "pt" / "encoder")
    assert config.atlas_name == atlas_name
    assert (config.roi_names[0] if config.roi_names else None) == first_name


def test_pretrain_finetune_evaluate_extract_demo_chain_runs_at_tiny_size(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["pretrain", "--preset", "tiny", "--config_overrides", TINY_OVERRIDES, "--output_dir", "pt",
                 "--max_steps", "2", "--per_device_train_batch_size", "16", "--save_strategy", "no"]) == 0
    encoder = tmp_path / "pt" / "encoder"
    assert (encoder / "model.safetensors").is_file() and (encoder / "preprocessor_config.json").is_file()
    assert bm.BrainMassConfig.from_pretrained(encoder).intermediate_size == 64  # the override reached the model
    # the bundled AAL-116 cohort: the checkpoint records its atlas and which column is which region
    fe = bm.BrainMassFeatureExtractor.from_pretrained(encoder)
    assert fe.atlas_name == "AAL-116" and fe.roi_names[:2] == ["Precentral_L", "Precentral_R"]

    assert main(["finetune", "--model_name_or_path", "pt/encoder", "--output_dir", "ft", "--max_steps", "2"]) == 0
    assert (tmp_path / "ft" / "model.safetensors").is_file()

    assert main(["evaluate", "--model", "pt/encoder", "--data", "devfmri", "--protocols", "paper", "--n-repeats", "2",
                 "--no-random-baseline", "--output-dir", "eval"]) == 0
    assert (tmp_path / "eval" / "results.json").is_file() and (tmp_path / "eval" / "results.csv").is_file()

    write_nifti_scans(tmp_path)
    assert main(["extract", "--scans", "sub-01_bold.nii.gz", "sub-02_bold.nii.gz", "--atlas-image", "atlas.nii.gz",
                 "--output-dir", "ts", "--t-r", "2"]) == 0
    arrays = [np.load(p) for p in sorted((tmp_path / "ts").glob("*.npy"))]
    assert [a.shape for a in arrays] == [(40, 2), (40, 2)]

    assert main(["demo", "--fast", "--output-dir", "demo"]) == 0
    assert (tmp_path / "demo" / "report.md").is_file() and (tmp_path / "demo" / "encoder").is_dir()


@pytest.mark.slow
@pytest.mark.parametrize("label_column", ["dx", "label"])  # "label": the layout we ship (issue 7 item 3)
def test_finetune_on_a_folder_of_same_shape_scans_with_a_string_label_column(label_column, encoder_dir, tmp_path):
    import pandas as pd

    rng = np.random.default_rng(0)
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    ids = [f"sub-{i:02d}" for i in range(12)]
    for subject in ids:  # one shape for every scan: the ROI axis must be stated with --orientation
        np.save(cohort / f"{subject}.npy", rng.normal(size=(120, 116)).astype("float32"))
    table = pd.DataFrame({"subject_id": ids, label_column: ["patient", "control"] * 6})
    table.to_csv(cohort / "subjects.csv", index=False)
    trainer = cli.finetune_main(
        ["--model_name_or_path", str(encoder_dir), "--data", str(cohort), "--orientation", "time_by_roi",
         "--label_column", label_column, "--test_size", "0.25", "--output_dir", str(tmp_path / "ft"),
         "--max_steps", "2", "--per_device_train_batch_size", "4"]
    )
    assert trainer.model.config.id2label == {0: "control", 1: "patient"}
    assert trainer.state.global_step == 2


def test_pyproject_declares_an_spdx_license_the_script_and_package_data_that_exists():
    import tomllib

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"  # a string: the table form is deprecated
    assert project["project"]["scripts"]["brainmass"] == "brainmass_hf.cli:main"
    for pattern in project["tool"]["setuptools"]["package-data"]["brainmass_hf"]:
        assert any((root / "brainmass_hf").glob(pattern)), f"package-data pattern {pattern!r} matches no file"


def test_main_takes_its_own_debug_flag_but_leaves_the_trainers_debug_option(monkeypatch):
    seen = []
    monkeypatch.setitem(COMMANDS, "finetune", seen.append)
    assert main(["finetune", "--debug", "underflow_overflow", "--max_steps", "2"]) == 0
    assert main(["finetune", "--max_steps", "2", "--debug"]) == 0
    assert seen == [["--debug", "underflow_overflow", "--max_steps", "2"], ["--max_steps", "2"]]


def test_evaluate_flags_reach_evaluate(encoder_dir, monkeypatch, capsys):
    """--feature, --test-view, --group-column, --pretrained-on-eval-scans, --sites and --no-tangent-baseline are
    passed on to evaluate()."""
    import brainmass_hf.evaluation as evaluation

    seen = {}

    class _Report:
        def to_markdown(self):
            return "table"

    def fake_evaluate(model, data, **kwargs):
        seen.update(kwargs)
        return _Report()

    monkeypatch.setattr(evaluation, "evaluate", fake_evaluate)
    code = main(["evaluate", "--model", str(encoder_dir), "--data", "devfmri", "--feature", "mean_hidden",
                 "--test-view", "full", "--group-column", "subject_id", "--pretrained-on-eval-scans",
                 "--sites", "NYU,UM_1", "--no-tangent-baseline"])
    assert code == 0
    assert seen["sites"] == "NYU,UM_1" and seen["include_tangent_baseline"] is False
    assert seen["feature"] == "mean_hidden" and seen["test_view"] == "full"
    assert seen["group_column"] == "subject_id" and seen["pretrained_on_eval_scans"] is True
    assert seen["show_progress"] is True  # feature extraction shows a progress bar, unless -q
    assert main(["evaluate", "-q", "--model", str(encoder_dir), "--data", "devfmri"]) == 0
    assert seen["show_progress"] is False
    assert main(["evaluate", "--model", str(encoder_dir), "--data", "devfmri", "--feature", "pooled"]) == 2
    assert "--feature" in capsys.readouterr().err


def test_pretrain_exclude_sites_leaves_those_sites_out_of_the_corpus(tmp_path, monkeypatch):
    """`brainmass pretrain --exclude_sites` pretrains on the corpus without the named sites' scans."""
    import datasets

    import brainmass_hf.training as training

    rng = np.random.default_rng(0)
    folder = tmp_path / "cohort"
    datasets.Dataset.from_dict({
        "subject_id": [f"s{i}" for i in range(6)], "site": ["A", "A", "B", "B", "C", "C"],
        "time_series": [rng.normal(size=(30, 12)).astype(np.float32) for _ in range(6)],
    }).save_to_disk(str(folder))
    seen = {}
    monkeypatch.setattr(training, "pretrain", lambda dataset, **kwargs: seen.setdefault("ids", dataset["subject_id"]))
    cli.pretrain_main(["--data", str(folder), "--preset", "tiny", "--exclude_sites", "A,C", "--output_dir",
                   str(tmp_path / "run"), "--report_to", "none"])
    assert seen["ids"] == ["s2", "s3"]


# ---------------------------------------------------------------------------------------------------------------
# One spelling per idea; options of every command
# ---------------------------------------------------------------------------------------------------------------
# Each idea, its one visible spelling, and spellings of the same idea that must not appear in any --help
# (compared with "_" read as "-": HfArgumentParser shows --output_dir and --output-dir, one flag).
IDEAS = {
    "folder a command writes": ("--output-dir", {"--out", "--output", "--outdir", "--out-dir", "--save-dir"}),
    "atlas image (NIfTI)": ("--atlas-image", {"--atlas", "--atlas-img", "--atlas-file", "--atlas-nifti"}),
    "atlas name (ROI table)": ("--atlas-name", {"--atlas", "--atlas-table"}),
    "label column": ("--label-column", {"--label", "--label-col", "--target-column"}),
    "data": ("--data", {"--dataset", "--data-dir", "--input"}),
    "seed": ("--seed", {"--random-seed", "--rng-seed"}),
    "checkpoint a command reads": ("--model", {"--encoder", "--checkpoint", "--model-path", "--model-dir"}),
}
WRITES_A_FOLDER = {"demo", "pretrain", "finetune", "evaluate", "extract", "convert-official", "explain"}


def help_flags(command: str, capsys) -> set[str]:
    """The long flags ``brainmass COMMAND --help`` shows, ``_`` read as ``-``."""
    import re

    assert main([command, "--help"]) == 0
    text = capsys.readouterr().out
    return {flag.replace("_", "-") for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*", text)}


def test_every_subcommand_help_spells_each_idea_one_way_and_lists_the_common_options(capsys):
    shown = {command: help_flags(command, capsys) for command in COMMANDS}
    for command, flags in shown.items():
        for idea, (spelling, others) in IDEAS.items():
            assert not flags & others, f"brainmass {command} --help spells the {idea} {sorted(flags & others)}"
        assert {"--verbose", "--quiet"} <= flags, command
    assert {c for c, flags in shown.items() if "--output-dir" in flags} == WRITES_A_FOLDER
    assert "--atlas-image" in shown["extract"] and "--atlas-name" in shown["explain"] | shown["convert-official"]
    assert "--atlas-name" in shown["pretrain"]
    assert {c for c, flags in shown.items() if "--model" in flags} == {"evaluate", "explain", "finetune"}


@pytest.mark.parametrize("command, old, new", [
    ("extract", ["--atlas", "a.nii.gz", "--out", "ts"], ["--atlas-image", "a.nii.gz", "--output-dir", "ts"]),
    ("explain", ["--atlas", "AAL-116", "--out", "ex", "--label_column", "dx"],
     ["--atlas-name", "AAL-116", "--output-dir", "ex", "--label-column", "dx"]),
    ("evaluate", ["--out", "ev", "--n_repeats", "3", "--site_column", "site"],
     ["--output-dir", "ev", "--n-repeats", "3", "--site-column", "site"]),
    ("evaluate", ["--model_name_or_path", "m2"], ["--model", "m2"]),
])
def test_old_and_underscore_spellings_are_hidden_aliases_of_the_same_flags(command, old, new, monkeypatch):
    """The spellings before issue 21 (--out, --atlas) and the underscore form of every flag still work."""
    import argparse

    seen = []

    def capture(self, args=None, namespace=None):
        seen.append(vars(original(self, args, namespace)[0]))
        raise SystemExit(0)

    original = cli._ArgumentParser.parse_known_args
    monkeypatch.setattr(cli._ArgumentParser, "parse_known_args", capture)
    base = {"extract": ["--scans", "s.nii.gz"], "explain": ["--model", "m", "--data", "d"],
            "evaluate": ["--model", "m", "--data", "d"]}[command]
    assert main([command, *base, *old]) == 0 and main([command, *base, *new]) == 0
    assert seen[0] == seen[1] and isinstance(seen[0], dict) and argparse.SUPPRESS not in seen[0].values()


def test_version_prints_the_package_and_library_versions(capsys):
    import transformers

    assert main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"brainmass {bm.__version__} ") and f"transformers {transformers.__version__}" in out


@pytest.mark.parametrize("flags, level, progress", [([], logging.WARNING, True), (["-v"], logging.INFO, True),
                                                    (["-vv"], logging.DEBUG, True), (["-q"], logging.ERROR, False)])
def test_verbose_and_quiet_set_the_logging_level_and_progress_bars_for_one_command(flags, level, progress,
                                                                                   monkeypatch):
    from transformers.utils import logging as hf_logging

    seen = []
    from transformers import TrainingArguments

    monkeypatch.setitem(COMMANDS, "demo", lambda argv: seen.append(
        (argv, logging.getLogger("brainmass_hf").getEffectiveLevel(), hf_logging.get_verbosity(),
         cli.show_progress() and not TrainingArguments(output_dir="unused").disable_tqdm)))
    before = (logging.getLogger("brainmass_hf").getEffectiveLevel(), hf_logging.get_verbosity())
    assert main(["demo", *flags, "--fast"]) == 0
    argv, package_level, hf_level, shown = seen[0]
    assert argv == ["--fast"] and shown == progress
    if flags:
        assert package_level == hf_level == level
    assert (logging.getLogger("brainmass_hf").getEffectiveLevel(), hf_logging.get_verbosity()) == before


def test_extract_shows_a_progress_bar_unless_quiet(tmp_path, capsys):
    write_nifti_scans(tmp_path)
    argv = ["extract", "--scans", str(tmp_path / "sub-01_bold.nii.gz"), "--atlas-image", str(tmp_path / "atlas.nii.gz"),
            "--output-dir", str(tmp_path / "ts")]
    assert main(argv) == 0
    assert "Extracting time series" in capsys.readouterr().err
    assert main([*argv, "-q"]) == 0
    assert "Extracting time series" not in capsys.readouterr().err
