#!/usr/bin/env bash
# The GPU check of issue #18 (docs/gpu.md, "Running the GPU check"), in two modes:
#
#   bash tools/gpu_check.sh prepare [--no-download] [--av-version V]   # here: fill .whl/ and .gpu/, print the device call
#   bash tools/gpu_check.sh device [OUTDIR]                           # there: tests, bench, runs -> $OUT (else OUTDIR)
#
# device writes three files: gpu_check.log (every step's whole output), gpu_check.json (everything
# measured) and gpu_check.md (the summary). Each step runs under its own time limit, cut to what the
# overall budget (GPU_CHECK_BUDGET_S, default 420 s) has left, so a hung step is recorded and the later
# steps still run. Without a CUDA device it stops at once with one line and exit 2. The logic is in
# tools/gpu_check.py; this file only orders the steps.
set -u
cd "$(dirname "$0")/.." || exit 2
PY=${GPU_CHECK_PYTHON:-python3}
SITE=${GPU_CHECK_SITE:-/tmp/site}
BATCHES=1,8,32,128,512

prepare() {
    # The development venv has pip and the project; python3 otherwise.
    local py=$PY
    if [ -z "${GPU_CHECK_PYTHON:-}" ] && [ -x .venv/bin/python ]; then py=.venv/bin/python; fi
    exec "$py" tools/gpu_check.py prepare "$@"
}

step() {  # step NAME LIMIT_S [--tail N] -- CMD...
    "$PY" tools/gpu_check.py step "$@"
}

say() {
    echo "gpu_check: $*" | tee -a "$LOG"
}

measure() {
    # Most telling first: the GPU tests and the GPU bench, then the runs, then the CPU-side figures.
    step install 120 -- "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target "$SITE" .whl/*.whl
    export PYTHONPATH=$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}
    step env 60 -- "$PY" tools/gpu_check.py env --out "$GPU_CHECK_WORK/env.json"
    step pytest_gpu 150 --tail 12 -- "$PY" -m pytest -m gpu tests/engines -ra -p no:cacheprovider
    step bench_torch 90 --tail 8 -- "$PY" -m pipeline.cli bench --backend torch --batches $BATCHES
    step bench_torch_api 90 --tail 12 -- "$PY" tools/gpu_check.py bench-api --batches $BATCHES
    local backend clip
    for backend in torch onnxruntime; do
        for clip in crowd:facenet_crowd_walking_1080p.mp4 pexels:pexels_woman_emotions.mp4; do
            step "run_${backend}_${clip%%:*}" 75 -- "$PY" -m pipeline.cli run ".gpu/media/${clip#*:}" \
                --out "$GPU_CHECK_WORK/run_${backend}_${clip%%:*}" --backend "$backend" --detector yunet --overwrite
        done
    done
    step bench_onnxruntime 90 --tail 8 -- "$PY" -m pipeline.cli bench --backend onnxruntime --batches $BATCHES
    # tests/engines imports no mediapipe (none is installed there); TensorRT tests skip visibly.
    step pytest_engines 180 -- "$PY" -m pytest -m "not gpu and not slow and not browser" tests/engines \
        -q -ra -p no:cacheprovider
}

device() {
    local out=${OUT:-${1:-}}
    if [ -z "$out" ]; then
        echo "gpu_check: device mode needs \$OUT or an output folder argument; nothing measured" >&2
        exit 2
    fi
    mkdir -p "$out" && out=$(cd "$out" && pwd) || exit 2
    LOG=$out/gpu_check.log
    : >"$LOG"
    export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
    timeout -k 5 90 "$PY" tools/gpu_check.py preflight --log "$LOG"
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        [ "$rc" -eq 2 ] || say "preflight ended with rc $rc (124: it hung for 90 s); nothing measured" >&2
        exit 2
    fi
    GPU_CHECK_WORK=$(mktemp -d /tmp/gpu_check.XXXXXX) || exit 2
    export GPU_CHECK_WORK GPU_CHECK_LOG=$LOG
    export GPU_CHECK_DEADLINE=$(($(date +%s) + ${GPU_CHECK_BUDGET_S:-420}))
    export EMOSTREAM_SHARED_DIR=$PWD/.gpu EMOSTREAM_MODELS_DIR=$PWD/.gpu/models
    export EMOSTREAM_CACHE_DIR=$GPU_CHECK_WORK/cache GLOG_minloglevel=2
    measure
    if ! timeout -k 5 60 "$PY" tools/gpu_check.py combine --work "$GPU_CHECK_WORK" --out "$out" \
        --prepared .gpu/prepared.json; then
        say "combine failed: $LOG holds every step's output"
        exit 1
    fi
    cat "$out/gpu_check.md"
    say "done: $out/gpu_check.log, gpu_check.json, gpu_check.md"
}

case "${1:-}" in
    prepare) shift; prepare "$@" ;;
    device) shift; device "$@" ;;
    *)
        echo "usage: bash tools/gpu_check.sh prepare [--no-download] [--av-version V] | device [OUTDIR]" >&2
        exit 2
        ;;
esac
