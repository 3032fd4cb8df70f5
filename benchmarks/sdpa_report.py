"""Which scaled-dot-product-attention kernel runs for BrainMass's head sizes, and how fast each forced one is
(``benchmark_pretraining.py --sdpa-report``, ``cpu_settings.py``)."""

from __future__ import annotations

import contextlib
import statistics
import time
import warnings

import torch

from harness import device_name, sync


def sdpa_kernel_report(device: torch.device, precision: str, batch: int, num_rois: int = 100,
                       heads: tuple[int, ...] = (5, 10, 20), dropouts: tuple[float, ...] = (0.0, 0.1),
                       repeats: int = 5) -> list[dict]:
    """For each head count (head dim ``num_rois / heads``: 20, 10, 5 at R = 100), token count (``R`` for LRA,
    ``R + 2`` for the masked-ROI paths) and attention dropout: the backend SDPA picks by itself
    (``torch._fused_sdp_choice``) and the median forward + backward ms of every backend forced with
    ``torch.nn.attention.sdpa_kernel`` (``error`` with the reason where a backend cannot run these inputs).

    Inputs are ``(batch, heads, tokens, head_dim)`` in the precision's dtype (bf16 for ``bf16``, else fp32)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    backends = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION,
                SDPBackend.MATH]
    by_value = {b.value: name for name, b in SDPBackend.__members__.items()}  # a pybind enum
    rows = []
    for h in heads:
        if num_rois % h:
            continue
        for tokens in (num_rois, num_rois + 2):
            for p in dropouts:
                q, k, v = (torch.randn(batch, h, tokens, num_rois // h, device=device, dtype=dtype,
                                       requires_grad=True) for _ in range(3))
                row = {"mode": "sdpa", "device_name": device_name(device), "precision": precision,
                       "batch_size": batch, "heads": h, "head_dim": num_rois // h, "tokens": tokens,
                       "dropout_p": p}
                try:
                    row["default_backend"] = by_value.get(int(torch._fused_sdp_choice(q, k, v, None, p, False)), "?")
                except Exception as exc:  # noqa: BLE001 -- a private helper; report, do not fail
                    row["default_backend"] = f"unknown ({type(exc).__name__})"

                def call():
                    with warnings.catch_warnings():  # "kernel not used because ..." for each refused backend
                        warnings.simplefilter("ignore")
                        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=p)
                    out.sum().backward()

                for backend in backends + [None]:
                    name = "default" if backend is None else backend.name
                    try:
                        with sdpa_kernel([backend]) if backend is not None else contextlib.nullcontext():
                            call()  # warm-up; raises if the backend cannot take these inputs
                            times = []
                            for _ in range(repeats):
                                sync(device)
                                t0 = time.perf_counter()
                                call()
                                sync(device)
                                times.append(1000.0 * (time.perf_counter() - t0))
                        row[f"{name}_ms"] = round(statistics.median(times), 3)
                    except Exception as exc:  # noqa: BLE001
                        row[f"{name}_ms"] = "error: " + (str(exc).splitlines() or [type(exc).__name__])[0][:120]
                rows.append(row)
    return rows
