#!/usr/bin/env bash
# The prepared GPU run (issue 15, item 1): every CUDA code path of astrobio, checked in one go.
#
#   benchmarks/gpu/prepare                      # here, with network: wheels into benchmarks/gpu/wheels/
#   bash benchmarks/gpu/run.sh [OUT_DIR]        # there: OUT_DIR, else $OUT
#   bash benchmarks/gpu/run.sh --dry-run        # print the plan (every command, with its timeout)
#
# Options: --only a,b (run only these steps; install always runs unless --no-install),
# --no-install (use the astrobio already importable by $PYTHON), --budget S (seconds for all
# steps, default 440: the run ends inside 8 minutes).
#
# Each step has its own timeout and log, and a failure does not stop the run. Steps run in
# priority order and are skipped once the budget is spent. The output folder ends with at most
# 7 files (the device tool brings back 8): summary.json (every step: status, rc, wall time, and
# the env report), report.md, smoke.json, kernel_check.json, bench_attention.json, train.json and
# steps.tar.gz (every log and raw output); they are rewritten after each step, so a run cut short
# still brings back what it did.
set -u

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PY="${PYTHON:-python3}"
WHEELS="${GPU_WHEELS:-$HERE/wheels}"
SCRATCH="${GPU_SCRATCH:-/tmp/astrobio-gpu}"
SITE="$SCRATCH/site"
DRY=0
ONLY=""
INSTALL=1
BUDGET="${GPU_RUN_BUDGET_S:-440}"
OUTDIR=""

usage() { sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --only) ONLY="$2"; shift ;;
        --no-install) INSTALL=0 ;;
        --budget) BUDGET="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        --__install) shift; exec_install=1; break ;;
        -*) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) OUTDIR="$1" ;;
    esac
    shift
done

# Internal: the install step (a separate invocation so that `timeout` can run it).
if [ "${exec_install:-0}" = 1 ]; then
    pip_install() {
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$SITE" "$@"
    }
    ls "$WHEELS"/*.whl >/dev/null 2>&1 || {
        echo "no wheels in $WHEELS: run benchmarks/gpu/prepare here first and carry that folder"
        exit 1
    }
    rm -rf "$SITE"
    if pip_install "$WHEELS"/*.whl; then
        echo "installed $(ls "$WHEELS"/*.whl | wc -l) wheels into $SITE"
        exit 0
    fi
    echo "the native root wheel was refused: installing the pure-Python one (NumPy twin)"
    rm -rf "$SITE"
    others=$(ls "$WHEELS"/*.whl | grep -v '/astrobio-[0-9]')
    # shellcheck disable=SC2086
    pip_install $others "$WHEELS"/fallback/*.whl || exit 1
    echo "installed the fallback root wheel into $SITE"
    exit 0
fi

if [ "$DRY" = 1 ]; then
    OUTDIR="${OUTDIR:-${OUT:-<out>}}"
else
    OUTDIR="${OUTDIR:-${OUT:-}}"
    if [ -z "$OUTDIR" ]; then
        echo "run.sh: give an output folder (argument or \$OUT)" >&2
        exit 2
    fi
    mkdir -p "$OUTDIR" "$SCRATCH"
    OUTDIR="$(cd "$OUTDIR" && pwd)"
fi
WORK="$SCRATCH/work"
AB=("$PY" -m astrobio_cli)

if [ "$DRY" = 0 ]; then
    rm -rf "$WORK" "$SCRATCH/runs"
    mkdir -p "$WORK" "$SCRATCH/data" "$SCRATCH/cache" "$SCRATCH/runs"
    : >"$WORK/steps.tsv"
    export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    : >"$SCRATCH/config.toml"  # an empty settings file: defaults, then the variables below
    export ASTROBIO_CONFIG="$SCRATCH/config.toml"
    export ASTROBIO_DATA_DIR="$SCRATCH/data" ASTROBIO_CACHE_DIR="$SCRATCH/cache"
    export ASTROBIO_RUNS_DIR="$SCRATCH/runs"
    if [ "$INSTALL" = 1 ]; then
        export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    fi
    cd "$ROOT" || exit 1
    echo "run.sh: output $OUTDIR, work $WORK, budget ${BUDGET}s, python $PY"
fi
T0=$(date +%s)

selected() {
    [ -z "$ONLY" ] && return 0
    case ",$ONLY," in *",$1,"*) return 0 ;; esac
    return 1
}

finish_step() {  # name status rc wall timeout reason command
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$WORK/steps.tsv"
    "$PY" "$HERE/report.py" --work "$WORK" --out "$OUTDIR" --budget "$BUDGET" \
        >>"$WORK/report.log" 2>&1 || echo "run.sh: report.py failed (see report.log)"
}

# step NAME TIMEOUT [--stdout FILE] [--skip REASON] [--show TEXT] -- COMMAND...
step() {
    local name="$1" limit="$2" stdout="" skip="" show=""
    shift 2
    while [ "$1" != "--" ]; do
        case "$1" in
            --stdout) stdout="$2"; shift 2 ;;
            --skip) skip="$2"; shift 2 ;;
            --show) show="$2"; shift 2 ;;
        esac
    done
    shift
    local cmd="${show:-$*}"
    if [ "$DRY" = 1 ]; then
        if [ -n "$skip" ]; then
            printf '%-25s skipped: %s\n%-25s   would run: %s\n' "$name" "$skip" "" "$cmd"
        else
            printf '%-25s timeout %4ss: %s%s\n' "$name" "$limit" "$cmd" "${stdout:+ > $stdout}"
        fi
        return 0
    fi
    selected "$name" || [ "$name" = install ] || return 0
    if [ -n "$skip" ]; then
        finish_step "$name" skipped "" 0 "$limit" "$skip" "$cmd"
        return 0
    fi
    local left=$((BUDGET - ($(date +%s) - T0)))
    if [ "$name" != install ] && [ "$left" -lt 20 ]; then
        finish_step "$name" skipped "" 0 "$limit" "out of time: ${left}s of the budget left" "$cmd"
        return 0
    fi
    [ "$left" -lt "$limit" ] && [ "$name" != install ] && limit="$left"
    echo "== $name (timeout ${limit}s): $cmd"
    local t1 rc status
    t1=$(date +%s.%N)
    if [ -n "$stdout" ]; then
        timeout -k 10 "$limit" "$@" >"$WORK/$stdout" 2>"$WORK/$name.log"
    else
        timeout -k 10 "$limit" "$@" >"$WORK/$name.log" 2>&1
    fi
    rc=$?
    local wall
    wall=$(awk -v a="$t1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
    case "$rc" in
        0) status=passed ;;
        124|137) status=timeout ;;
        *) status=failed ;;
    esac
    echo "   $status (rc $rc, ${wall}s)"
    finish_step "$name" "$status" "$rc" "$wall" "$limit" "" "$cmd"
    return 0
}

# -- the plan, in priority order ---------------------------------------------------------------
W="$WORK"
[ "$DRY" = 1 ] && W='<work>'
[ "$INSTALL" = 1 ] && step install 90 --show "$PY -m pip install --no-index --no-deps --target $SITE $WHEELS/*.whl (if the native root wheel is refused: $WHEELS/fallback/*.whl, the NumPy twin); PYTHONPATH=$SITE" \
    -- bash "$HERE/run.sh" --__install
step gpu-info 20 -- nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv
step native 30 -- "$PY" -c "import astrobio_cli._native as n; print(n.__file__)"
if [ "$DRY" = 0 ] && grep -Eq "^native	(failed|timeout)" "$WORK/steps.tsv"; then
    export ASTROBIO_NATIVE=0  # no extension: the NumPy twin (recorded in env.json's settings)
fi
step env 60 --stdout env.json -- "${AB[@]}" env --json
step smoke 180 -- "${AB[@]}" smoke --device cuda --require gpu,triton --json "$W/smoke.json"
step kernel-check 240 -- "$PY" "$HERE/kernel_check.py" --device cuda --json "$W/kernel_check.json"
BACKENDS=triton,sdpa-flash,sdpa-cudnn,sdpa-efficient,eager
bench() {  # D causal|full MODE
    local flag=() tag="$3"
    [ "$2" = causal ] && flag=(--causal)
    [ "$tag" = fwd+bwd ] && tag=fwdbwd
    step "bench-d$1-$2-$tag" 90 -- "${AB[@]}" bench attention --seq 1024,4096,16384 --batch 1 \
        --heads 16 --head-dim "$1" --dtype bf16 "${flag[@]}" --mode "$3" --backends "$BACKENDS" \
        --repeats 5 --device cuda --json "$W/bench-d$1-$2-$tag.json"
}
for causal in full causal; do
    for mode in fwd fwd+bwd; do bench 128 "$causal" "$mode"; done
done
# Decode (issue 17): one token against a 4096-long KV cache, GQA ratios 1, 4, 8 (Hkv 32, 8, 4).
step bench-decode 90 -- "${AB[@]}" bench attention --decode --cache-len 4096 --batch 16 \
    --heads 32 --head-dim 128 --dtype bf16 --backends "auto,$BACKENDS,sdpa-math" --repeats 20 \
    --device cuda --json "$W/bench-decode.json"
step train-bf16 150 --stdout train-bf16.json -- "${AB[@]}" train cube-unet --gpus 1 \
    --precision bf16 --steps 200 --out "$SCRATCH/runs/bf16" --json
step train-bf16-compile 240 --stdout train-bf16-compile.json -- "${AB[@]}" train cube-unet \
    --gpus 1 --precision bf16 --compile --steps 200 --out "$SCRATCH/runs/bf16-compile" --json
for causal in full causal; do
    for mode in fwd fwd+bwd; do bench 64 "$causal" "$mode"; done
done
# The selective SSM mixer (issue 17): reference scan, parallel scan, the Triton scan kernel and an
# attention mixer of the same width.
step bench-ssm 120 -- "${AB[@]}" bench attention --mixer ssm --seq 1024,4096 --batch 4 \
    --heads 4 --head-dim 64 --repeats 5 --device cuda --json "$W/bench-ssm.json"
step bench-train 120 --skip "astrobio bench train has no CUDA path yet (training/bench.py forces cpu=True); it would time the CPU" \
    -- "${AB[@]}" bench train cube-unet --json

if [ "$DRY" = 1 ]; then
    echo "budget: ${BUDGET}s for all steps, in this order; a step gets min(its timeout, what is left),"
    echo "and none starts with under 20s left. Output: $OUTDIR/{summary.json,report.md,smoke.json,"
    echo "kernel_check.json,bench_attention.json,train.json,steps.tar.gz}. flash-attn and xFormers:"
    echo "not benchmarked (no wheels for the image's torch are carried)."
    exit 0
fi
echo "run.sh: done in $(($(date +%s) - T0))s; see $OUTDIR/report.md"
exit 0
