"""Releasing BrainMass checkpoints: the code a checkpoint ships, its model card, and pushes to the Hub.

A checkpoint folder is everything a user needs with only ``torch``, ``transformers`` and ``numpy`` installed:

* ``config.json`` + ``model.safetensors`` (a :class:`~brainmass_hf.BrainMassModel` or any other model class),
* ``preprocessor_config.json`` (:class:`~brainmass_hf.BrainMassFeatureExtractor`),
* the remote code :data:`REMOTE_CODE_FILES`, with ``auto_map`` entries for every Auto class and
  ``custom_pipelines`` for ``pipeline("feature-extraction", model=..., trust_remote_code=True)``,
* ``README.md``, the model card: YAML metadata from :func:`card_metadata` (``huggingface_hub.ModelCardData`` with
  ``EvalResult`` entries), text rendered from ``templates/model_card.md`` by :func:`render_model_card`.

:func:`complete_checkpoint_folder` makes a saved folder into that; :func:`write_release_cards` (``brainmass
release``) renders the repository's cards and completes its checkpoint folders; :func:`push_encoder` (``brainmass
push``) uploads a folder; :class:`HubCodeCallback` does it for the revisions the Trainer pushes during pretraining,
``BrainMassTrainer.create_model_card`` for ``finetune --push_to_hub``. Weights keep the licence of the checkpoint
they start from (:func:`license_of`).
"""

from __future__ import annotations

import json
import re
import shutil
import string
import sys
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import EvalResult, ModelCardData
from transformers import TrainerCallback

from .configuration_brainmass import BRAINMASS_PRESETS, FC_SETTING_NAMES, BrainMassConfig
from .output_folder import LOCK_NAME
from .processing_brainmass import BrainMassFeatureExtractor

__all__ = [
    "REMOTE_CODE_FILES",
    "REMOTE_CODE_REQUIREMENTS",
    "CUSTOM_PIPELINES",
    "remote_code_imports",
    "complete_checkpoint_folder",
    "infer_preset",
    "count_parameters",
    "MIN_TRANSFORMERS",
    "PAPER_CORPUS",
    "eval_results",
    "card_metadata",
    "license_of",
    "fine_tuned_card_facts",
    "render_model_card",
    "write_model_card",
    "render_release_card",
    "write_release_cards",
    "push_encoder",
    "push_model_to_hub",
    "HubCodeCallback",
]

# What a checkpoint ships: the closure of the relative imports of the model and feature-extractor modules, and the
# custom pipeline that config.json names (CUSTOM_PIPELINES).
REMOTE_CODE_FILES = (
    "configuration_brainmass.py",
    "modeling_brainmass.py",
    "connectivity.py",
    "processing_brainmass.py",
    "validation.py",
    "pipeline_brainmass.py",
)
_REMOTE_CODE_ENTRIES = ("modeling_brainmass.py", "processing_brainmass.py", "pipeline_brainmass.py")
# `pipeline("feature-extraction", model=..., trust_remote_code=True)` reads this entry of config.json.
CUSTOM_PIPELINES = {
    "feature-extraction": {
        "impl": "pipeline_brainmass.BrainMassFeatureExtractionPipeline", "pt": ["AutoModel"], "tf": [], "type": "multimodal",
    }
}
# The lower bound of transformers that pyproject.toml declares: the shipped code uses the 5.x API (PreTrainedConfig
# dataclass fields, transformers.initialization). Cards state it with the version the code was tested with.
MIN_TRANSFORMERS = "5.0"
# The paper's pretraining corpus (Yang et al. 2024), written next to a checkpoint's own corpus on its card.
PAPER_CORPUS = {"scans": 70781, "participants": 46686, "datasets": 30}
# The only third-party packages that code may import (transformers' check_imports enforces it on the user side).
REMOTE_CODE_REQUIREMENTS = ("torch", "transformers", "numpy")

_PACKAGE_DIR = Path(__file__).resolve().parent
_CARD_TEMPLATE = "model_card.md"
_HUB_ID = re.compile(r"([A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*")


# ----------------------------------------------------------------------------------------------------------------
# Remote code
# ----------------------------------------------------------------------------------------------------------------
def remote_code_imports(package_dir: str | Path = _PACKAGE_DIR) -> tuple[set[str], set[str]]:
    """``(files, packages)``: the module files a checkpoint's code pulls in by relative import (starting from the
    modeling, processing and pipeline modules, as transformers' ``custom_object_save`` follows them) and the top-level
    non-standard-library packages those files import. Uses transformers' own parsers, so it sees exactly what a user's
    ``trust_remote_code`` load will demand."""
    from transformers.dynamic_module_utils import get_imports, get_relative_import_files

    package_dir = Path(package_dir)
    files: set[str] = set()
    for entry in _REMOTE_CODE_ENTRIES:
        files.add(entry)
        files.update(Path(f).name for f in get_relative_import_files(str(package_dir / entry)))
    packages: set[str] = set()
    for name in files:
        packages.update(p.split(".")[0] for p in get_imports(str(package_dir / name)))
    return files, packages - set(sys.stdlib_module_names)


def _check_remote_code():
    """Refuse to ship code that users' ``trust_remote_code`` load could not import (a stray import in one of the
    shipped modules would otherwise surface only on their machine)."""
    files, packages = remote_code_imports()
    extra = sorted(files - set(REMOTE_CODE_FILES)) + sorted(packages - set(REMOTE_CODE_REQUIREMENTS))
    if extra:
        raise RuntimeError(
            f"The checkpoint code would import {extra}, which users without brainmass_hf may not have; shipped code "
            f"may import only {list(REMOTE_CODE_REQUIREMENTS)} and the files {list(REMOTE_CODE_FILES)}."
        )


def complete_checkpoint_folder(
    folder: str | Path, card: str | None = None, facts: Mapping[str, Any] | None = None, repo_id: str | None = None
) -> Path:
    """Make a folder saved by ``save_pretrained`` loadable with ``trust_remote_code`` alone and give it its card.

    Copies :data:`REMOTE_CODE_FILES`, writes ``preprocessor_config.json`` from the config if missing, makes sure
    ``auto_map`` names every Auto class (``config.json`` and ``preprocessor_config.json``) and ``custom_pipelines``
    the feature-extraction pipeline, and writes ``README.md`` (``card`` as given, else :func:`render_model_card`
    with ``facts``; without a ``license`` in ``facts``, the licence of the folder's own card is kept). Returns
    the folder.
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{folder} has no config.json; save a model there first (model.save_pretrained({str(folder)!r}))."
        )
    _check_remote_code()
    for name in REMOTE_CODE_FILES:
        shutil.copyfile(_PACKAGE_DIR / name, folder / name)
    config = BrainMassConfig.from_pretrained(folder)
    config_json = json.loads((folder / "config.json").read_text())
    config_json["auto_map"] = {**config.auto_map, **config_json.get("auto_map", {})}
    config_json["custom_pipelines"] = {**config_json.get("custom_pipelines", {}), **CUSTOM_PIPELINES}
    (folder / "config.json").write_text(json.dumps(config_json, indent=2, sort_keys=True) + "\n")
    if not (folder / "preprocessor_config.json").is_file():
        BrainMassFeatureExtractor.from_config(config).save_pretrained(folder)
    fe_json = json.loads((folder / "preprocessor_config.json").read_text())
    fe_json.setdefault("auto_map", {})["AutoFeatureExtractor"] = "processing_brainmass.BrainMassFeatureExtractor"
    (folder / "preprocessor_config.json").write_text(json.dumps(fe_json, indent=2, sort_keys=True) + "\n")
    if card is None:
        facts = {**(facts or {})}
        facts["license"] = facts.get("license") or license_of(folder)
        card = render_model_card(config, facts=facts, repo_id=repo_id, weights_file=_weights_file(folder))
    (folder / "README.md").write_text(card)
    return folder


def license_of(checkpoint: str | Path | None) -> str | None:
    """The ``license`` in the card metadata of ``checkpoint`` (a folder, or a Hub id read through the Hub client
    and its cache), or None when it has no card, no licence, or cannot be reached. A push, release or fine-tuning
    run starting from a checkpoint carries its licence on: weights trained on non-commercial data stay so."""
    from huggingface_hub import ModelCard
    from huggingface_hub.errors import HfHubHTTPError

    if checkpoint is None:
        return None
    local = Path(str(checkpoint))
    try:
        if local.is_dir():
            card = ModelCard.load(local / "README.md") if (local / "README.md").is_file() else None
        elif _HUB_ID.fullmatch(str(checkpoint)):
            card = ModelCard.load(str(checkpoint))
        else:
            card = None
    except (OSError, ValueError, HfHubHTTPError):  # no card on the Hub, offline, or unreadable metadata
        return None
    license_ = card.data.license if card is not None else None
    return license_ if license_ and license_ != "unknown" else None


def fine_tuned_card_facts(base: str | Path) -> dict[str, Any]:
    """Card facts of a model fine-tuned from the checkpoint ``base`` (a folder or Hub id): its licence
    (:func:`license_of`), ``base_model`` when it is a Hub id, and a weights line naming it."""
    hub_id = not Path(str(base)).exists() and _HUB_ID.fullmatch(str(base)) is not None
    return {
        "license": license_of(base),
        "base_model": str(base) if hub_id else None,
        "status": f"Weights: fine-tuned end to end with a classification head, starting from the encoder "
                  f"`{base if hub_id else Path(str(base)).name}`.",
    }


def _weights_file(folder: Path) -> Path | None:
    for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    return None


# ----------------------------------------------------------------------------------------------------------------
# Model cards
# ----------------------------------------------------------------------------------------------------------------
def infer_preset(config: BrainMassConfig) -> str | None:
    """The paper preset whose depth and FFN width ``config`` has (heads may differ: they must divide R), else None."""
    for name, values in BRAINMASS_PRESETS.items():
        if (config.num_hidden_layers, config.intermediate_size) == (
            values["num_hidden_layers"],
            values["intermediate_size"],
        ):
            return name
    return None


def count_parameters(config: BrainMassConfig) -> dict[str, int]:
    """Parameter counts of the encoder (what users load) and of the whole pretraining system, built on the meta
    device so that no memory is allocated for the large preset."""
    from .modeling_brainmass import BrainMassForPreTraining, BrainMassModel

    with torch.device("meta"):
        encoder = BrainMassModel(config)
        system = BrainMassForPreTraining(config)
    return {
        "encoder": sum(p.numel() for p in encoder.parameters()),
        "pretraining": sum(p.numel() for p in system.parameters()),
    }


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f} M ({n:,} parameters)"


def _markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows of dicts sharing their keys → a markdown table (columns in the first row's order)."""
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        missing = set(columns) - set(row)
        if missing:
            raise ValueError(f"Table row {dict(row)} lacks the columns {sorted(missing)}; every row needs {columns}.")
        lines.append("| " + " | ".join(str(row[c]) for c in columns) + " |")
    return "\n".join(lines)


def _shorten(names: Sequence[str]) -> str:
    return ", ".join(names) if len(names) <= 12 else ", ".join(names[:6]) + ", …, " + ", ".join(names[-3:])


def _roi_order(config: BrainMassConfig) -> str:
    if config.roi_names:
        names = list(config.roi_names)
        return f"`config.roi_names` holds the {len(names)} ROI names in input-column order: {_shorten(names)}."
    if config.atlas_name:
        from .atlases import roi_table

        try:
            table = roi_table(config.num_rois, config.atlas_name)
        except (KeyError, ValueError):  # an atlas the package has no table for
            table = None
        if table is not None:
            labels = table["label_value"].tolist()
            return (
                f"Columns follow the atlas's label values in ascending order ({labels[0]} … {labels[-1]}, the order "
                f"of nilearn's `NiftiLabelsMasker`): {_shorten(table['name'].tolist())} "
                f"(`brainmass_hf.atlases.roi_table`)."
            )
    return "The checkpoint records no ROI order: columns must follow the atlas's label values in ascending order."


# The card's usage snippet, per feature-extractor view; "pfc" is the view a card's results are measured with.
_USAGE_HEAD = """```python
import torch
from transformers import AutoFeatureExtractor, AutoModel, pipeline

revision = "<commit sha>"  # pin it: trust_remote_code runs this repository's code on your machine
model = AutoModel.from_pretrained("{repo}", trust_remote_code=True, revision=revision).eval()
fe = AutoFeatureExtractor.from_pretrained("{repo}", trust_remote_code=True, revision=revision)
"""
_USAGE = {
    "pfc": _USAGE_HEAD + """# scans: a list of (T_i, {num_rois}) float arrays, columns in the ROI order above. One pseudo-FC view per scan
# ({drop:.0%} of the time points dropped at random, seeded): the view the results below were measured with.
inputs = fe(scans, view="pfc", generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    features = model(**inputs).pooler_output  # (N, {pooled})

# the same through a pipeline: one ({pooled},) numpy vector per scan
extractor = pipeline("feature-extraction", model="{repo}", trust_remote_code=True, revision=revision)
vectors = extractor(scans, view="pfc", seed=0)
```

`view="full"` reads every time point instead (deterministic, no seed); the reported numbers were not measured
with it.""",
    "full": _USAGE_HEAD + """# scans: a list of (T_i, {num_rois}) float arrays, columns in the ROI order above; the FC of every time point
with torch.no_grad():
    features = model(**fe(scans, view="full")).pooler_output  # (N, {pooled})

# the same through a pipeline: one ({pooled},) numpy vector per scan
extractor = pipeline("feature-extraction", model="{repo}", trust_remote_code=True, revision=revision)
vectors = extractor(scans)
```""",
}


def _status(facts: Mapping[str, Any], trained: bool) -> str:
    if facts.get("status"):
        return facts["status"]
    if trained:
        return "Weights: pretrained as described below (`model.safetensors` in this repository)."
    return (
        "**Weights: PENDING.** No pretrained weights have been released for this preset yet: this card "
        "describes the configuration and the recipe that will produce them. Do not use randomly initialised "
        "weights as a pretrained encoder."
    )


def _data_section(facts: Mapping[str, Any]) -> str:
    """The pretraining-data table, its scan total and the paper's corpus beside it."""
    rows = facts.get("pretraining_data") or []
    paper = (f"The paper pretrained on {PAPER_CORPUS['scans']:,} scans ({PAPER_CORPUS['participants']:,} "
             f"participants, {PAPER_CORPUS['datasets']} datasets)")
    if not rows:
        return f"Not recorded for this checkpoint. {paper}."
    scans = sum(int(r.get("scans", 0)) for r in rows)
    ratio = f", {PAPER_CORPUS['scans'] / scans:.0f} times more" if scans else ""
    return (_markdown_table(rows) + f"\n\nIn total {scans} scans, used without labels. {paper}{ratio}: these "
            "weights are not the authors' and have seen far less data.")


def _results_section(facts: Mapping[str, Any], trained: bool) -> str:
    results = facts.get("results")
    if results and trained:
        return (
            f"Protocol: {results['protocol']}\n\n{_markdown_table(results['rows'])}\n\n"
            f"Measured with this repository's `model.safetensors` on {results.get('machine', 'an unrecorded machine')}."
        )
    if trained:
        return "No downstream results have been measured with this file yet."
    return "None: there are no weights to measure yet."


def _never_seen_section(facts: Mapping[str, Any], trained: bool) -> str:
    """What is known of this file's features on scans its pretraining never saw (``facts["never_seen"]``): the
    numbers above are transductive, and a user's cohort is not."""
    if not trained:
        return "None: there are no weights to measure yet."
    return facts.get("never_seen") or (
        "Not measured for this file: every cohort in the results above was in its pretraining corpus (without labels), "
        "so those numbers are transductive. Expect less on a cohort it never saw."
    )


def _mean_std(cell: str) -> tuple[float, float | None]:
    """``"0.690 ± 0.032"`` → ``(0.69, 0.032)``; ``"0.69"`` → ``(0.69, None)``."""
    parts = [p.strip() for p in str(cell).split("±")]
    return float(parts[0]), (float(parts[1]) if len(parts) > 1 else None)


def eval_results(results: Mapping[str, Any] | None) -> list[EvalResult]:
    """``model-index`` entries of a card: one :class:`~huggingface_hub.EvalResult` per cohort x protocol x metric.

    ``results["model_index"]`` says how to read the rows (each row needs ``cohort`` and ``protocol``; the protocol
    becomes the metric's ``config`` and name, since the Hub groups results by task and dataset): ``metrics`` (``{column: {"type", "name"}}``, the columns
    that hold this checkpoint's numbers as ``"mean ± std"``), ``datasets`` (``{cohort: {"type", "name"}}``, a
    dataset id and name per value of the rows' ``cohort``) and ``task`` (``{"type", "name"}``). Rows without a
    known cohort, and results without ``model_index``, give no entries."""
    spec = (results or {}).get("model_index")
    if not spec:
        return []
    entries = []
    for row in results["rows"]:
        dataset = spec["datasets"].get(row.get("cohort"))
        for column, metric in spec["metrics"].items():
            if dataset is None or column not in row:
                continue
            mean, std = _mean_std(row[column])
            # the Hub groups results by task and dataset: the protocol goes with each metric (its config)
            entries.append(EvalResult(
                task_type=spec["task"]["type"], task_name=spec["task"]["name"], dataset_type=dataset["type"],
                dataset_name=dataset["name"], metric_type=metric["type"], metric_config=row["protocol"],
                metric_name=f"{metric['name']}, {row['protocol']}", metric_value=mean,
                metric_args={"std": std} if std is not None else None,
            ))
    return entries


def card_metadata(name: str, facts: Mapping[str, Any], trained: bool) -> ModelCardData:
    """The card's YAML front matter as :class:`~huggingface_hub.ModelCardData`: library, pipeline tag, licence
    (``facts["license"]``, else ``"unknown"``), tags, ``datasets``, ``base_model`` and, for trained weights,
    ``metrics`` + ``model-index`` (:func:`eval_results`)."""
    tags = ["brainmass", "fmri", "functional-connectivity", "neuroimaging", "self-supervised", *facts.get("tags", [])]
    results = eval_results(facts.get("results")) if trained else []
    return ModelCardData(
        library_name="transformers", pipeline_tag="feature-extraction", license=facts.get("license") or "unknown",
        tags=list(dict.fromkeys(tags)), datasets=facts.get("datasets") or None,
        base_model=facts.get("base_model") or None, model_name=name,
        metrics=sorted({r.metric_type for r in results}) or None, eval_results=results or None,
    )


def _licence_text(facts: Mapping[str, Any]) -> str:
    license_ = facts.get("license") or "unknown"
    if license_ == "unknown":
        note = ("not recorded: weights carry the terms of the data they were trained on (see Pretraining data), "
                "so check those before any use")
    else:
        note = facts.get("license_note") or "as stated in the metadata"
        if facts.get("base_model"):
            note += f"; inherited from the base model `{facts['base_model']}`"
    return f"`{license_}`: {note}. The code files of this repository are Apache-2.0."


def render_model_card(
    config: BrainMassConfig,
    facts: Mapping[str, Any] | None = None,
    repo_id: str | None = None,
    weights_file: str | Path | None = None,
) -> str:
    """The model card (``README.md``) of a checkpoint: YAML metadata from :func:`card_metadata`, the text from the
    package's ``templates/model_card.md``.

    Architecture, parameter counts, atlas, ROI order and FC/pFC settings come from ``config``. ``facts`` adds what
    the config cannot know (all optional): ``license`` (Hub licence id; ``"unknown"`` when absent) and
    ``license_note``, ``datasets`` (ids for the metadata), ``base_model``, ``pretraining_data`` (list of rows with
    the same keys, e.g. ``dataset``/``scans``/``licence``), ``recipe`` (the pretraining command), ``results``
    (``{"protocol": str, "rows": [...], "machine": str, "model_index": ...}``, measured with this exact file; see
    :func:`eval_results`), ``weights`` (``"trained"`` or ``"pending"``), ``status`` (a sentence replacing the
    weights line), ``name``, ``tags``, ``usage_view`` (the feature-extractor view of the usage snippet, default
    ``"pfc"`` when results are given, else ``"full"``). Weights are reported trained only when ``weights_file``
    exists and ``facts["weights"]`` is not ``"pending"``: a card never claims weights that are not there.
    """
    facts = dict(facts or {})
    counts = count_parameters(config)
    preset = facts.get("preset") or infer_preset(config) or "custom"
    name = facts.get("name") or (repo_id.split("/")[-1] if repo_id else f"brainmass-{preset}")
    repo = repo_id or facts.get("repo_id") or f"<user>/{name}"
    trained = weights_file is not None and Path(weights_file).is_file() and facts.get("weights") != "pending"
    view = facts.get("usage_view") or ("pfc" if facts.get("results") else "full")
    template = string.Template(resources.files("brainmass_hf").joinpath("templates", _CARD_TEMPLATE).read_text())
    body = template.substitute(
        name=name, repo=repo, status=_status(facts, trained), preset=preset, num_rois=config.num_rois,
        layers=config.num_hidden_layers, heads=config.num_attention_heads, ffn=config.intermediate_size,
        pooled=config.pooled_size, encoder_params=_millions(counts["encoder"]),
        pretraining_params=_millions(counts["pretraining"]),
        atlas=config.atlas_name or "not recorded (set `atlas_name` when saving)", roi_order=_roi_order(config),
        **{name: getattr(config, name) for name in FC_SETTING_NAMES},
        usage=_USAGE[view].format(repo=repo, pooled=config.pooled_size, num_rois=config.num_rois,
                                  drop=config.pfc_drop_ratio),
        min_transformers=MIN_TRANSFORMERS, transformers_tested=_transformers_tested(facts),
        pretraining_data=_data_section(facts),
        recipe=f"```bash\n{facts['recipe']}\n```" if facts.get("recipe") else "Not recorded for this checkpoint.",
        results=_results_section(facts, trained), never_seen=_never_seen_section(facts, trained),
        licence=_licence_text(facts),
    )
    return f"---\n{card_metadata(name, facts, trained).to_yaml()}\n---\n\n{body}"


def _transformers_tested(facts: Mapping[str, Any]) -> str:
    """``facts["tested_transformers"]`` (the version this checkpoint's results and loads were tested with), else
    the version installed while the card was written (nothing more is known)."""
    if facts.get("tested_transformers"):
        return f"tested with `transformers` {facts['tested_transformers']}"
    import transformers

    return f"saved with `transformers` {transformers.__version__} (no other version tested)"


def write_model_card(folder: str | Path, facts: Mapping[str, Any] | None = None, repo_id: str | None = None) -> Path:
    """Render the card of the checkpoint in ``folder`` (its ``config.json`` and weights) into ``folder/README.md``."""
    folder = Path(folder)
    config = BrainMassConfig.from_pretrained(folder)
    path = folder / "README.md"
    path.write_text(render_model_card(config, facts=facts, repo_id=repo_id, weights_file=_weights_file(folder)))
    return path


def _release_checkpoint(facts: Mapping[str, Any], root: Path) -> Path | None:
    folder = root / facts["checkpoint"] if facts.get("checkpoint") else None
    return folder if folder is not None and (folder / "config.json").is_file() else None


def render_release_card(facts_path: str | Path, repo_root: str | Path | None = None) -> str:
    """The card of a released checkpoint from its facts JSON (``model_cards/<name>.json``): the config is the
    checkpoint's (``facts["checkpoint"]``, relative to the repository root) when it exists, else the preset at
    the facts' atlas (``num_rois``, ``atlas_name``), whose card then says the weights are pending. Without a
    ``license`` in the facts, the checkpoint's own card's licence is kept (:func:`license_of`)."""
    facts = json.loads(Path(facts_path).read_text())
    root = Path(repo_root) if repo_root is not None else Path(facts_path).resolve().parents[1]
    folder = _release_checkpoint(facts, root)
    if folder is not None:
        config = BrainMassConfig.from_pretrained(folder)
        weights = _weights_file(folder)
        facts["license"] = facts.get("license") or license_of(folder)
    else:
        config = BrainMassConfig.from_preset(
            facts["preset"], num_rois=facts["num_rois"], atlas_name=facts.get("atlas_name")
        )
        weights = None
    return render_model_card(config, facts=facts, repo_id=facts.get("repo_id"), weights_file=weights)


def write_release_cards(cards_dir: str | Path, repo_root: str | Path | None = None) -> list[Path]:
    """``brainmass release``: render ``<name>.md`` beside every ``<name>.json`` in ``cards_dir`` (the
    repository's ``model_cards/``) and, where the facts' checkpoint folder exists, complete that folder with the
    same card, the remote code and the pipeline (:func:`complete_checkpoint_folder`): the only writer of the code
    a released checkpoint ships. Returns the written cards (``model_cards/`` first, then checkpoint folders)."""
    written, folders = [], []
    for facts_path in sorted(Path(cards_dir).glob("*.json")):
        card = render_release_card(facts_path, repo_root)
        path = facts_path.with_suffix(".md")
        path.write_text(card)
        written.append(path)
        root = Path(repo_root) if repo_root is not None else facts_path.resolve().parents[1]
        folder = _release_checkpoint(json.loads(facts_path.read_text()), root)
        if folder is not None:
            folders.append(complete_checkpoint_folder(folder, card=card) / "README.md")
    return written + folders


# ----------------------------------------------------------------------------------------------------------------
# Pushing
# ----------------------------------------------------------------------------------------------------------------
def push_encoder(
    folder: str | Path,
    repo_id: str,
    revision: str | None = None,
    private: bool = False,
    create_pr: bool = False,
    commit_message: str | None = None,
    facts: Mapping[str, Any] | None = None,
    token: str | None = None,
) -> str:
    """Push a checkpoint folder (weights, config, feature extractor, code, card) to ``repo_id``.

    The folder is completed in a temporary copy (:func:`complete_checkpoint_folder`), so the source is not
    modified. The card is rendered from the checkpoint and ``facts`` when ``facts`` are given (keeping the licence
    of the folder's own card unless ``facts`` name one), else the folder's own ``README.md`` is kept (a converted,
    released or hand-written card), else rendered without facts (licence ``unknown``). ``revision`` names
    a branch (created from ``main`` if needed); ``create_pr`` opens a pull request instead of committing. Returns
    the commit URL (the pull request URL with ``create_pr``).
    """
    import tempfile

    from huggingface_hub import HfApi

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{folder} is not a checkpoint folder (no config.json); pass the folder saved by save_pretrained."
        )
    if not _HUB_ID.fullmatch(repo_id):
        raise ValueError(f"repo_id must look like 'user/name' (or 'name' in your namespace); got {repo_id!r}.")
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    if revision is not None and not create_pr:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "checkpoint"
        shutil.copytree(folder, staged, ignore=shutil.ignore_patterns("checkpoint-*", "runs", "__pycache__", ".*", LOCK_NAME))
        keep_card = facts is None and (folder / "README.md").is_file()
        card = (folder / "README.md").read_text() if keep_card else None
        complete_checkpoint_folder(staged, card=card, facts=facts, repo_id=repo_id)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=staged,
            revision=revision,
            create_pr=create_pr,
            commit_message=commit_message or "Upload BrainMass checkpoint",
        )
    return info.pr_url if create_pr and info.pr_url else info.commit_url


def push_model_to_hub(
    model,
    repo_id: str,
    *,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    max_shard_size: int | str | None = "50GB",
    tags: list[str] | None = None,
    facts: Mapping[str, Any] | None = None,
) -> str:
    """``model.push_to_hub`` (same arguments as transformers') with the BrainMass card, the feature extractor and
    the code; transformers' own push would write its generic "Model Card for Model ID". ``facts``: as
    :func:`render_model_card`; ``tags`` are added to the card's tags. ``commit_description`` is not used."""
    import tempfile

    facts = {**(facts or {}), "tags": [*(facts or {}).get("tags", []), *(tags or [])]}
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, max_shard_size=max_shard_size)
        return push_encoder(
            tmp, repo_id, revision=revision, private=bool(private), create_pr=create_pr,
            commit_message=commit_message, facts=facts, token=token,
        )


class HubCodeCallback(TrainerCallback):
    """Makes every revision the Trainer pushes (``push_to_hub=True``, ``hub_strategy="every_save"``) loadable:
    before each upload of ``args.output_dir`` it writes the config, code, feature extractor and card there (the
    Trainer copies only config + weights from the checkpoint folder)."""

    def __init__(self, facts: Mapping[str, Any] | None = None):
        self.facts = facts

    def on_push_begin(self, args, state, control, model=None, **kwargs):
        if model is None:
            return
        unwrapped = getattr(model, "module", model)
        unwrapped.config.save_pretrained(args.output_dir)
        status = (
            f"Weights: an intermediate pretraining revision (step {state.global_step}), pushed while training; "
            "pin the final release's revision for downstream use."
        )
        facts = {**(self.facts or {}), "status": status}
        complete_checkpoint_folder(args.output_dir, facts=facts, repo_id=args.hub_model_id)
