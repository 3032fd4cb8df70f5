#!/usr/bin/env python
"""What one fit of the tangent-space baseline costs (issue 19): nilearn vs the package's batched torch code.

One fit = the geometric mean of N SPD matrices (the tangent space's reference point) + the tangent vectors of the
same N matrices. Inputs: N Ledoit-Wolf covariance matrices ``(R, R)``, from the first N scans of a cohort of
``(T, R)`` time series (``--data``, an ``.npz`` of ``ts_*`` arrays; default the ABIDE AAL-116 folder outside the
repository), or synthetic scans when the file is absent. Timed once each, in this process:

* ``nilearn``: ``ConnectivityMeasure(kind="tangent", cov_estimator=LedoitWolf(store_precision=False),
  vectorize=True).fit_transform(time_series)`` minus the time of its covariance step (timed separately);
* ``torch``: ``connectivity.spd_geometric_mean`` + ``tangent_space`` + ``sym_matrix_vector`` on the same covariances
  (float64, ``--threads`` torch threads);
* the largest absolute difference of the two outputs.

Example::

    python benchmarks/tangent_cost.py --num-scans 700 --json benchmarks/results/cpu_tangent_cost.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "abide1_aal116" / "timeseries.npz"


def load_scans(path: Path, num_scans: int, num_rois: int, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """The first ``num_scans`` scans of ``path`` (sorted keys), float64; synthetic ``(150, num_rois)`` scans if absent."""
    if path.is_file():
        bundle = np.load(path)
        keys = sorted(bundle.files)[:num_scans]
        return [bundle[k].astype(np.float64) for k in keys], str(path.name)
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((num_rois, num_rois)) / np.sqrt(num_rois)
    return [rng.standard_normal((150, num_rois)) @ mixing for _ in range(num_scans)], "synthetic"


def main(argv: list[str] | None = None) -> dict:
    """Time both implementations once; print and (with ``--json``) write the record."""
    import torch
    from nilearn.connectome import ConnectivityMeasure
    from sklearn.covariance import LedoitWolf

    from brainmass_hf.connectivity import spd_geometric_mean, sym_matrix_vector, tangent_space

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--num-scans", type=int, default=700)
    parser.add_argument("--num-rois", type=int, default=116, help="synthetic scans only")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-nilearn", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    scans, source = load_scans(args.data, args.num_scans, args.num_rois)
    t0 = time.perf_counter()
    covariances = np.stack([LedoitWolf(store_precision=False).fit(x).covariance_ for x in scans])
    cov_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = sym_matrix_vector(tangent_space(covariances, spd_geometric_mean(covariances))).numpy()
    record = {"source": source, "num_scans": len(scans), "num_rois": int(covariances.shape[-1]),
              "threads": args.threads, "machine": platform.processor() or platform.machine(),
              "torch_s": round(time.perf_counter() - t0, 2), "covariances_s": round(cov_s, 2)}
    if not args.skip_nilearn:
        measure = ConnectivityMeasure(kind="tangent", cov_estimator=LedoitWolf(store_precision=False),
                                      vectorize=True)
        t0 = time.perf_counter()
        theirs = measure.fit_transform(scans)
        record["nilearn_s"] = round(time.perf_counter() - t0 - cov_s, 2)
        record["max_abs_difference"] = float(np.abs(theirs - ours).max())
    print(json.dumps(record))
    if args.json is not None:
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return record


if __name__ == "__main__":
    main()
