"""Smoke tests of the benchmark scripts (tiny settings, CPU; no timing assertions).

Run with ``pytest benchmarks/test_benchmarks_smoke.py`` (the project's ``testpaths`` is ``tests/``, so the default
``pytest`` run does not collect this file).
"""

import importlib.util
import json
import math
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _load(name):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pretraining_benchmark_tiny(tmp_path, capsys):
    bench = _load("benchmark_pretraining")
    out = tmp_path / "p.json"
    results = bench.main(["--device", "cpu", "--presets", "tiny", "--batch-sizes", "4", "--steps", "1",
                          "--warmup", "1", "--precision", "fp32", "--inputs", "fc,time_series",
                          "--json", str(out), "--md", str(tmp_path / "p.md")])
    assert [r["status"] for r in results] == ["ok", "ok"]
    assert all(r["samples_per_s"] > 0 and math.isfinite(r["loss"]) for r in results)
    payload = json.loads(out.read_text())
    assert payload["machine"]["device"] == "cpu" and len(payload["results"]) == 2
    assert "| tiny | 4 | fp32 | fc |" in capsys.readouterr().out


def test_pretraining_benchmark_anchor_lookup():
    bench = _load("benchmark_pretraining")
    assert bench.ANCHOR[("small", 256)][0] == 605.0
    assert bench.ANCHOR[("large", 256)] is None
    table = bench.markdown_table(
        [{"preset": "small", "batch_size": 256, "precision": "fp32", "inputs": "fc", "status": "OOM",
          "error": "CUDA out of memory"}], bench.torch.device("cpu"))
    assert "OOM" in table


def test_collator_vs_device_random(tmp_path):
    bench = _load("collator_vs_device")
    results = bench.main(["--devices", "cpu", "--data", "random", "--batch-size", "4", "--timepoints", "40",
                          "--num-rois", "12", "--repeats", "1", "--warmup", "0", "--json", str(tmp_path / "c.json")])
    assert {(r["fc_kind"], r["placement"]) for r in results} == {
        (k, p) for k in ("ledoit_wolf", "pearson") for p in ("collator", "model")}
    assert all(r["total_ms"] >= 0 for r in results)
