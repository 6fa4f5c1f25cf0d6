#!/usr/bin/env bash
# The GPU check in one device run (meant to end within 9 minutes on an H100): the tests
# marked gpu, then the GPU bench (benchmarks/gpu.py).
#
#   bash benchmarks/gpu_check.sh             # on a lent GPU machine, with its own python3
#   bash benchmarks/gpu_check.sh --dry-run   # anywhere: the same steps, tiny sizes, CPU
#
# It needs torch and torchvision, numpy, scipy, scikit-learn, pillow, onnx, onnxruntime,
# pytest and tqdm (the device machines' image has them: no virtual environment travels).
# Module 3's test also needs pycocotools: carry its wheel in .whl/ (see README, "GPU").
# Results: <gpu name>.json and the two logs in $OUT when set (the device tool brings that
# folder back), else in benchmarks/results/. PYTHON picks the interpreter.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
dry=""
[ "${1:-}" = "--dry-run" ] && dry="--dry-run"
out="${OUT:-benchmarks/results}"
[ -n "$dry" ] && [ -z "${OUT:-}" ] && out="$(mktemp -d)"  # a dry run leaves the results alone
mkdir -p "$out"
export PYTHONUNBUFFERED=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu-check-site \
        .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/gpu-check-site"
fi
"$PYTHON" - <<'PY'
import torch, torchvision
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {gpu}", flush=True)
PY
status=0
timeout 200 "$PYTHON" -m pytest -m gpu -q -p no:cacheprovider tests/test_engine.py \
    tests/test_gpu_share.py tests/test_predictor.py tests/test_train_detectnet.py \
    tests/test_train_mlp.py 2>&1 | tee "$out/gpu_tests.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
timeout 330 "$PYTHON" -m benchmarks --only gpu $dry --results "$out" 2>&1 | tee "$out/gpu_bench.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
exit $status
