"""``brainmass``: the command line, argument parsing only; every command calls one library function.

    brainmass demo       [--data devfmri|PATH] [--preset tiny] [--epochs 30] [--output-dir DIR] [--fast]
    brainmass pretrain   --output-dir DIR [--data ...] [--preset small] [any TrainingArguments flag]
    brainmass finetune   --model_name_or_path ENC --output-dir DIR [--data ...] [any TrainingArguments flag]
    brainmass evaluate   --model ENC --data PATH [--protocols paper,linear_probe] [--output-dir DIR]
    brainmass extract    --scans a.nii.gz b.nii.gz --atlas-image atlas.nii.gz --output-dir DIR [--t-r 2 ...]
    brainmass push       FOLDER user/name [--revision BRANCH] [--private] [--create-pr] [--card-facts JSON]
    brainmass release    [--cards-dir model_cards]
    brainmass convert-official model.pth --output-dir DIR [--heads N] [--full] [--atlas-name NAME]
    brainmass explain    --model M --data D [--label-column L] [--output-dir DIR] [--n-splits 5] [--atlas-name NAME]

One spelling per idea in every command: `--output-dir` is the folder a command writes, `--model` the checkpoint it
reads (finetune also takes the Hugging Face spelling `--model_name_or_path`), `--atlas-image` an atlas NIfTI image,
`--atlas-name` an atlas's name (a shipped ROI table such as AAL-116). Every flag also takes its
underscore spelling (`--output_dir`, `--label_column`), as the Hugging Face example scripts write them.

Options of every command: `-v`/`--verbose` (INFO log messages; `-vv` DEBUG), `-q`/`--quiet` (errors only; no
progress bars in training, evaluate and extract), `--debug` (the full traceback of an error); `brainmass --version` prints the versions.

`brainmass COMMAND --help` lists a command's flags. A mistake in the input (a missing file, a bad column, an
unknown preset) prints one line `brainmass COMMAND: error: ...` and exits with status 2; add `--debug` anywhere
on the command line to see the full traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import json
import logging
import os
import re
import sys
import traceback
import warnings
from dataclasses import dataclass, field

from .output_folder import check_output_folder


class CommandLineError(Exception):
    """A mistake on the command line itself (an unknown flag, a missing required one, a bad value)."""


class _OneLineErrors:
    """argparse prints the whole usage block before an error; we raise instead, so that ``main`` prints the one
    line every other user mistake gets (``--help`` still prints the usage)."""

    def error(self, message):
        raise CommandLineError(message)


class _ArgumentParser(_OneLineErrors, argparse.ArgumentParser):
    """The parser of the commands that are not ``TrainingArguments`` scripts. Like ``HfArgumentParser``, it takes
    every ``--a-b`` flag spelt ``--a_b`` too; an option added by :func:`add_output_dir` with ``required=True``
    is checked after parsing (its old spellings are separate, hidden options)."""

    def parse_known_args(self, args=None, namespace=None):
        flags = {option for action in self._actions for option in action.option_strings}
        args = [_hyphenated(word, flags) for word in (sys.argv[1:] if args is None else args)]
        namespace, extra = super().parse_known_args(args, namespace)
        for dest, flag in getattr(self, "_required_with_aliases", {}).items():
            if getattr(namespace, dest, None) is None:
                self.error(f"the following arguments are required: {flag}")
        return namespace, extra


def _hyphenated(word: str, flags: set[str]) -> str:
    """``--a_b[=v]`` → ``--a-b[=v]`` when only the hyphenated flag exists; any other word unchanged."""
    name, sep, value = word.partition("=")
    if not name.startswith("--") or name in flags:
        return word
    hyphenated = "--" + name[2:].replace("_", "-")
    return hyphenated + sep + value if hyphenated in flags else word


def add_option(parser: argparse.ArgumentParser, flag: str, *, old: tuple[str, ...] = (), required: bool = False,
               **kwargs):
    """``flag`` (e.g. ``--output-dir``) with its old spellings ``old`` as hidden aliases (``argparse.SUPPRESS``).
    A required one is checked after parsing, so that an old spelling satisfies it too."""
    dest = flag.lstrip("-").replace("-", "_")
    if required:
        kwargs["help"] = kwargs.get("help", "") + " (required)"
        parser._required_with_aliases = {**getattr(parser, "_required_with_aliases", {}), dest: flag}
    parser.add_argument(flag, dest=dest, **kwargs)
    if old:
        parser.add_argument(*old, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def add_output_dir(parser: argparse.ArgumentParser, help: str, default: str | None = None, required: bool = False):
    """``--output-dir DIR``, the folder a command writes, spelt the same in every command; ``--out`` (the old
    spelling of demo, evaluate, extract, explain and convert-official) stays as a hidden alias."""
    add_option(parser, "--output-dir", old=("--out",), required=required, default=default, metavar="DIR", help=help)


def add_model_option(parser: argparse.ArgumentParser, help: str):
    """``--model``, the checkpoint a command reads; ``--model_name_or_path`` (finetune's Hugging Face spelling)
    works too, hidden."""
    add_option(parser, "--model", old=("--model-name-or-path",), required=True, help=help)


def add_global_options(parser: argparse.ArgumentParser, debug: bool = True):
    """List the options :func:`main` takes for every command (it removes them before the command's parser runs).
    ``debug=False`` where the parser has its own ``--debug`` (``TrainingArguments``'; main tells them apart)."""
    group = parser.add_argument_group("options of every command")
    group.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                       help="log INFO messages (-vv: DEBUG)")
    group.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="log errors only; no progress bars in training, evaluate and extract")
    if debug:
        group.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                           help="print the full traceback of an error")


def command_parser(command: str, description: str) -> _ArgumentParser:
    """The parser of ``brainmass COMMAND`` with the options of every command listed."""
    parser = _ArgumentParser(prog=f"brainmass {command}", description=description)
    add_global_options(parser)
    return parser


def _hf_parser(dataclass_types, command: str, description: str):
    """An ``HfArgumentParser`` (one flag per dataclass field, spelt with ``_`` and ``-``) named ``brainmass COMMAND``."""
    from transformers import HfArgumentParser

    class _Parser(_OneLineErrors, HfArgumentParser):
        pass

    parser = _Parser(dataclass_types, prog=f"brainmass {command}", description=description)
    add_global_options(parser, debug=False)
    return parser


def show_progress() -> bool:
    """Whether progress bars are shown: not under ``-q``."""
    return _VERBOSITY >= 0


_VERBOSITY = 0  # -1 with -q, 1 with -v, 2 with -vv; set by main() for the duration of one command


def reject_unknown_flags(parser, extra: list[str]):
    """One error naming every word the parser did not take, with the closest flag for each misspelt one."""
    if not extra:
        return
    flags = [option for action in parser._actions for option in action.option_strings]
    hints = []
    for word in extra:
        close = difflib.get_close_matches(word.split("=")[0], flags, n=1) if word.startswith("-") else []
        hints += [f"{word} -> did you mean {close[0]}?"] if close else []
    parser.error(f"unrecognized arguments: {' '.join(extra)}" + (f" ({'; '.join(hints)})" if hints else ""))


ORIENTATION_HELP = (
    "time_by_roi | roi_by_time: the layout of your files, needed when every scan has the same shape so that the "
    "ROI axis cannot be told from the shapes"
)


def load_data(data: str, orientation: str | None = None):
    """``--data`` as a ``datasets.Dataset`` (``resolve_dataset``), passing ``--orientation`` to the file loaders."""
    from .data import resolve_dataset

    return resolve_dataset(data, **({"orientation": orientation} if orientation else {}))


def checked_model_path(value: str, flag: str) -> str:
    """``value`` if it is an existing folder or could be a Hub id (``user/name``); else a one-line error.

    Without this check, a mistyped folder goes to the Hub: a validation error about repo ids, or minutes of
    retries when offline."""
    if os.path.exists(value) or re.fullmatch(r"[\w.-]+/[\w.-]+", value) and not value.startswith("."):
        return value
    raise FileNotFoundError(
        f"{flag} {value!r}: no such folder, and not a Hub id of the form 'user/name'. Pass the encoder folder that "
        "pretraining wrote (e.g. runs/small/encoder) or a Hub model id."
    )


# --------------------------------------------------------------------------------------------------------------
# brainmass pretrain
# --------------------------------------------------------------------------------------------------------------
@dataclass
class PretrainScriptArguments:
    data: str = field(
        default="devfmri",
        metadata={"help": "'devfmri' (bundled CC0 cohort), a data path or Hub id, or several joined by commas "
                          "(one corpus of the same atlas, e.g. '../shared/data/abide1_aal116,devfmri')."},
    )
    preset: str = field(default="small", metadata={"help": "small | base | large | tiny."})
    init_from: str | None = field(default=None, metadata={"help": "Encoder checkpoint to continue from."})
    config_overrides: str | None = field(
        default=None, metadata={"help": "Comma-separated config fields, e.g. 'fc_kind=pearson,mrm_loss_weight=1'."}
    )
    atlas_name: str | None = field(default=None, metadata={"help": "Atlas name stored in the config."})
    orientation: str | None = field(default=None, metadata={"help": ORIENTATION_HELP})
    exclude_sites: str | None = field(
        default=None,
        metadata={"help": "Comma-separated site names (the data's 'site' column) whose scans are left out of "
                          "pretraining entirely, e.g. 'NYU': the held-out-site protocol (docs/evaluation.md)."},
    )


def _parse_overrides(text: str | None) -> dict:
    """``"name=value,name=value"`` → ``{name: value}`` with JSON values (``1`` → int, ``true`` → bool), else strings.

    Every name must be a :class:`BrainMassConfig` field: a misspelt one would otherwise become a stray config
    attribute that nothing reads, and the run would silently use the default."""
    from .configuration_brainmass import BrainMassConfig

    valid = [f.name for f in dataclasses.fields(BrainMassConfig)]
    values = {}
    for item in filter(None, (text or "").split(",")):
        if "=" not in item:
            raise ValueError(f"--config_overrides item {item!r} must look like name=value.")
        key, raw = (part.strip() for part in item.split("=", 1))
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            from transformers import PreTrainedConfig

            own = [name for name in valid if name not in {f.name for f in dataclasses.fields(PreTrainedConfig)}]
            raise ValueError(
                f"--config_overrides: {key!r} is not a BrainMassConfig field.{hint} Valid fields: {', '.join(own)}."
            )
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values


def _shipped_roi_names(atlas_name: str, num_rois: int) -> list[str] | None:
    """The ROI names of a shipped atlas table (``brainmass_hf.atlases.roi_table``) when it has exactly ``num_rois``
    rows: the checkpoint then records which column is which region (its card, the interpretation tools and later
    users read them). ``None`` for other atlases, whose names a user passes with ``--config_overrides``."""
    from .atlases import roi_table

    try:
        return list(roi_table(num_rois, atlas_name)["name"])
    except ValueError:  # not a shipped atlas, or another ROI count
        return None


def pretrain_main(argv: list[str] | None = None):
    """``brainmass pretrain``: every ``TrainingArguments`` flag (the authors' defaults) plus ``--data --preset
    --init_from --config_overrides --atlas_name``. Returns the trainer; the encoder is in ``<output_dir>/encoder``."""
    import numpy as np
    from transformers import set_seed

    from .configuration_brainmass import BrainMassConfig
    from .modeling_brainmass import BrainMassForPreTraining
    from .training import BrainMassPretrainingArguments, pretrain

    parser = _hf_parser(
        (PretrainScriptArguments, BrainMassPretrainingArguments),
        "pretrain",
        "Self-supervised pretraining of BrainMass on ROI time series (no labels needed); the encoder is written to "
        "<output_dir>/encoder. Defaults are the authors' recipe; every TrainingArguments flag works; "
        "--resume_from_checkpoint takes a checkpoint folder or 'latest' (the last complete one in --output_dir).",
    )
    script, args, extra = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    reject_unknown_flags(parser, extra)
    check_output_folder(args.output_dir)  # not writable, or another run's: said now, before data and model
    overrides = _parse_overrides(script.config_overrides)
    if script.atlas_name:
        overrides["atlas_name"] = script.atlas_name
    sources = [part.strip() for part in script.data.split(",") if part.strip()]
    if len(sources) > 1 or script.exclude_sites:
        from .data import pretraining_corpus

        kwargs = {"orientation": script.orientation} if script.orientation else {}
        dataset = pretraining_corpus(sources, exclude_sites=script.exclude_sites, **kwargs)
    else:
        dataset = load_data(script.data, script.orientation)
    set_seed(args.seed)  # before the model is built: its initial weights follow --seed (as the Python pretrain)
    if script.init_from:
        init_from = checked_model_path(script.init_from, "--init_from")
        model = BrainMassForPreTraining.from_encoder(init_from, **overrides)
    else:
        if script.data == "devfmri":
            overrides.setdefault("atlas_name", "AAL-116")
        num_rois = np.asarray(dataset[0]["time_series"]).shape[-1]
        if "roi_names" not in overrides and overrides.get("atlas_name"):
            names = _shipped_roi_names(overrides["atlas_name"], num_rois)
            if names is not None:
                overrides["roi_names"] = names
        model = BrainMassForPreTraining(BrainMassConfig.from_preset(script.preset, num_rois=num_rois, **overrides))
    resume = args.resume_from_checkpoint
    # "latest": the last complete checkpoint in --output_dir (pretrain's resume_from_checkpoint=True)
    resume = True if resume == "latest" else resume
    trainer = pretrain(dataset, args=args, model=model, resume_from_checkpoint=resume)
    print(f"Encoder saved to {os.path.join(args.output_dir, 'encoder')}")
    return trainer


# --------------------------------------------------------------------------------------------------------------
# brainmass finetune
# --------------------------------------------------------------------------------------------------------------
@dataclass
class FinetuneScriptArguments:
    model_name_or_path: str = field(
        metadata={"help": "Encoder checkpoint (folder or Hub id); --model, as in evaluate and explain, works too.",
                  "aliases": ["--model"]}
    )
    data: str = field(default="devfmri", metadata={"help": "'devfmri' or a data path."})
    label_column: str = field(default="label", metadata={"help": "Phenotype column to predict."})
    test_size: float = field(default=0.2, metadata={"help": "Fraction of scans held out (stratified) for testing."})
    split_seed: int = field(default=0, metadata={"help": "Seed of the train/test split."})
    sync_batchnorm: bool = field(
        default=False, metadata={"help": "SyncBatchNorm in the head, for multi-GPU runs under torchrun (as the authors)."}
    )
    orientation: str | None = field(default=None, metadata={"help": ORIENTATION_HELP})


def _finetune_parser():
    import inspect

    from transformers import TrainingArguments

    from .training import finetune

    parser = _hf_parser(
        (FinetuneScriptArguments, TrainingArguments),
        "finetune",
        "Fine-tune a BrainMass encoder with a classification head on a stratified train/test split and print the "
        "test metrics. Every TrainingArguments flag is passed through; flags you leave out keep the defaults of "
        "brainmass_hf.training.finetune.",
    )
    # --help shows finetune()'s defaults where they differ from TrainingArguments'
    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    defaults = {
        name: p.default
        for name, p in inspect.signature(finetune).parameters.items()
        if name in fields and p.default is not inspect.Parameter.empty
    }
    parser.set_defaults(**defaults)
    return parser


def parse_finetune_args(argv: list[str] | None = None) -> tuple[FinetuneScriptArguments, dict]:
    """The script arguments and the ``TrainingArguments`` flags the user gave (only those, so that
    ``finetune``'s own defaults hold for the rest)."""
    from transformers import TrainingArguments

    parser = _finetune_parser()
    # Pre-filling every destination with a marker keeps argparse from writing defaults: what is left unmarked
    # after parsing is exactly what was on the command line.
    unset = object()
    namespace = argparse.Namespace(**{a.dest: unset for a in parser._actions if a.dest != argparse.SUPPRESS})
    namespace, extra = parser.parse_known_args(argv, namespace=namespace)
    reject_unknown_flags(parser, extra)
    given = {k: v for k, v in vars(namespace).items() if v is not unset}
    script_fields = {f.name for f in dataclasses.fields(FinetuneScriptArguments)}
    training_fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    script = FinetuneScriptArguments(**{k: v for k, v in given.items() if k in script_fields})
    return script, {k: v for k, v in given.items() if k in training_fields}


def finetune_main(argv: list[str] | None = None):
    """``brainmass finetune``: stratified train/test split, fine-tune, print the test metrics, save the model."""
    from .data import with_class_labels
    from .training import FINETUNE_OUTPUT_DIR, finetune

    script, training_kwargs = parse_finetune_args(argv)
    check_output_folder(training_kwargs.get("output_dir", FINETUNE_OUTPUT_DIR))
    model_path = checked_model_path(script.model_name_or_path, "--model_name_or_path")
    dataset = load_data(script.data, script.orientation)
    if script.label_column not in dataset.column_names:
        raise ValueError(
            f"--label_column {script.label_column!r} is not a column of {script.data!r}; "
            f"columns: {dataset.column_names}."
        )
    # the one label check (any column): one class, gaps, case/whitespace variants; the split and the head need ids
    dataset = with_class_labels(dataset, script.label_column)
    split = dataset.train_test_split(
        test_size=script.test_size, seed=script.split_seed, stratify_by_column=script.label_column
    )
    trainer = finetune(
        model_path, split["train"], split["test"], label_column=script.label_column,
        sync_batchnorm=script.sync_batchnorm, **training_kwargs
    )
    metrics = trainer.evaluate()
    print({k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)})
    trainer.save_model(trainer.args.output_dir)
    print(f"Model saved to {trainer.args.output_dir}")
    return trainer


# --------------------------------------------------------------------------------------------------------------
# brainmass demo | evaluate | extract
# --------------------------------------------------------------------------------------------------------------
def _demo(argv):
    from .demo import DemoSettings, run_demo

    d = DemoSettings()
    p = command_parser("demo", "Pretrain + evaluate BrainMass on real data.")
    p.add_argument("--data", default=d.data, help="'devfmri' (bundled CC0 cohort) or your data folder / .npz")
    p.add_argument("--label-column", default=d.label_column)
    p.add_argument("--preset", default=d.preset, help="tiny | small | base | large")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--learning-rate", type=float, default=d.learning_rate)
    p.add_argument("--n-repeats", type=int, default=d.n_repeats, help="repeated stratified splits")
    p.add_argument("--protocols", default=",".join(d.protocols))
    p.add_argument("--seed", type=int, default=d.seed)
    add_output_dir(p, "report folder", default=d.output_dir)
    p.add_argument("--fast", action="store_true", help="2 epochs, 2 splits: a smoke run")
    p.add_argument("--explain", action=argparse.BooleanOptionalAction, default=d.explain,
                   help="interpretation section (which regions drive the classification); default on, off with --fast")
    a = p.parse_args(argv)
    check_output_folder(a.output_dir, "--output-dir")
    run_demo(
        DemoSettings(
            data=a.data, output_dir=a.output_dir, preset=a.preset, epochs=a.epochs, batch_size=a.batch_size,
            learning_rate=a.learning_rate, label_column=a.label_column, n_repeats=a.n_repeats,
            protocols=tuple(x for x in a.protocols.split(",") if x), seed=a.seed, fast=a.fast, explain=a.explain,
        )
    )


def _evaluate(argv):
    from .evaluation import FEATURES, PROTOCOLS, evaluate

    p = command_parser("evaluate", "Evaluate a BrainMass encoder on diagnosis: results.md, results.json, a tidy "
                       "results.csv (one row per method, protocol, split and metric) and ROC figures.")
    add_model_option(p, "encoder checkpoint folder or Hub id")
    p.add_argument("--data", required=True, help="'devfmri', a data folder, an .npz bundle or a saved dataset")
    p.add_argument("--protocols", default="paper,linear_probe", help=f"comma-separated from {PROTOCOLS} or 'all'")
    p.add_argument("--orientation", default=None, help=ORIENTATION_HELP)
    p.add_argument("--label-column", default="label")
    p.add_argument("--site-column", default=None, help="site/cohort column: label × site strata, zero-shot, LOSO")
    p.add_argument("--group-column", default=None, help="subject column: no subject in both train and test")
    p.add_argument("--cv", default="repeated", help="repeated | kfold | leave_one_site_out")
    p.add_argument("--n-repeats", type=int, default=10)
    p.add_argument("--test-size", type=float, default=0.2)
    p.add_argument("--test-view", default="pfc", help="pfc (the authors' test view, default) | full | tta")
    p.add_argument("--num-tta-views", type=int, default=8)
    p.add_argument("--feature", default="readout", choices=FEATURES,
                   help="readout: the paper's 8R vector (default) | mean_hidden: last hidden state averaged over ROIs")
    p.add_argument("--few-shot-k", default="1,5,10,20")
    p.add_argument("--sites", default=None,
                   help="comma-separated sites: evaluate only their scans (with an encoder pretrained with "
                        "--exclude_sites on the same names: the held-out-site protocol)")
    p.add_argument("--no-random-baseline", action="store_true")
    p.add_argument("--no-tangent-baseline", action="store_true", help="skip tangent_fc (about 30 s per split)")
    p.add_argument("--pretrained-on-eval-scans", action=argparse.BooleanOptionalAction, default=None,
                   help="say whether the encoder was pretrained (label-free) on these scans; the report states it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    add_output_dir(p, "report folder", default="brainmass_eval")
    a = p.parse_args(argv)
    try:
        few_shot_k = tuple(int(k) for k in a.few_shot_k.split(",") if k)
    except ValueError:
        p.error(f"argument --few-shot-k: expected comma-separated integers, got {a.few_shot_k!r}")
    check_output_folder(a.output_dir, "--output-dir")
    report = evaluate(
        checked_model_path(a.model, "--model"), load_data(a.data, a.orientation), protocols=a.protocols,
        label_column=a.label_column, site_column=a.site_column, group_column=a.group_column, cv=a.cv,
        pretrained_on_eval_scans=a.pretrained_on_eval_scans, n_repeats=a.n_repeats, test_size=a.test_size,
        test_view=a.test_view, num_tta_views=a.num_tta_views, few_shot_k=few_shot_k, seed=a.seed,
        output_dir=a.output_dir, include_random_baseline=not a.no_random_baseline, device=a.device, feature=a.feature,
        sites=a.sites, include_tangent_baseline=not a.no_tangent_baseline, show_progress=show_progress(),
    )
    print(report.to_markdown())
    print(f"Report written to {a.output_dir}")


def _extract(argv):
    from .data import extract_time_series

    p = command_parser("extract", "NIfTI scans + label atlas → ROI time series, with a progress bar over the scans.")
    p.add_argument("--scans", nargs="+", required=True, help="preprocessed 4D NIfTI scans")
    add_option(p, "--atlas-image", old=("--atlas",), required=True, metavar="NIFTI",
               help="3D integer label atlas image (NIfTI)")
    add_output_dir(p, "folder for <id>.npy per scan + rois.csv", required=True)
    p.add_argument("--roi-names", default=None, help="text file with one ROI name per line (label order)")
    p.add_argument("--confounds", nargs="*", default=None, help="one confounds file per scan")
    p.add_argument("--subject-ids", nargs="*", default=None)
    p.add_argument("--standardize", default="zscore_sample", help="zscore_sample | none")
    p.add_argument("--detrend", action="store_true")
    p.add_argument("--low-pass", type=float, default=None)
    p.add_argument("--high-pass", type=float, default=None)
    p.add_argument("--t-r", type=float, default=None, help="repetition time in seconds")
    a = p.parse_args(argv)
    check_output_folder(a.output_dir, "--output-dir")
    names = None
    if a.roi_names:
        with open(a.roi_names) as f:
            names = [line.strip() for line in f if line.strip()]
    paths = extract_time_series(
        a.scans, a.atlas_image, roi_names=names, confounds=a.confounds,
        standardize=False if a.standardize.lower() == "none" else a.standardize, detrend=a.detrend,
        low_pass=a.low_pass, high_pass=a.high_pass, t_r=a.t_r, subject_ids=a.subject_ids, output_dir=a.output_dir,
        show_progress=show_progress(),
    )
    print(f"Wrote {len(paths)} time series to {a.output_dir}")


# --------------------------------------------------------------------------------------------------------------
# brainmass push / brainmass convert-official (issue 11)
# --------------------------------------------------------------------------------------------------------------
def _push(argv):
    from .hub import push_encoder

    p = command_parser("push", "Push a checkpoint folder (weights, config, feature extractor, code, model card) to "
                       "a Hub repo. The folder's own card is kept; with --card-facts a new one is rendered, keeping "
                       "the folder's licence unless the facts name one.")
    p.add_argument("folder", help="checkpoint folder saved by save_pretrained / brainmass pretrain")
    p.add_argument("repo_id", help="Hub repo id, user/name")
    p.add_argument("--revision", default=None, help="branch to push to (created from main if missing)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    p.add_argument("--card-facts", default=None, help="JSON of the card's data, recipe and results (model_cards/)")
    p.add_argument("--commit-message", default=None)
    a = p.parse_args(argv)
    facts = None
    if a.card_facts:
        with open(a.card_facts) as f:
            facts = json.load(f)
    url = push_encoder(a.folder, a.repo_id, revision=a.revision, private=a.private, create_pr=a.create_pr,
                       commit_message=a.commit_message, facts=facts)
    print(f"Pushed {a.folder} to {a.repo_id}: {url}")


def _release(argv):
    from .hub import write_release_cards

    p = command_parser("release", "Render every model card of CARDS_DIR (<name>.md from <name>.json) and complete "
                       "the checkpoint folder each facts file names (code, auto_map, pipeline, the same card). The "
                       "licence is the facts' or, without one, the checkpoint's own card's.")
    p.add_argument("--cards-dir", default="model_cards", help="folder of <name>.json card facts")
    p.add_argument("--repo-root", default=None, help="folder the facts' checkpoint paths are relative to "
                   "(default: the parent of --cards-dir)")
    a = p.parse_args(argv)
    if not os.path.isdir(a.cards_dir):
        raise FileNotFoundError(f"--cards-dir {a.cards_dir!r} is not a folder; pass the folder of <name>.json facts.")
    for path in write_release_cards(a.cards_dir, a.repo_root):
        print(f"Wrote {path}")


def _convert_official(argv):
    from .convert_official import convert_official

    p = command_parser("convert-official", "The BrainMass authors' .pth -> a brainmass_hf encoder checkpoint (and, "
                       "with --full, the pretraining model).")
    p.add_argument("checkpoint", help="the authors' .pth file (loaded with weights_only=True)")
    add_output_dir(p, "encoder folder; the full model goes to DIR/pretraining", required=True)
    p.add_argument("--heads", type=int, default=None, help="attention heads (not stored; default: the paper preset)")
    p.add_argument("--full", action="store_true", help="also write the full pretraining model")
    p.add_argument("--atlas-name", default=None, help="atlas the checkpoint was trained with, e.g. AAL-116")
    a = p.parse_args(argv)
    check_output_folder(a.output_dir, "--output-dir")
    kwargs = {"atlas_name": a.atlas_name} if a.atlas_name else {}
    encoder, _ = convert_official(a.checkpoint, a.output_dir, num_attention_heads=a.heads, full=a.full, **kwargs)
    c = encoder.config
    print(f"Converted {a.checkpoint}: R={c.num_rois}, {c.num_hidden_layers} layers, {c.num_attention_heads} heads, "
          f"FFN {c.intermediate_size} -> {a.output_dir}")


def _explain(argv):
    from .interpret import explain

    p = command_parser("explain", "Which regions and connections drive a two-class decision: explain.md (top regions "
                       "with names, MNI coordinates, effect, FDR q), CSVs, figures.")
    add_model_option(p, "fine-tuned classifier or encoder checkpoint folder / Hub id")
    p.add_argument("--data", required=True, help="'devfmri', a data folder, an .npz bundle or a saved dataset")
    p.add_argument("--orientation", default=None, help=ORIENTATION_HELP)
    p.add_argument("--label-column", default="label", help="column with the two classes")
    add_output_dir(p, "output folder", default="brainmass_explain")
    add_option(p, "--atlas-name", old=("--atlas",), default=None, metavar="NAME",
               help="atlas whose ROI table gives names/coordinates (default: the checkpoint's atlas_name)")
    add_option(p, "--atlas-image", default=None, metavar="PATH",
               help="the atlas's 3D label image (.nii/.nii.gz): also write roi_importance.nii.gz in its space")
    add_option(p, "--encoder-method", default="gradient", choices=["gradient", "permutation"],
               help="encoders: gradient x input of the SVM score (default, one backward pass per held-out scan) "
                    "or permutation importance (R times the encoder passes)")
    p.add_argument("--n-splits", type=int, default=5, help="splits of the frozen features + SVM (encoders)")
    p.add_argument("--n-permutations", type=int, default=3, help="with --encoder-method permutation: per ROI and split")
    p.add_argument("--n-group-permutations", type=int, default=5000, help="label permutations of the class test")
    p.add_argument("--ig-steps", type=int, default=32, help="integrated-gradients steps (classifiers)")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    a = p.parse_args(argv)
    check_output_folder(a.output_dir, "--output-dir")
    result = explain(
        checked_model_path(a.model, "--model"), load_data(a.data, a.orientation), label_column=a.label_column,
        out_dir=a.output_dir, atlas_name=a.atlas_name, atlas_image=a.atlas_image, encoder_method=a.encoder_method,
        n_splits=a.n_splits,
        n_permutations=a.n_permutations, n_group_permutations=a.n_group_permutations, ig_steps=a.ig_steps,
        top_k=a.top_k, seed=a.seed, device=a.device,
    )
    print(result.top[["rank", "name", "importance", "hedges_g", "q_value"]].to_string(index=False))
    print(f"Explanation written to {result.files['markdown']}")


COMMANDS = {
    "demo": _demo,
    "explain": _explain,
    "pretrain": pretrain_main,
    "finetune": finetune_main,
    "evaluate": _evaluate,
    "extract": _extract,
    "push": _push,
    "release": _release,
    "convert-official": _convert_official,
}

# Mistakes in what the user passed: one line, not a traceback. (FileNotFoundError is an OSError; so are
# transformers' "not a checkpoint folder or Hub id" errors. BrainMassDataError is a ValueError.)
USER_ERRORS = (CommandLineError, ValueError, OSError)


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines) or type(error).__name__


def _is_trainer_debug_value(following: list[str]) -> bool:
    return bool(following) and following[0].split()[0] in ("underflow_overflow", "tpu_metrics_debug")


def version_text() -> str:
    """``brainmass --version``: the package version and those of the libraries it runs on."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    from . import __version__

    return f"brainmass {__version__} (transformers {installed('transformers')}, torch {installed('torch')})"


_VERBOSITY_FLAGS = {"-v": 1, "--verbose": 1, "-vv": 2, "-q": -1, "--quiet": -1}


@contextlib.contextmanager
def verbosity(level: int):
    """Logging of ``brainmass_hf`` and ``transformers`` at ``level`` (-1 errors only, 0 warnings, 1 info, 2 debug)
    for the duration of one command; restored afterwards (tests call :func:`main` many times in one process)."""
    global _VERBOSITY
    if level == 0:
        yield
        return
    from transformers.utils import logging as hf_logging

    python_level = {-1: logging.ERROR, 1: logging.INFO, 2: logging.DEBUG}[max(-1, min(level, 2))]
    package = logging.getLogger("brainmass_hf")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    saved = (package.level, hf_logging.get_verbosity(), _VERBOSITY)
    package.setLevel(python_level)
    package.addHandler(handler)
    hf_logging.set_verbosity(python_level)
    _VERBOSITY = level
    try:
        with warnings.catch_warnings():
            if level < 0:
                warnings.simplefilter("ignore")
            yield
    finally:
        package.removeHandler(handler)
        package.setLevel(saved[0])
        hf_logging.set_verbosity(saved[1])
        _VERBOSITY = saved[2]


def main(argv: list[str] | None = None) -> int:
    """Runs ``brainmass COMMAND ...``; returns the exit status (0 ok, 2 a mistake in the input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # TrainingArguments has its own `--debug OPTION` (underflow_overflow, tpu_metrics_debug): leave that one alone
    ours = [i for i, a in enumerate(argv) if a == "--debug" and not _is_trainer_debug_value(argv[i + 1: i + 2])]
    debug = bool(ours)
    level = sum(_VERBOSITY_FLAGS.get(a, 0) for a in argv)
    argv = [a for i, a in enumerate(argv) if i not in ours and a not in _VERBOSITY_FLAGS]
    if argv[:1] == ["--version"]:
        print(version_text())
        return 0
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"brainmass: error: unknown command {command!r}; choose one of {', '.join(COMMANDS)}.", file=sys.stderr)
        print(__doc__)
        return 2
    try:
        with verbosity(level):
            COMMANDS[command](rest)
    except SystemExit as done:  # --help
        return done.code if isinstance(done.code, int) else 0
    except USER_ERRORS as error:
        if debug:
            traceback.print_exc()
        print(f"brainmass {command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except _network_errors() as error:  # evaluated only when an exception gets here
        if debug:
            traceback.print_exc()
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        print(f"brainmass {command}: error: the Hub at {endpoint} could not be reached ({type(error).__name__}: "
              f"{_one_line(error)}); check the network, HF_ENDPOINT and HF_TOKEN, then run the command again.",
              file=sys.stderr)
        return 1
    return 0


def _network_errors() -> tuple[type[BaseException], ...]:
    """The HTTP clients' own error classes (connection refused, timeouts), which are not ``OSError``s."""
    classes = []
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            classes.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(classes)


if __name__ == "__main__":
    sys.exit(main())
