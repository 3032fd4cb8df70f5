"""The one small harness every benchmark script here shares: the device and machine description, precision
(autocast), timing (interleaved medians, a profiler table), peak memory, and the JSON / Markdown reports.

Importing it puts the repository root on ``sys.path``, so the scripts run from a checkout without installing
``brainmass_hf``. ``benchmarks/gpu_pretrain.py`` and ``gpu_run.sh`` may import it too.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

_HERE = Path(__file__).resolve().parent
for _path in (_HERE.parent, _HERE):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

__all__ = [
    "PRECISION_DTYPES", "PeakMemory", "RssSampler", "autocast", "cpu_flags", "cpu_model", "device_name", "fmt_number",
    "is_oom",
    "json_line", "load_average", "machine_info", "interleaved_medians", "profile_step", "sync", "timed",
    "write_reports",
]

# the dtype a precision name runs its matrix products in (fp32/tf32: float32 storage)
PRECISION_DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# ------------------------------------------------------------------------------------------------------------
# Machine
# ------------------------------------------------------------------------------------------------------------
def _cpu_flag_list() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    return next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])


def cpu_flags() -> list[str]:
    """The bf16/AMX-related flags of this CPU (empty when /proc/cpuinfo is absent)."""
    return [f for f in _cpu_flag_list()
            if f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8", "avx512_fp16")]


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (what ``uptime`` prints), rounded; None where the OS has none."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def cpu_model() -> str:
    """CPU model name and its bf16 matrix extensions (AMX / AVX512-BF16), from /proc/cpuinfo when present."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                platform.machine())
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    extras = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return name + (f" ({', '.join(extras)})" if extras else "")


def device_name(device: torch.device) -> str:
    """The GPU's name on CUDA, else the CPU model (with its bf16 extensions)."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()


def machine_info(device: torch.device) -> dict:
    info = {
        "device_name": device_name(device),
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": load_average(),
        "device": str(device),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except Exception:  # pragma: no cover
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
    return info


# ------------------------------------------------------------------------------------------------------------
# Timing and memory
# ------------------------------------------------------------------------------------------------------------
def sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class RssSampler:
    """Peak resident set size of this process (bytes), sampled every few ms in a thread (CPU runs)."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = None
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _rss(self) -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self._page
        except OSError:  # not Linux: lifetime peak (KiB on Linux, bytes on macOS)
            scale = 1 if sys.platform == "darwin" else 1024
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(self.interval)

    def __enter__(self):
        self.peak = self._rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def is_oom(exc: BaseException) -> bool:
    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(torch.cuda, "OutOfMemoryError", None)) if t is not None)
    if oom_types and isinstance(exc, oom_types):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()



def autocast(device: torch.device, precision: str):
    """``torch.autocast`` for ``bf16`` / ``fp16``, a disabled autocast (fp32 as built) otherwise."""
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=device.type, dtype=dtype)
    return torch.autocast(device_type=device.type, enabled=False)



class PeakMemory:
    """Peak memory over several timed calls of one implementation: CUDA ``max_memory_allocated`` (reset before
    each call) or, on a CPU, the process RSS sampled by :class:`RssSampler` during each call."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0

    def measure(self, fn):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            out = fn()
            sync(self.device)
            self.peak = max(self.peak, torch.cuda.max_memory_allocated(self.device))
            return out
        with RssSampler() as sampler:
            out = fn()
        self.peak = max(self.peak, sampler.peak)
        return out

    @property
    def kind(self) -> str:
        return "max_memory_allocated" if self.device.type == "cuda" else "peak RSS (process)"


def interleaved_medians(fns: dict, steps: int, warmup: int, device: torch.device) -> dict:
    """Times the zero-argument callables in ``fns`` back to back: ``warmup`` untimed rounds, then ``steps``
    rounds, the order rotated every round so that no callable always runs first on a noisy machine.

    Returns ``{name: {"times_s": [...], "median_s": float, "peak_bytes": int, "memory_kind": str, "last": out}}``.
    """
    names = list(fns)
    stats = {n: {"times_s": [], "memory": PeakMemory(device), "last": None} for n in names}
    for _ in range(max(warmup, 0)):
        for n in names:
            stats[n]["last"] = fns[n]()
    sync(device)
    for i in range(steps):
        for n in names[i % len(names):] + names[: i % len(names)]:
            t0 = time.perf_counter()
            stats[n]["last"] = stats[n]["memory"].measure(fns[n])
            sync(device)
            stats[n]["times_s"].append(time.perf_counter() - t0)
    for n in names:
        st = stats[n]
        st["median_s"] = statistics.median(st["times_s"])
        st["peak_bytes"] = st["memory"].peak
        st["memory_kind"] = st.pop("memory").kind
    return stats


def profile_step(fn, device: torch.device, top: int = 15) -> list[dict]:
    """One call of ``fn`` under ``torch.profiler``: the ``top`` operators by self time (CPU, or CUDA on a GPU),
    each ``{"op", "self_ms", "share", "calls"}``; the full table goes to stderr."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        fn()
        sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = prof.key_averages()
    print(events.table(sort_by=key, row_limit=top, max_name_column_width=60), file=sys.stderr)
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    total = sum(getattr(e, attr, 0) for e in events) or 1
    rows = sorted(events, key=lambda e: getattr(e, attr, 0), reverse=True)[:top]
    return [{"op": e.key, "self_ms": round(getattr(e, attr, 0) / 1000.0, 2),
             "share": round(getattr(e, attr, 0) / total, 4), "calls": e.count} for e in rows]



def timed(fn, repeats: int, warmup: int, device: torch.device | None = None) -> tuple[float, list[float], object]:
    """``warmup`` untimed calls of ``fn``, then ``repeats`` timed ones (synchronised on CUDA): (median seconds,
    every time, the last output)."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        if device is not None:
            sync(device)
        t0 = time.perf_counter()
        out = fn()
        if device is not None:
            sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


# ------------------------------------------------------------------------------------------------------------
# Reports
# ------------------------------------------------------------------------------------------------------------
def json_line(result: dict) -> str:
    """One case as one JSON line, floats to 5 significant digits (per-step time lists are left to the ``--json``
    report)."""
    return json.dumps({k: (float(f"{v:.5g}") if isinstance(v, float) else v) for k, v in result.items()
                       if not isinstance(v, list)}, default=str)


def fmt_number(value, digits=1, suffix=""):
    """A table cell: ``–`` for None, a string as is, a number with thousands separators and ``digits`` decimals."""
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    return f"{value:,.{digits}f}{suffix}"


def write_reports(md_path: str | None, markdown_text: str, json_path: str | None, payload: dict) -> None:
    """Write the Markdown table and the JSON payload of a benchmark run where ``--md`` / ``--json`` point (each
    optional; folders are created). Every benchmark script in this folder reports through this."""
    if md_path:
        Path(md_path).parent.mkdir(parents=True, exist_ok=True)
        Path(md_path).write_text(markdown_text + "\n")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(payload, indent=2, default=str) + "\n")
