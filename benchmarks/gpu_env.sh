# Sourced (from the repository root) by gpu_pretrain.sh and gpu_release.sh on a lent GPU: installs the carried wheels
# (.whl, from gpu_prepare.sh) where the device image lacks datasets or nilearn, puts the repository on PYTHONPATH,
# sets PY, and prints one line naming the library versions and the GPU (or stops the script if they do not import).
if [ -d .whl ] && ! python3 -c "import datasets, nilearn" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" HF_DATASETS_DISABLE_PROGRESS_BARS=1 PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
$PY -c "import torch, transformers, datasets, sklearn; print('torch', torch.__version__, '| cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-', '| transformers', transformers.__version__, '| datasets', datasets.__version__, '| sklearn', sklearn.__version__)" || exit 1
