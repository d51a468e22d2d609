#!/usr/bin/env bash
# Train on a borrowed GPU machine that has python3 with a CUDA PyTorch but no internet and takes a
# small upload: `prepare` here, copy the repository (with .whl/ and .devdata/train/) there, `run` there.
#
#   bash tools/gpu_box.sh prepare [PYTHON_VERSION]          # here: wheels for that Python (default 3.12), packed data
#   bash tools/gpu_box.sh run CONFIG BUDGET_S OUT_DIR        # there: GPU tests, then tools/gpu_train.py
#
# The wheels are unbake's import-time needs that such images lack (pydantic and its parts,
# pedalboard to read the packed stems, platformdirs); PyTorch, numpy, scipy and PyYAML come with
# the image. PyAV is not needed there: tools/gpu_train.py reads the stems with pedalboard.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
prepare)
  py="${2:-3.12}"
  rm -rf .whl && mkdir -p .whl
  py_here="${PYTHON:-python}"  # the project's environment (an activated venv)
  "$py_here" -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    pydantic pydantic_core annotated-types typing-inspection typing-extensions pedalboard platformdirs
  PYTHONPATH=src "$py_here" tools/pack_training_set.py configs/train_small_deep_nosynthbass.yaml .devdata/train --kbps 160
  du -sh .whl .devdata/train
  ;;
run)
  config="$2" budget="$3" out="$4"
  mkdir -p "$out"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/unbake-site .whl/*.whl
  export PYTHONPATH="/tmp/unbake-site:src" PYTHONUNBUFFERED=1
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/machine.txt"
  python3 -m pytest -q -rs tests/engine/test_cuda.py 2>&1 | tail -15 | tee "$out/gpu_tests.txt" || true
  python3 tools/gpu_train.py "$config" --out /tmp/unbake-run --budget-s "$budget" --export "$out/model.pt" 2>&1 \
    | grep -v "prepared [0-9]" | tee "$out/log.txt"
  ;;
*)
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
  ;;
esac
