#!/usr/bin/env bash
# Prepares, on this (CPU) machine, what benchmarks/gpu_release.sh and gpu_pretrain.sh need carried to a lent GPU:
#   .gpu_data/abide1_aal116   the 938-scan corpus's ABIDE part from ../shared, its time series as float16 (the float32
#                             file is 66 MB, over the 64 MiB that can travel; largest change of any correlation in
#                             issue 10's run: 1.6e-4), with subjects.csv and the ROI table;
#   .whl/                     wheels of what the device image lacks (datasets and its dill/multiprocess, nilearn and
#                             nibabel for the reference step), for its Python 3.12.
# Both folders are git-ignored. Then, with the device tool:
#   run(command="bash benchmarks/gpu_release.sh $OUT", carry=[".gpu_data", ".whl"], timeout_s=595)
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="${1:-../shared/data/abide1_aal116}"
mkdir -p .gpu_data/abide1_aal116 .whl
grep -qx '/.gpu_data/' .git/info/exclude 2>/dev/null || echo '/.gpu_data/' >> .git/info/exclude
python3 - "$SRC" .gpu_data/abide1_aal116 <<'PY'
import shutil, sys
from pathlib import Path
import numpy as np
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
with np.load(src / "timeseries.npz") as bundle:
    np.savez_compressed(dst / "timeseries.npz", **{k: bundle[k].astype(np.float16) for k in bundle.files})
for name in ("subjects.csv", "rois_aal116.csv", "README.md"):
    if (src / name).exists():
        shutil.copy(src / name, dst / name)
print(f"{dst}: {sum(p.stat().st_size for p in dst.iterdir()) / 2**20:.1f} MiB")
PY
rm -f .whl/*.whl
for spec in datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 nilearn==0.14.1 nibabel==5.4.2; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any -d .whl "$spec"
done
# nilearn's wheel is 11 MB, 10 MB of it atlases, templates and viewer assets that the reference step never opens:
# dropped (with their RECORD lines), so the working tree, the data and the wheels stay under the 64 MiB that travels
python3 - .whl/nilearn-0.14.1-py3-none-any.whl <<'PY'
import sys, zipfile
from pathlib import Path
wheel = Path(sys.argv[1])
drop = ("nilearn/datasets/data/", "nilearn/_assets/", "/tests/")
slim = wheel.with_suffix(".slim")
with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as dst:
    for item in src.infolist():
        if any(d in item.filename for d in drop):
            continue
        data = src.read(item)
        if item.filename.endswith(".dist-info/RECORD"):
            data = b"".join(line for line in data.splitlines(keepends=True) if not any(d.encode() in line for d in drop))
        dst.writestr(item, data)
slim.replace(wheel)
PY
ls -la .whl
du -sh .gpu_data .whl
