"""Smoke tests of the benchmark scripts (tiny settings, CPU; no timing assertions).

Run with ``pytest benchmarks/test_benchmarks_smoke.py`` (the project's ``testpaths`` is ``tests/``, so the default
``pytest`` run does not collect this file). They check that every mode runs and reports the fields the results
files are read for, and that the per-scan reference is the same model and the same FC as ours (otherwise its
ratio would compare different work).
"""

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

HERE = Path(__file__).resolve().parent
for _path in (HERE.parent, HERE):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

# every case's JSON line carries these (issue 9: device name, scans/s, achieved TFLOP/s, peak memory)
CASE_FIELDS = {"device_name", "preset", "batch_size", "precision", "scans_per_s", "tflops", "peak_memory_gib"}


def _load(name):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.slow  # 14 s on the shared 2-core machine under load (3 s quiet)
def test_pretraining_benchmark_tiny(tmp_path, capsys):
    bench = _load("benchmark_pretraining")
    out = tmp_path / "p.json"
    results = bench.main(["--device", "cpu", "--presets", "tiny", "--batch-sizes", "4", "--steps", "1",
                          "--warmup", "1", "--precision", "fp32", "--inputs", "fc,time_series",
                          "--num-rois", "20", "--timepoints", "40",
                          "--json", str(out), "--md", str(tmp_path / "p.md")])
    assert [r["status"] for r in results] == ["ok", "ok"]
    assert all(r["samples_per_s"] > 0 and math.isfinite(r["loss"]) for r in results)
    payload = json.loads(out.read_text())
    assert payload["machine"]["device"] == "cpu" and len(payload["results"]) == 2
    stdout = capsys.readouterr().out
    assert "| tiny | 4 | fp32 | fc |" in stdout
    lines = _json_lines(stdout)
    assert len(lines) == 2 and all(CASE_FIELDS <= set(line) for line in lines)
    # tiny is not in SPEC §6's table: its FLOPs are counted
    assert lines[0]["flops_source"].startswith("counted") and lines[0]["tflops"] > 0


def test_pretraining_benchmark_anchor_lookup():
    bench = _load("benchmark_pretraining")
    assert bench.ANCHOR[("small", 256)][0] == 605.0
    assert bench.ANCHOR[("large", 256)] is None
    table = bench.markdown_table(
        [{"preset": "small", "batch_size": 256, "precision": "fp32", "inputs": "fc", "status": "OOM",
          "error": "CUDA out of memory"}], bench.torch.device("cpu"))
    assert "OOM" in table


def test_flops_counted_close_to_spec():
    """The FLOP counter agrees with SPEC §6 where SPEC gives a number (small, R = 100: 6.2 G)."""
    bench = _load("benchmark_pretraining")
    spec = bench.GFLOPS_PER_SCAN.pop("small")
    try:
        counted, source = bench.flops_per_scan("small", 100)
    finally:
        bench.GFLOPS_PER_SCAN["small"] = spec
    assert source.startswith("counted") and abs(counted - spec) / spec < 0.05


@pytest.mark.slow  # 16 s on the shared 2-core machine under load (4 s quiet)
def test_reference_mode_tiny(tmp_path, capsys):
    bench = _load("benchmark_pretraining")
    results = bench.main(["--device", "cpu", "--presets", "tiny", "--batch-sizes", "4", "--steps", "2",
                          "--warmup", "0", "--precision", "fp32,bf16", "--timepoints", "40", "--reference",
                          "--num-rois", "20", "--profile",
                          "--json", str(tmp_path / "r.json"), "--md", str(tmp_path / "r.md")])
    assert [(r["mode"], r["status"], r["precision"]) for r in results] == [
        ("reference", "ok", "fp32"), ("reference", "ok", "bf16")]
    for r in results:
        assert r["parameters"] == r["reference_parameters"]  # the same model on both sides
        assert r["ratio"] == pytest.approx(r["scans_per_s"] / r["reference_scans_per_s"])
        assert math.isfinite(r["loss"]) and math.isfinite(r["reference_loss"])
        assert len(r["step_ms"]) == len(r["reference_step_ms"]) == 2
        assert any(row["op"] == "aten::addmm" for row in r["profile"] + r["reference_profile"])
    lines = _json_lines(capsys.readouterr().out)
    assert all(CASE_FIELDS | {"ratio", "reference_scans_per_s", "reference_peak_memory_gib"} <= set(line)
               for line in lines)
    assert "ratio (ours/ref)" in (tmp_path / "r.md").read_text()
    assert len(json.loads((tmp_path / "r.json").read_text())["results"]) == 2


def test_reference_is_the_same_model_and_fc():
    """The per-scan yardstick computes what ours computes: same parameter count per preset, nilearn's FC equal
    to our Ledoit-Wolf / Pearson FC, and a finite loss that trains all heads."""
    from brainmass_hf import BrainMassConfig, BrainMassForPreTraining
    from brainmass_hf.connectivity import functional_connectivity
    from reference_step import ReferencePreTraining, drop_timepoints, nilearn_fc

    config = BrainMassConfig.from_preset("tiny", num_rois=12)
    ref = ReferencePreTraining(config)
    assert sum(p.numel() for p in ref.parameters()) == sum(p.numel() for p in BrainMassForPreTraining(config).parameters())
    rng = np.random.default_rng(0)
    scans = rng.standard_normal((3, 40, 12)).astype(np.float32)
    for kind in ("ledoit_wolf", "pearson"):
        ours = functional_connectivity(torch.from_numpy(scans), kind=kind)
        theirs = torch.from_numpy(np.stack([nilearn_fc(s, kind) for s in scans]))
        assert torch.allclose(ours, theirs, atol=1e-5)
    assert drop_timepoints(scans[0], rng).shape == (40 - 8, 12)
    views = torch.from_numpy(np.stack([nilearn_fc(drop_timepoints(s, rng)) for s in scans]))
    loss, parts = ref.train()(views, views)
    loss.backward()
    assert math.isfinite(float(loss.detach())) and 0 <= float(parts["mrc_accuracy"]) <= 1
    assert ref.mrc_head[0].weight.grad is not None and ref.mask_token.grad is not None
    with torch.no_grad():  # move the online network away from its copy, then one EMA step halfway back
        for p in ref.online.parameters():
            p.add_(1.0)
    before = [p.clone() for p in ref.target.parameters()]
    ref.update_target(momentum=0.5)
    assert all(torch.allclose(t, b + 0.5) for t, b in zip(ref.target.parameters(), before))


def test_pfc_benchmark_tiny(tmp_path, capsys):
    bench = _load("benchmark_pfc")
    results = bench.main(["--scans", "6", "--timepoints", "30", "--num-rois", "8", "--repeats", "1",
                          "--warmup", "0", "--json", str(tmp_path / "f.json"), "--md", str(tmp_path / "f.md")])
    assert [r["fc_kind"] for r in results] == ["ledoit_wolf", "pearson"]
    for r in results:
        assert r["max_abs_diff_vs_nilearn"] < 1e-5 and r["mean_abs_offdiag_fc"] > 0.05  # not an identity FC
        assert {"device_name", "nilearn_ms", "ours_collator_ms", "ours_batched_ms", "ratio_collator",
                "ratio_batched", "ours_two_calls_ms", "ratio_two_calls", "nilearn_scans_per_s"} <= set(r)
        assert r["ratio_collator"] > 0 and r["ratio_batched"] > 0
    assert len(_json_lines(capsys.readouterr().out)) == 2
    assert "ratio (collator)" in (tmp_path / "f.md").read_text()


@pytest.mark.slow  # 11 s on the shared 2-core machine under load (4 s quiet)
def test_cpu_settings_tiny(tmp_path):
    bench = _load("cpu_settings")
    payload = bench.main(["--preset", "tiny", "--batch-size", "4", "--num-rois", "20", "--steps", "1", "--warmup", "0",
                          "--check-steps", "2", "--threads", "1,2", "--json", str(tmp_path / "s.json"),
                          "--md", str(tmp_path / "s.md")])
    seen = {(r["attention"], r["precision"], r["threads"]) for r in payload["settings"]}
    assert seen == {("sdpa", p, t) for p in ("fp32", "bf16") for t in (1, 2)} | {
        (a, p, 1) for a in ("sdpa_no_attn_dropout", "eager") for p in ("fp32", "bf16")}
    assert all(r["scans_per_s"] > 0 and r["tflops"] > 0 for r in payload["settings"])
    for check in payload["bf16_check"].values():
        assert len(check["fp32_losses"]) == 2 and math.isfinite(check["max_rel_diff"])
    assert {r["dropout_p"] for r in payload["sdpa"]} == {0.0, 0.1}
    assert all(isinstance(r["default_backend"], str) for r in payload["sdpa"])
    assert "Fastest:" in (tmp_path / "s.md").read_text()


def test_sdpa_report_and_gradient_checkpointing(capsys):
    bench = _load("benchmark_pretraining")
    results = bench.main(["--device", "cpu", "--presets", "tiny", "--batch-sizes", "4", "--steps", "1",
                          "--warmup", "0", "--precision", "fp32", "--sdpa-report", "--sdpa-batch", "2",
                          "--gradient-checkpointing"])
    sdpa = [r for r in results if r["mode"] == "sdpa"]
    assert {r["head_dim"] for r in sdpa} == {20, 10, 5} and {r["tokens"] for r in sdpa} == {100, 102}
    assert all("MATH_ms" in r and "default_backend" in r for r in sdpa)
    (step,) = [r for r in results if r["mode"] == "step"]
    assert step["status"] == "ok" and step["gradient_checkpointing"] is True


def test_collator_vs_device_random(tmp_path):
    bench = _load("collator_vs_device")
    results = bench.main(["--devices", "cpu", "--data", "random", "--batch-size", "4", "--timepoints", "40",
                          "--num-rois", "12", "--repeats", "1", "--warmup", "0", "--json", str(tmp_path / "c.json")])
    assert {(r["fc_kind"], r["placement"]) for r in results} == {
        (k, p) for k in ("ledoit_wolf", "pearson") for p in ("collator", "model")}
    assert all(r["total_ms"] >= 0 for r in results)


def test_cpu_matmul_reports_every_shape_in_both_precisions(tmp_path):
    bench = _load("cpu_matmul")
    results = bench.main(["--rows", "64", "--repeats", "2", "--json", str(tmp_path / "m.json"),
                          "--md", str(tmp_path / "m.md")])
    assert {(r["shape"], r["precision"]) for r in results} == {
        (s, p) for s in bench.SHAPES for p in ("fp32", "bf16")}
    assert all(r["gflops"] > 0 and r["rows"] == 64 for r in results)
    assert json.loads((tmp_path / "m.json").read_text())["results"] == results
    assert "GFLOP/s" in (tmp_path / "m.md").read_text()


def test_gpu_pretrain_run_specs_and_screened_epochs():
    script = _load("gpu_pretrain")
    assert script.parse_run("small-s0:small:pfc_drop_ratio=0.5:0") == {
        "name": "small-s0", "preset": "small", "overrides": "pfc_drop_ratio=0.5", "seed": 0}
    assert script.parse_run("base:base::1")["overrides"] == ""
    with pytest.raises(SystemExit, match="name:preset:overrides:seed"):
        script.parse_run("small:0")
    assert script.parse_eval("devfmri") == {"name": "devfmri"}
    assert script.parse_eval("abide=data/abide:diagnosis:site")["site"] == "site"
    # every checkpoint while there are few, then doubling epochs, and always the last one
    assert script.screen_epochs([1, 2]) == [1, 2]
    assert script.screen_epochs([25 * i for i in range(1, 11)]) == [25, 50, 100, 200, 250]


@pytest.mark.slow  # about 40 s on the quiet 2-core machine: a tiny run, its encoder, one screen, packing in pieces
def test_gpu_pretrain_tiny_end_to_end(tmp_path):
    import tarfile

    from brainmass_hf import BrainMassForPreTraining, BrainMassModel
    from safetensors.torch import load_file

    script = _load("gpu_pretrain")
    out, work = tmp_path / "out", tmp_path / "work"
    script.main(["--smoke", "--out", str(out), "--work", str(work), "--data", "devfmri", "--run", "t:tiny::0",
                 "--eval", "devfmri", "--train-seconds", "120", "--threads-per-run", "1", "--threads", "1",
                 "--max-file-mib", "0.25", "--", "--max_steps", "6"])
    with tarfile.open(out / "logs.tar.gz") as tar:
        curve = json.load(tar.extractfile("curve.json"))
        assert "t.log" in tar.getnames()
    assert curve["steps_per_epoch"] == 3  # 155 devfmri scans at the default batch of 64
    rows = curve["rows"]
    assert [row["epoch"] for row in rows] == [1, 2] and all(row["exit_code"] == 0 for row in rows)
    auc = next(r for r in rows[-1]["cohorts"]["devfmri"]["results"] if r["method"] == "BrainMass")["summary"]["auc"]
    assert 0.0 <= auc["mean"] <= 1.0 and auc["n"] == 2
    # the last encoder comes back in pieces under the size limit; joined, it is the checkpoint's online encoder
    parts = sorted(out.glob("t-e2.tar.part*"))
    assert len(parts) > 1 and all(p.stat().st_size <= 0.25 * 2**20 for p in parts)
    joined = tmp_path / "t-e2.tar"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(joined) as tar:
        tar.extractall(tmp_path / "back", filter="data")
    encoder = BrainMassModel.from_pretrained(tmp_path / "back" / "t-e2")
    online = BrainMassForPreTraining.from_pretrained(work / "t" / "checkpoint-6").brainmass
    for key, value in online.state_dict().items():
        torch.testing.assert_close(encoder.state_dict()[key], value, rtol=0, atol=0)
    assert load_file(tmp_path / "back" / "t-e2" / "model.safetensors")  # a plain safetensors file


@pytest.mark.slow  # about 2 minutes on the 2-core machine: the issue-18 GPU call end to end at tiny size on the CPU
def test_gpu_release_script_tiny_end_to_end(tmp_path):
    """`SMOKE=1 bash benchmarks/gpu_release.sh OUT` writes the speed table, the logs and two bfloat16 xz-packed
    encoders within the device's return limits (8 files, 16 MiB each); `gpu_pretrain.py unpack` rebuilds them as
    encoder folders whose weights are the checkpoints' online encoders in bfloat16."""
    import os
    import subprocess
    import tarfile

    from brainmass_hf import BrainMassForPreTraining, BrainMassModel

    out = tmp_path / "out"
    env = {**os.environ, "SMOKE": "1", "SPEED_S": "90", "TRAIN_S": "45", "OMP_NUM_THREADS": "1",
           "WORK": str(tmp_path / "work")}
    done = subprocess.run(["bash", str(HERE / "gpu_release.sh"), str(out)], cwd=HERE.parent, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all((out / f).stat().st_size <= 16 * 2**20 for f in files), files
    with tarfile.open(out / "speed.tar.gz") as tar:
        names = {Path(n).name for n in tar.getnames()}
        assert {"speed_presets.json", "speed_presets.md", "speed_reference.json"} <= names, names
        table = json.load(tar.extractfile("./speed_presets.json"))
    cases = {(r["preset"], r["batch_size"], r["precision"]) for r in table["results"] if r.get("status") == "ok"}
    assert cases == {("tiny", b, p) for b in (2, 4) for p in ("fp32", "bf16")}, cases
    script = _load("gpu_pretrain")
    folders = script.unpack(out, tmp_path / "back")
    assert sorted(f.name.rsplit("-e", 1)[0] for f in folders) == ["base-drop50-s0", "large-drop50-s0"]
    for folder in folders:
        encoder = BrainMassModel.from_pretrained(folder)
        run, epoch = folder.name.rsplit("-e", 1)
        checkpoints = sorted((tmp_path / "work" / run).glob("checkpoint-*"),
                             key=lambda p: int(p.name.split("-")[1]))
        online = BrainMassForPreTraining.from_pretrained(checkpoints[-1]).brainmass
        for key, value in online.state_dict().items():
            assert encoder.state_dict()[key].dtype == torch.bfloat16
            torch.testing.assert_close(encoder.state_dict()[key], value.to(torch.bfloat16), rtol=0, atol=0)


def test_tangent_cost_reports_both_implementations_and_their_agreement(tmp_path):
    record = _load("tangent_cost").main(["--data", str(tmp_path / "absent.npz"), "--num-scans", "6",
                                         "--num-rois", "5", "--json", str(tmp_path / "t.json")])
    assert record["source"] == "synthetic" and record["num_scans"] == 6
    assert {"torch_s", "nilearn_s", "covariances_s"} <= set(record)
    assert record["max_abs_difference"] < 1e-5
    assert json.loads((tmp_path / "t.json").read_text()) == record


def test_results_table_pairs_each_seed_with_its_own_baselines(tmp_path):
    """Two seeds: the model's cell is the mean of the seed means ± their std; its Δ vs raw FC is the mean of the
    per-seed paired differences."""
    def report(model_aucs, raw_aucs):
        splits = lambda aucs: [{"split": i, "auc": a} for i, a in enumerate(aucs)]  # noqa: E731
        results = [{"name": "paper", "method": m, "splits": splits(a)}
                   for m, a in (("BrainMass", model_aucs), ("raw FC", raw_aucs))]
        return json.dumps({"results": results})

    (tmp_path / "s0.json").write_text(report([0.6, 0.8], [0.5, 0.7]))
    (tmp_path / "s1.json").write_text(report([0.8, 1.0], [0.5, 0.7]))
    text = _load("results_table").main([f"tiny={tmp_path / 's0.json'},{tmp_path / 's1.json'}"])
    row = next(line for line in text.splitlines() if line.startswith("| tiny |"))
    assert row == "| tiny | 0.800 ± 0.141 | +0.200 ± 0.141 | — | — | 2 | 2 |"
    # --versus: a variant against the recipe it changes, seed k with seed k over the same splits
    (tmp_path / "v0.json").write_text(report([0.7, 0.8], [0.5, 0.7]))
    (tmp_path / "v1.json").write_text(report([0.8, 1.2], [0.5, 0.7]))
    text = _load("results_table").main([f"tiny={tmp_path / 's0.json'},{tmp_path / 's1.json'}",
                                        f"variant={tmp_path / 'v0.json'},{tmp_path / 'v1.json'}", "--versus", "tiny"])
    rows = {line.split(" | ")[0]: line for line in text.splitlines()}
    assert "Δ vs tiny" in text.splitlines()[0]
    assert rows["| tiny"].endswith("| — | 2 | 2 |")
    assert rows["| variant"] == "| variant | 0.875 ± 0.177 | +0.275 ± 0.177 | — | — | +0.075 ± 0.035 | 2 | 2 |"


@pytest.mark.slow  # about 30 s: one tiny encoder through the release path on 60 devfmri scans
def test_release_checkpoint_writes_folder_facts_rows_and_card(tmp_path, monkeypatch):
    """`release_checkpoint.py` turns an encoder that came back from the GPU into a released checkpoint: the weights
    in `checkpoints/<name>`, card rows computed by `evaluate` with every baseline (tangent_fc included), the recipe
    from `curve.json`, no PENDING, and a card the Hub can parse."""
    import shutil

    from huggingface_hub import ModelCard

    from brainmass_hf import BrainMassConfig, BrainMassFeatureExtractor, BrainMassModel
    from brainmass_hf.data import load_devfmri

    script = _load("release_checkpoint")
    root = tmp_path / "repo"
    shutil.copytree(HERE.parent / "model_cards", root / "model_cards")
    shutil.copytree(HERE.parent / "checkpoints", root / "checkpoints")
    encoder = tmp_path / "base-drop50-s0-e20"
    config = BrainMassConfig.from_preset("tiny", num_rois=116, atlas_name="AAL-116")
    BrainMassModel(config).to(torch.bfloat16).save_pretrained(encoder)
    BrainMassFeatureExtractor.from_config(config).save_pretrained(encoder)
    curve = {"steps_per_epoch": 15, "train_seconds": 300, "extra_args": ["--tf32", "true"],
             "runs": [{"name": "base-drop50-s0"}, {"name": "large-drop50-s0"}],
             "timing": {"base-drop50-s0": {"seconds_at_save": {"150": 100.0, "300": 201.5}}}}
    (tmp_path / "curve.json").write_text(json.dumps(curve))
    cohort = load_devfmri()
    labels = np.asarray(cohort["label"])
    few = cohort.select(sorted([*np.flatnonzero(labels == labels[0])[:30], *np.flatnonzero(labels != labels[0])[:30]]))
    monkeypatch.setattr(script, "cohorts", lambda abide, repeats: [
        (script.DEVFMRI, few, {"protocols": "paper", "n_repeats": repeats, "seed": 0, "show_progress": False})])
    assert script.main(["--encoder", str(encoder), "--name", "brainmass-base-aal116", "--curve",
                        str(tmp_path / "curve.json"), "--device", "one test GPU", "--repeats", "3",
                        "--repo-root", str(root), "--work", str(tmp_path / "work")]) == 0
    facts = json.loads((root / "model_cards" / "brainmass-base-aal116.json").read_text())
    (row,) = facts["results"]["rows"]
    assert set(row) >= {"BrainMass (this file)", "raw FC", "tangent_fc", "random init", "paired Δ vs tangent_fc"}
    assert "--num_train_epochs 20 " in facts["recipe"] and "300 steps, 202 s" in facts["recipe"]
    assert "weights" not in facts and "one test GPU" in facts["recipe"]
    folder = root / "checkpoints" / "brainmass-base-aal116"
    assert BrainMassModel.from_pretrained(folder).dtype == torch.bfloat16
    card = ModelCard.load(folder / "README.md")
    assert "PENDING" not in card.text and card.data.eval_results
    assert (root / "model_cards" / "brainmass-base-aal116.md").read_text() == (folder / "README.md").read_text()


def test_feature_throughput_reports_every_variant_beside_a_bound_of_the_same_products(tmp_path):
    bench = _load("feature_throughput")
    rows = bench.main(["--presets", "tiny", "--modes", "eager", "--batch-size", "4", "--num-rois", "20",
                       "--timepoints", "40", "--repeats", "1", "--warmup", "0",
                       "--json", str(tmp_path / "t.json"), "--md", str(tmp_path / "t.md")])
    assert {(r["precision"], r["compiled"]) for r in rows} == {("fp32", False), ("bf16", False)}
    assert all(r["scans_per_s"] > 0 and r["bound_scans_per_s"] > 0 and r["bound_over_achieved"] > 0 for r in rows)
    assert "bound ÷ achieved" in (tmp_path / "t.md").read_text()
    # the bound runs exactly the forward's counted FLOPs: the products-only program counts the same
    from torch.utils.flop_counter import FlopCounterMode

    from brainmass_hf import BrainMassConfig, BrainMassModel

    config = BrainMassConfig.from_preset("tiny", num_rois=20)
    per_scan = bench.forward_flops_per_scan(BrainMassModel(config))
    with FlopCounterMode(display=False) as counter:
        bench.products_only(config, 4, torch.float32)()
    assert counter.get_total_flops() == pytest.approx(4 * per_scan, rel=1e-6)


def test_step_profile_reports_every_phase_and_the_forward_parts(tmp_path):
    bench = _load("step_profile")
    payload = bench.main(["--preset", "tiny", "--batch-size", "4", "--num-rois", "20", "--timepoints", "40",
                          "--steps", "1", "--warmup", "0", "--top", "5", "--json", str(tmp_path / "s.json"),
                          "--md", str(tmp_path / "s.md")])
    assert set(payload["phases_s"]) == set(bench.PHASES) and all(v >= 0 for v in payload["phases_s"].values())
    parts = {p["part"] for p in payload["parts"]}
    assert {"forward", "backward", "optimizer", "ema", "fwd: attention", "fwd: feed-forward",
            "fwd: FC and pFC views"} <= parts
    assert len(payload["ops"]) == 5 and all(o["op"].startswith("aten::") for o in payload["ops"])
    assert "| **step** |" in (tmp_path / "s.md").read_text()


@pytest.mark.slow  # loads the bundled cohort and runs 116 ROIs x 2 splits of permutation importance
def test_explain_agreement_compares_both_rankings_on_the_same_splits(tmp_path):
    bench = _load("explain_agreement")
    result = bench.main(["--splits", "2", "--permutations", "1", "--top", "5", "--scans", "8",
                         "--json", str(tmp_path / "a.json"), "--md", str(tmp_path / "a.md")])
    assert -1.0 <= result["spearman_all"] <= 1.0 and 0 <= result["top5_overlap"] <= 5
    assert len(result["old_top"]) == len(result["new_top"]) == 5
    assert "Spearman" in (tmp_path / "a.md").read_text()


def test_recentre_diagnostic_fits_each_split_on_its_training_scans_and_restores_the_saved_reference(tmp_path):
    """Synthetic labelled scans and a tiny tangent encoder: four rows (encoder / twin × saved / per-split reference),
    each with one AUC per split, and the encoder folder's reference is what the diagnostic leaves in the model."""
    import datasets

    from brainmass_hf import BrainMassConfig, BrainMassModel
    from brainmass_hf.connectivity import functional_connectivity, spd_geometric_mean

    rng = np.random.default_rng(0)
    scans = [rng.standard_normal((50, 8)).astype(np.float32) for _ in range(24)]
    data = datasets.Dataset.from_dict({"time_series": [s.tolist() for s in scans], "label": [0, 1] * 12})
    data.save_to_disk(str(tmp_path / "data"))
    config = BrainMassConfig.from_preset("tiny", num_rois=8, input_space="tangent", intermediate_size=16, mrc_num_masked=4,
                                         projection_hidden_size=16, projection_size=8, predictor_hidden_size=16)
    model = BrainMassModel(config)
    model.set_tangent_reference(spd_geometric_mean(functional_connectivity(np.stack(scans), kind="ledoit_wolf")), 24)
    model.save_pretrained(tmp_path / "encoder")
    script = _load("recentre_diagnostic")
    records = script.main(["--encoder", str(tmp_path / "encoder"), "--data", str(tmp_path / "data"),
                           "--n-repeats", "3", "--json", str(tmp_path / "r.json")])
    assert [(r["model"], r["reference"]) for r in records] == [
        ("encoder", "saved"), ("encoder", "per split"), ("random-init twin", "saved"), ("random-init twin", "per split")]
    assert all(len(r[p]["aucs"]) == 3 for r in records for p in script.PROTOCOLS)
    assert json.loads((tmp_path / "r.json").read_text())["results"][0]["paper"]["mean"] == records[0]["paper"]["mean"]
    # the per-split fits run on the loaded model itself: its saved reference is put back afterwards
    loaded = BrainMassModel.from_pretrained(tmp_path / "encoder").eval()
    labels = np.array([0, 1] * 12)
    splits = [(np.arange(0, 24, 2).tolist() + [1, 3, 5, 7], [9, 11, 13, 15, 17, 19, 21, 23])]
    script._recentred_aucs(loaded, scans, labels, splits, seed=0)
    torch.testing.assert_close(loaded.embeddings.whitening, model.embeddings.whitening, rtol=0, atol=0)
    with pytest.raises(SystemExit):  # a correlation-token encoder has no reference to re-fit
        script.main(["--encoder", str(_plain_encoder(tmp_path)), "--data", str(tmp_path / "data")])


def _plain_encoder(tmp_path):
    from brainmass_hf import BrainMassConfig, BrainMassModel

    folder = tmp_path / "plain"
    BrainMassModel(BrainMassConfig.from_preset("tiny", num_rois=8, intermediate_size=16, mrc_num_masked=4)).save_pretrained(
        folder)
    return folder
