#!/usr/bin/env bash
# GMM EM speed on one GPU: gmmgan vs scikit-learn's array-API path on the same GPU (torch cuda
# tensors, array_api_dispatch=True) and scikit-learn on this machine's CPUs (float32, few
# iterations: at N=1M it takes tens of seconds per iteration).
#
# Usage (repository root, torch with CUDA, numpy, scikit-learn; no network needed):
#     OUT=/some/dir bash benchmarks/run_gpu.sh          # OUT defaults to ./bench_out
# Prints each table and writes $OUT/gmm_em_<step>.json and .log, and $OUT/machine.json. Whole run: at
# most BUDGET_S seconds (default 450): each step gets what is left, and steps that no longer fit are skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/bench_out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export SCIPY_ARRAY_API=1  # scikit-learn's array-API path needs it before scipy is imported
BUDGET_S="${BUDGET_S:-450}"
DEVICE="${DEVICE:-cuda}"  # DEVICE=cpu EXTRA="--n-samples 3000" tries the script without a GPU
EXTRA="${EXTRA:-}"
START=$(date +%s)

# The machine, as every benchmark JSON records it (benchmarks._common.machine_info), plus nvidia-smi.
{ nvidia-smi || true; } > "$OUT/nvidia-smi.txt" 2>&1
python -c "
from benchmarks._common import machine_info, write_json
m = machine_info(threads=True, cuda=True)
write_json('$OUT/machine.json', m)
print('torch', m['torch'], 'numpy', m['numpy'], 'sklearn', m['sklearn'], 'on', m.get('gpu', 'no GPU'))"

# step NAME MIN_SECONDS ARGS...: run one benchmark process if at least MIN_SECONDS are left.
step() {
    local name=$1 need=$2
    shift 2
    local left=$((BUDGET_S - ($(date +%s) - START)))
    if ((left < need)); then
        echo "=== $name: skipped, ${left}s left of ${BUDGET_S}s (needs ~${need}s)" | tee "$OUT/gmm_em_$name.log"
        return
    fi
    echo "=== $name (up to ${left}s): python -m benchmarks.gmm_em $*"
    # shellcheck disable=SC2086  # EXTRA is a list of flags
    timeout -k 5 "$left" python -m benchmarks.gmm_em "$@" $EXTRA --json "$OUT/gmm_em_$name.json" \
        > "$OUT/gmm_em_$name.log" 2>&1
    local rc=$?
    # The machine-info JSON is long; the tables and warnings are what matter on screen.
    grep -v -E '^[ {}\[]|^\s*\]' "$OUT/gmm_em_$name.log"
    ((rc == 0)) || echo "=== $name exited with $rc (124 = out of time)"
}

GPU_IMPLS=gmmgan,sklearn,sklearn-array-api
# A gmmgan error is recorded in the table instead of losing the baselines measured with it.
EXTRA="--allow-gmmgan-failure $EXTRA"
CPU_SK=(--skip-sklearn-f64 --sklearn-cpu-iters 1,2 --sklearn-cpu-repeats 1 --no-sklearn-cpu-warmup)

# (e) N=1M, D=64, K=64 full, float32: the headline target. ~2-3 min, mostly scikit-learn on CPU.
step e 60 --configs e --device $DEVICE --impls $GPU_IMPLS --iters 3,13 --repeats 5 "${CPU_SK[@]}"
# Same, TF32 matmuls allowed (gmmgan and the array-API path only; the CPU is unaffected).
step e_tf32 40 --configs e --device $DEVICE --impls gmmgan,sklearn-array-api --iters 3,13 --repeats 5 --allow-tf32
# (b), (c), (d) on the GPU too, scikit-learn CPU float32 for scale.
step bcd 90 --configs b,c,d --device $DEVICE --impls $GPU_IMPLS --iters 3,13 --repeats 5 "${CPU_SK[@]}"

echo "=== done in $(($(date +%s) - START))s; results in $OUT"
