#!/usr/bin/env bash
# The GPU checks in one go, for a machine with a CUDA GPU (CI has none): the GPU tests, then the
# paper-profile benchmarks on the GPU. Writes OUT/gpu_tests.log and OUT/benchmarks/*.{md,json,png}.
#
#   bash benchmarks/gpu_check.sh OUT [PEER] [BENCHMARKS...]
#
# PEER: the official HomoODE code (default ../shared/peers/homoode-official); BENCHMARKS: names of
# bench_NAME.py to run (default: homoode_official nesterov harness). Uses the python on the PATH
# (PYTHON=... to choose) with src/ on PYTHONPATH, so it runs from a checkout without installing.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bash benchmarks/gpu_check.sh OUT [PEER] [BENCHMARKS...]}
peer=${2:-../shared/peers/homoode-official}
shift $(( $# < 2 ? $# : 2 ))
benches=${*:-homoode_official nesterov harness}
python=${PYTHON:-python3}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$out/benchmarks"
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
$python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" \
    | tee -a "$out/gpu.txt"
$python -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$out/gpu_tests.log" \
    || status=1
for name in $benches; do
    args=(--profile paper --out "$out/benchmarks")
    [[ $name == homoode_official ]] && args+=(--peer "$peer")
    $python "benchmarks/bench_$name.py" "${args[@]}" || status=1
done
exit $status
