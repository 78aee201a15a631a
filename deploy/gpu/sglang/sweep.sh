#!/usr/bin/env bash
# Load-test a running SGLang server (serve.sh) with tokenswarm (a master and WORKERS workers on CLIENT_CPUS, the
# engine's /metrics and the GPUs' power sampled at each level's edges), then with SGLang's own benchmark at the
# same levels (bench.sh), and pack the results into OUT_DIR: the vLLM kit's sweep and pack steps
# (../vllm/sweep.sh) with ENGINE=sglang, and bench.sh between them.
#
#   deploy/gpu/sglang/sweep.sh [--steps sweep,bench,pack] [--no-bench] OUT_DIR [-- extra tokenswarm sweep args]
#
# What the GPU spends: GPU_METRICS, a DCGM exporter's URL, is passed as --gpu-metrics. Unset, and where NVML's
# binding imports (nvidia-ml-py, in the GPU image), `tokenswarm gpu-exporter` is started on 127.0.0.1:
# GPU_EXPORTER_PORT (9401) for the sweep and stopped after it; GPU_METRICS=none leaves it out.
# Env: everything ../vllm/sweep.sh and bench.sh read (LEVELS, LEVEL_DURATION, WORKERS, INPUT_LEN, MAX_TOKENS,
# BENCH_*, PACK_MIB; HOST, PORT (30000), WORK (/tmp/sglang-work), RUN_NAME (sglang-h100), SITE, PY, ...).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=deploy/gpu/sglang/common.sh
. "$here/common.sh"
GPU_METRICS=${GPU_METRICS:-}
GPU_EXPORTER_PORT=${GPU_EXPORTER_PORT:-9401}

steps=sweep,bench,pack
out=""
while [ $# -gt 0 ]; do
    case $1 in
        --steps) [ $# -ge 2 ] || die "--steps needs a list (sweep,bench,pack)"; steps=$2; shift 2 ;;
        --steps=*) steps=${1#--steps=}; shift ;;
        --no-bench) steps=$(echo ",$steps," | sed 's/,bench,/,/; s/^,//; s/,$//'); shift ;;
        --) shift; break ;;
        -*) die "unknown option $1 (see the head of $0)" ;;
        *) [ -z "$out" ] || die "one OUT_DIR only ($out, $1)"; out=$1; shift ;;
    esac
done
[ -n "$out" ] || die "usage: $0 [--steps sweep,bench,pack] [--no-bench] OUT_DIR [-- tokenswarm args]"
for s in ${steps//,/ }; do
    case $s in sweep | bench | pack) ;; *) die "--steps: unknown step '$s' (sweep, bench, pack)" ;; esac
done
[[ $GPU_EXPORTER_PORT =~ ^[0-9]+$ ]] || die "GPU_EXPORTER_PORT=$GPU_EXPORTER_PORT: must be a port number"
has() { [[ ",$steps," == *",$1,"* ]]; }
export SITE PORT WORK ENGINE RUN_NAME
mkdir -p "$WORK"

exporter=0
stop_exporter() {
    if ((exporter)); then kill "$exporter" 2>/dev/null || true; wait "$exporter" 2>/dev/null || true; fi
    exporter=0
}
trap stop_exporter EXIT

rc=0
if has sweep; then
    gpu_args=()
    if [ "$GPU_METRICS" = none ]; then
        :
    elif [ -n "$GPU_METRICS" ]; then
        gpu_args=(--gpu-metrics "$GPU_METRICS")
    elif PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" "$PY" -c 'import pynvml; pynvml.nvmlInit()' 2>/dev/null; then
        repo=$(cd "$here/../../.." && pwd)
        PYTHONPATH="$repo/src:$SITE${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m tokenswarm gpu-exporter \
            --host 127.0.0.1 --port "$GPU_EXPORTER_PORT" >"$WORK/gpu-exporter.log" 2>&1 &
        exporter=$!
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            http_ok "http://127.0.0.1:$GPU_EXPORTER_PORT/metrics" && break
            sleep 0.5
        done
        if http_ok "http://127.0.0.1:$GPU_EXPORTER_PORT/metrics"; then
            say "gpu-exporter (pid $exporter) on http://127.0.0.1:$GPU_EXPORTER_PORT/metrics"
            gpu_args=(--gpu-metrics "http://127.0.0.1:$GPU_EXPORTER_PORT/metrics")
        else
            say "warning: gpu-exporter did not answer; the run goes on without GPU figures:"
            cat "$WORK/gpu-exporter.log" >&2 || true
            stop_exporter
        fi
    else
        say "no NVML here (nvidia-ml-py, driver): the run goes on without GPU figures (or set GPU_METRICS)"
    fi
    set +e
    bash "$here/../vllm/sweep.sh" --steps sweep "$out" -- "${gpu_args[@]}" "$@"
    src=$?
    set -e
    stop_exporter
    ((src == 0)) || rc=$src
fi
if has bench; then
    bash "$here/bench.sh" || rc=1
fi
if has pack; then
    bash "$here/../vllm/sweep.sh" --steps pack "$out" || rc=1
fi
exit "$rc"
