"""Long pretraining on a lent GPU, inside a fixed wall-clock budget (issue 10: schedule and size).

Runs several ``brainmass pretrain`` commands side by side on one GPU, each with ``--num_train_epochs 2000`` (the
paper's schedule) and a checkpoint every ``--save-every`` epochs, and stops them at ``--train-seconds``. The
authors' schedule is a 10-epoch warm-up and then a constant rate with a constant EMA momentum, so the checkpoint at
epoch N of such a run is what ``--num_train_epochs N`` gives: every saved checkpoint is a run of its own length.

Then every kept checkpoint is turned into an encoder folder (what ``brainmass pretrain`` writes to
``<output_dir>/encoder``) and screened with ``brainmass_hf.evaluation.evaluate`` (paper protocol, frozen readout,
10 splits, seed 0, random-init baseline left out) on each ``--eval`` cohort, several screens at a time. The screen is
a learning curve, not the reported result: the chosen encoders are evaluated again in full elsewhere.

Everything it writes goes to ``--out``: ``logs.tar.gz`` (``curve.json`` / ``curve.md``: one row per screened
checkpoint, with the seconds and epochs reached; each run's log and trainer state), and the last encoder of each run as
``<run>-e<epoch>.tar`` (split into ``.partNN`` pieces over ``--max-file-mib``), within ``--max-files`` files and
``--max-total-mib`` in all, dropping the lowest-priority encoders first (runs are in priority order).

    python benchmarks/gpu_pretrain.py --out "$OUT" --data .gpu_data/abide1_aal116,devfmri \\
        --run small-paper-s0:small::0 --run small-drop50-s0:small:pfc_drop_ratio=0.5:0 \\
        --eval abide=.gpu_data/abide1_aal116:diagnosis:site --eval devfmri --train-seconds 360

``--smoke`` runs the same steps at tiny size on any device (a check of the script, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20


def parse_run(spec: str) -> dict:
    """``name:preset:overrides:seed`` (overrides comma-separated ``key=value``, may be empty)."""
    parts = spec.split(":")
    if len(parts) != 4 or not parts[0] or not parts[1]:
        raise SystemExit(f"--run {spec!r}: expected name:preset:overrides:seed, e.g. small-s0:small:pfc_drop_ratio=0.5:0")
    return {"name": parts[0], "preset": parts[1], "overrides": parts[2], "seed": int(parts[3])}


def parse_eval(spec: str) -> dict:
    """``devfmri`` or ``name=folder:label_column:site_column`` (an npz bundle folder with ``subjects.csv``)."""
    if spec == "devfmri":
        return {"name": "devfmri"}
    name, _, rest = spec.partition("=")
    folder, label, site = (rest.split(":") + ["", ""])[:3]
    if not name or not folder or not label:
        raise SystemExit(f"--eval {spec!r}: expected devfmri or name=folder:label_column[:site_column]")
    return {"name": name, "folder": folder, "label": label, "site": site or None}


def pretrain_command(run: dict, a: argparse.Namespace, steps_per_epoch: int) -> list[str]:
    cmd = [
        sys.executable, "-m", "brainmass_hf.cli", "pretrain", "--data", a.data, "--preset", run["preset"],
        "--atlas_name", a.atlas_name, "--num_train_epochs", str(a.epochs), "--seed", str(run["seed"]),
        "--per_device_train_batch_size", str(a.batch_size), "--output_dir", str(a.work / run["name"]),
        "--save_strategy", "steps", "--save_steps", str(a.save_every * steps_per_epoch), "--save_total_limit", "1000",
        "--save_only_model", "true", "--logging_steps", str(steps_per_epoch), "--disable_tqdm", "true",
    ]
    if run["overrides"]:
        cmd += ["--config_overrides", run["overrides"]]
    if a.warmup_epochs is not None:
        cmd += ["--warmup_epochs", str(a.warmup_epochs)]
    return cmd + a.extra


def steps_per_epoch(data: str, batch_size: int) -> int:
    from brainmass_hf.data import pretraining_corpus

    n = len(pretraining_corpus([part for part in data.split(",") if part]))
    return -(-n // batch_size)  # the Trainer keeps the last short batch (drop_last off on one process)


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for path in run_dir.glob("checkpoint-*"):
        if (path / "model.safetensors").exists() and (path / "trainer_state.json").exists():
            found.append((int(path.name.split("-")[1]), path))
    return sorted(found)


def train(runs: list[dict], a: argparse.Namespace, spe: int) -> dict:
    """Start every run, report progress, stop them all at ``a.train_seconds``; returns per-run timing."""
    procs, logs, started = {}, {}, time.time()
    # runs side by side must not oversubscribe the cores: each gets its own share of threads
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads_per_run), "PYTHONUNBUFFERED": "1"}
    for run in runs:
        logs[run["name"]] = open(a.work / f"{run['name']}.log", "w")
        procs[run["name"]] = subprocess.Popen(
            pretrain_command(run, a, spe), cwd=ROOT, stdout=logs[run["name"]], stderr=subprocess.STDOUT,
            start_new_session=True, env=env,
        )
        print(f"[{0:5.0f} s] started {run['name']}: {' '.join(pretrain_command(run, a, spe)[3:])}", flush=True)
    saved_at: dict[str, dict[int, float]] = {run["name"]: {} for run in runs}
    checked_alive = False
    while time.time() - started < a.train_seconds:
        time.sleep(2)
        now = time.time() - started
        for run in runs:
            for step, _ in checkpoints(a.work / run["name"]):
                saved_at[run["name"]].setdefault(step, round(now, 1))
        if not checked_alive and now > a.fail_fast_seconds:
            checked_alive = True
            dead = [name for name, p in procs.items() if p.poll() not in (None, 0)]
            for name in dead:
                logs[name].flush()
                print(f"[{now:5.0f} s] {name} FAILED (exit {procs[name].returncode}); log tail:", flush=True)
                print("".join(open(a.work / f"{name}.log").readlines()[-25:]), flush=True)
            if len(dead) == len(procs):
                raise SystemExit("every run failed early; nothing to screen")
        if all(p.poll() is not None for p in procs.values()):
            break
        if int(now) % 30 < 2:
            done = {name: max(saved_at[name], default=0) // spe for name in saved_at}
            print(f"[{now:5.0f} s] epochs saved so far: {done}", flush=True)
    for name, p in procs.items():
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for name, p in procs.items():
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
        logs[name].close()
    elapsed = time.time() - started
    for run in runs:  # checkpoints written in the last two seconds
        for step, _ in checkpoints(a.work / run["name"]):
            saved_at[run["name"]].setdefault(step, round(elapsed, 1))
    return {name: {"exit_code": p.returncode, "seconds_at_save": saved_at[name]} for name, p in procs.items()}


def to_encoder(checkpoint: Path, out: Path, dtype: str = "float32") -> Path:
    """The online encoder of a pretraining ``checkpoint`` as an encoder folder, its weights stored in ``dtype``
    (``bfloat16`` halves what must come back from the device; ``from_pretrained`` keeps the stored dtype)."""
    import torch

    from brainmass_hf import BrainMassFeatureExtractor, BrainMassForPreTraining

    model = BrainMassForPreTraining.from_pretrained(checkpoint)
    model.brainmass.to(getattr(torch, dtype)).save_pretrained(out)
    BrainMassFeatureExtractor.from_pretrained(checkpoint).save_pretrained(out)
    return out


def archive(folder: Path, tar_path: Path, compress: str) -> Path:
    """``folder`` as ``tar_path`` (plain tar) or ``tar_path.xz`` (xz: about 30 % smaller for bfloat16 weights,
    whose exponent bytes repeat); the multi-threaded ``xz`` binary where present, else Python's lzma."""
    with tarfile.open(tar_path, "w") as tar:
        tar.add(folder, arcname=folder.name)
    if compress == "none":
        return tar_path
    xz = shutil.which("xz")
    if xz:
        subprocess.run([xz, "-T0", "-6", "-f", str(tar_path)], check=True)
    else:
        import lzma

        with open(tar_path, "rb") as src, lzma.open(f"{tar_path}.xz", "wb", preset=6) as dst:
            shutil.copyfileobj(src, dst)
        tar_path.unlink()
    return Path(f"{tar_path}.xz")


def unpack(source: Path, dest: Path) -> list[Path]:
    """Rejoin the ``.partNN`` pieces in ``source``, open every ``<run>-e<epoch>.tar[.xz]`` and return the encoder
    folders written under ``dest`` (what ``pack`` sent back from the device)."""
    dest.mkdir(parents=True, exist_ok=True)
    archives: dict[str, list[Path]] = {}
    for path in sorted(source.iterdir()):
        name, dot, suffix = path.name.rpartition(".")
        if dot and suffix.startswith("part") and suffix[4:].isdigit():
            archives.setdefault(name, []).append(path)
        elif path.name.endswith((".tar", ".tar.xz")):
            archives.setdefault(path.name, []).append(path)
    folders = []
    for name, pieces in sorted(archives.items()):
        joined = dest / name
        with open(joined, "wb") as out:
            for piece in sorted(pieces):
                out.write(piece.read_bytes())
        with tarfile.open(joined, "r:*") as tar:
            tops = {member.name.split("/")[0] for member in tar.getmembers()}
            tar.extractall(dest, filter="data")
        joined.unlink()
        folders += [dest / top for top in sorted(tops)]
    return folders


def screen_epochs(epochs: list[int]) -> list[int]:
    """Every checkpoint up to 4, then doubling steps (50, 100, 200, 400, ...), and always the last."""
    if len(epochs) <= 4:
        return epochs
    keep, target = [], epochs[0]
    for e in epochs:
        if e >= target:
            keep.append(e)
            target = 2 * e
    return sorted(set(keep + [epochs[-1]]))


def screen(a: argparse.Namespace) -> None:
    """One screen: the encoder of ``--checkpoint`` on every ``--eval`` cohort; writes ``--result`` (JSON)."""
    import torch

    from brainmass_hf.data import load_devfmri, load_npz_bundle
    from brainmass_hf.evaluation import evaluate

    torch.set_num_threads(a.threads)
    if not Path(a.encoder).exists():
        to_encoder(Path(a.checkpoint), Path(a.encoder))
    row = {}
    for cohort in map(parse_eval, a.eval):
        if cohort["name"] == "devfmri":
            data, kwargs = load_devfmri(), {"label_column": "label"}
        else:
            folder = Path(cohort["folder"])
            data = load_npz_bundle(folder / "timeseries.npz", folder / "subjects.csv", label_column=cohort["label"],
                                   site_column=cohort["site"])
            kwargs = {"label_column": "label", "site_column": "site" if cohort["site"] else None}
        report = evaluate(a.encoder, data, protocols="paper", n_repeats=a.repeats, seed=0, show_progress=False,
                          include_random_baseline=False, pretrained_on_eval_scans=True, **kwargs)
        summary = report.to_dict()
        for entry in summary["results"]:
            entry.pop("splits", None)  # per-split records stay out of the curve file
        row[cohort["name"]] = summary
    Path(a.result).write_text(json.dumps(row, default=str))


def paper_auc(summary: dict, method: str) -> str:
    """``mean ± std`` of the paper protocol's AUC for ``method`` in an ``EvaluationReport.to_dict()``."""
    from brainmass_hf.evaluation import format_mean_std

    for entry in summary.get("results", []):
        if entry.get("protocol") == "paper" and entry.get("method") == method:
            return format_mean_std(entry["summary"]["auc"])
    return "n/a"


def run_screens(encoders: list[tuple[str, int, Path]], a: argparse.Namespace, deadline: float) -> list[dict]:
    pending = list(encoders)
    running: list[tuple[subprocess.Popen, str, int, Path]] = []
    rows = []
    while (pending or running) and time.time() < deadline:
        while pending and len(running) < a.parallel_screens:
            name, epoch, checkpoint = pending.pop(0)
            folder = a.work / "encoders" / f"{name}-e{epoch}"
            result = folder.with_suffix(".screen.json")
            cmd = [sys.executable, __file__, "screen", "--checkpoint", str(checkpoint), "--encoder", str(folder),
                   "--result", str(result), "--threads", str(a.threads), "--repeats", str(a.repeats)]
            for spec in a.eval:
                cmd += ["--eval", spec]
            log = open(folder.with_suffix(".screen.log"), "w")
            env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
            running.append((proc, name, epoch, result))
        time.sleep(1)
        for item in list(running):
            proc, name, epoch, result = item
            if proc.poll() is not None:
                running.remove(item)
                row = {"run": name, "epoch": epoch, "exit_code": proc.returncode}
                if proc.returncode == 0:
                    row["cohorts"] = json.loads(result.read_text())
                rows.append(row)
                print(f"screened {name} epoch {epoch}: exit {proc.returncode}", flush=True)
    for proc, name, epoch, _ in running:
        proc.kill()
        rows.append({"run": name, "epoch": epoch, "exit_code": "killed at the deadline"})
    for name, epoch, _ in pending:
        rows.append({"run": name, "epoch": epoch, "exit_code": "not started before the deadline"})
    return rows


def pack(a: argparse.Namespace, runs: list[dict], last: dict[str, tuple[int, Path, Path]]) -> list[str]:
    """Logs first, then each run's last encoder in run order, within the file count and size limits."""
    out = Path(a.out)
    with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
        for path in [a.work / "curve.json", a.work / "curve.md"]:  # inside the tar: one file of the allowance
            tar.add(path, arcname=path.name)
        for path in sorted(a.work.glob("*.log")) + sorted(a.work.glob("encoders/*.screen.*")):
            tar.add(path, arcname=path.relative_to(a.work))
        for run in runs:
            for step, ckpt in checkpoints(a.work / run["name"])[-1:]:
                tar.add(ckpt / "trainer_state.json", arcname=f"{run['name']}/checkpoint-{step}/trainer_state.json")
    files = ["logs.tar.gz"]
    used = sum((out / f).stat().st_size for f in files)
    left_out = []
    for run in runs:
        if run["name"] not in last:
            continue
        epoch, folder, checkpoint = last[run["name"]]
        if a.pack_dtype != "float32":  # the packed copy only; screens used the float32 folder
            folder = to_encoder(checkpoint, a.work / "packed" / folder.name, a.pack_dtype)
        tar_path = archive(folder, a.work / f"{run['name']}-e{epoch}.tar", a.compress)
        size = tar_path.stat().st_size
        piece = int(a.max_file_mib * MIB)
        pieces = -(-size // piece)
        if len(files) + pieces > a.max_files or used + size > a.max_total_mib * MIB:
            left_out.append(f"{tar_path.name} ({size / MIB:.1f} MiB)")
            continue
        if pieces == 1:
            shutil.copy(tar_path, out / tar_path.name)
            files.append(tar_path.name)
        else:
            with open(tar_path, "rb") as src:
                for i in range(pieces):
                    part = f"{tar_path.name}.part{i:02d}"
                    (out / part).write_bytes(src.read(piece))
                    files.append(part)
        used += size
    print(f"packed {len(files)} files, {used / MIB:.1f} MiB; left out: {left_out or 'nothing'}", flush=True)
    return left_out


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["unpack"]:
        p = argparse.ArgumentParser(prog="gpu_pretrain.py unpack", description=unpack.__doc__)
        p.add_argument("source", help="the folder the device's files came back to")
        p.add_argument("dest", help="where the encoder folders are written")
        args = p.parse_args(argv[1:])
        for folder in unpack(Path(args.source), Path(args.dest)):
            print(folder)
        return None
    if argv[:1] == ["screen"]:
        p = argparse.ArgumentParser(prog="gpu_pretrain.py screen")
        p.add_argument("--checkpoint", required=True, help="a pretraining checkpoint folder")
        p.add_argument("--encoder", required=True, help="its encoder folder (written from --checkpoint if absent)")
        p.add_argument("--result", required=True)
        p.add_argument("--eval", action="append", required=True)
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--repeats", type=int, default=10)
        return screen(p.parse_args(argv[1:]))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="Everything after -- goes to every "
                                "brainmass pretrain command (e.g. -- --tf32 true).")
    p.add_argument("--out", required=True, help="folder for logs.tar.gz (curves and logs) and the encoder tars")
    p.add_argument("--work", default="runs/gpu_pretrain", help="folder for the runs' checkpoints")
    p.add_argument("--data", default="devfmri", help="--data of brainmass pretrain")
    p.add_argument("--atlas_name", default="AAL-116")
    p.add_argument("--run", action="append", required=True, help="name:preset:overrides:seed (repeatable)")
    p.add_argument("--eval", action="append", default=[], help="devfmri or name=folder:label[:site] (repeatable)")
    p.add_argument("--epochs", type=int, default=2000, help="--num_train_epochs (the paper's 2000)")
    p.add_argument("--warmup_epochs", type=float, default=None, help="default: the authors' 10")
    p.add_argument("--batch-size", type=int, default=64, help="per-device batch (the authors' 64)")
    p.add_argument("--save-every", type=int, default=50, help="epochs between checkpoints")
    p.add_argument("--train-seconds", type=float, default=360)
    p.add_argument("--threads-per-run", type=int, default=max(1, (os.cpu_count() or 2) // 4),
                   help="OMP_NUM_THREADS of each pretraining run (default: a quarter of the cores)")
    p.add_argument("--fail-fast-seconds", type=float, default=90, help="a run dead by then is reported at once")
    p.add_argument("--screen-seconds", type=float, default=120, help="wall-clock budget of the screens")
    p.add_argument("--parallel-screens", type=int, default=8)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads per screen")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--max-files", type=int, default=8)
    p.add_argument("--max-file-mib", type=float, default=15)
    p.add_argument("--max-total-mib", type=int, default=62)
    p.add_argument("--pack-dtype", default="float32", choices=["float32", "bfloat16"],
                   help="dtype of the encoder weights sent back (bfloat16: half the size)")
    p.add_argument("--compress", default="none", choices=["none", "xz"], help="xz the encoder tars")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script, measures nothing")
    argv, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    a = p.parse_args(argv)
    a.extra = extra
    runs = [parse_run(spec) for spec in a.run]
    if len({run["name"] for run in runs}) < len(runs):
        raise SystemExit(f"--run names must differ: {[run['name'] for run in runs]}")
    if a.smoke:
        a.epochs, a.save_every, a.repeats = 4, 1, 2
    a.work = Path(a.work).resolve()
    a.out = Path(a.out).resolve()
    shutil.rmtree(a.work, ignore_errors=True)
    (a.work / "encoders").mkdir(parents=True)
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    spe = steps_per_epoch(a.data, a.batch_size)
    print(f"{spe} steps per epoch at batch {a.batch_size}", flush=True)
    timing = train(runs, a, spe)
    train_seconds = time.time() - t0
    print(f"training stopped after {train_seconds:.0f} s", flush=True)

    encoders, last = [], {}
    for run in runs:
        found = checkpoints(a.work / run["name"])
        by_epoch = {step // spe: path for step, path in found}
        for epoch in screen_epochs(sorted(by_epoch)):
            encoders.append((run["name"], epoch, by_epoch[epoch]))
        if by_epoch:  # the last encoder of each run is written now (it is packed); the screens write the others
            epoch = max(by_epoch)
            folder = to_encoder(by_epoch[epoch], a.work / "encoders" / f"{run['name']}-e{epoch}")
            last[run["name"]] = (epoch, folder, by_epoch[epoch])
    # last encoders first, so the deadline cuts the middle of the curves, never their ends
    order = sorted(encoders, key=lambda e: (last[e[0]][0] != e[1], e[1]))
    rows = run_screens(order, a, time.time() + a.screen_seconds) if a.eval else []
    for row in rows:
        row["seconds"] = timing[row["run"]]["seconds_at_save"].get(row["epoch"] * spe)
    rows.sort(key=lambda r: (r["run"], r["epoch"]))
    curve = {"steps_per_epoch": spe, "batch_size": a.batch_size, "train_seconds": round(train_seconds),
             "runs": runs, "timing": timing, "rows": rows, "extra_args": a.extra}
    (a.work / "curve.json").write_text(json.dumps(curve, indent=1, default=str))
    names = [cohort["name"] for cohort in map(parse_eval, a.eval)]
    lines = ["| run | epoch | seconds | " + " | ".join(f"{n} paper AUC | {n} raw FC" for n in names) + " |",
             "|---" * (3 + 2 * len(names)) + "|"]
    for row in rows:
        cells = []
        for n in names:
            summary = row.get("cohorts", {}).get(n, {})
            cells += [paper_auc(summary, "BrainMass"), paper_auc(summary, "raw FC")]
        lines.append(f"| {row['run']} | {row['epoch']} | {row['seconds']} | " + " | ".join(cells) + " |")
    (a.work / "curve.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    pack(a, runs, last)


if __name__ == "__main__":
    main()
