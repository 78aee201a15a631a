# Shared defaults and helpers of deploy/gpu/vllm/*.sh (sourced, not run). Every default is an environment
# variable, so install.sh, serve.sh and sweep.sh agree on paths without being told twice.
# shellcheck shell=bash

KIT_DIR=${KIT_DIR:-/tmp/kit}                      # where the kit's parts were copied; unpacked in $KIT_DIR/kit
SITE=${SITE:-/tmp/vllm-site}                      # pip install --target: vLLM, Locust, tokenswarm
MODEL_DIR=${MODEL_DIR:-$KIT_DIR/kit/model/llama-8b-shape}
SERVED_NAME=${SERVED_NAME:-llama-8b}              # the model name in requests
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
WORK=${WORK:-/tmp/vllm-work}                      # server.log, server.pid, run/ (the run folder)
PY=${PY:-python3}
NCPU=$(nproc 2>/dev/null || echo 1)
SERVER_CPUS=${SERVER_CPUS:-0-5}                   # vLLM's API server and engine core
CLIENT_CPUS=${CLIENT_CPUS:-6-$((NCPU - 1))}       # tokenswarm's master and workers, vllm bench

_me=$(basename "$0" .sh)
say() { echo "[$_me] $*"; }
die() { echo "[$_me] error: $*" >&2; exit 2; }

# The environment every vLLM process here needs: no network, no usage reports, and NVLink multicast off
# (NCCL, PyTorch, NVSHMEM): on shared GPU hosts a program using it can take the host's GPUs down.
offline_env() {
    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
    export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 VLLM_ALLREDUCE_USE_SYMM_MEM=0
    # flashinfer is not in the kit: without this vLLM 0.26 imports it for top-k/top-p sampling and fails
    export VLLM_USE_FLASHINFER_SAMPLER=0
    export PYTHONUNBUFFERED=1
}

# cpus_ok LIST: whether every CPU of a taskset list (0-5,8) exists on this machine
cpus_ok() {
    local part lo hi
    [[ $1 =~ ^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$ ]] || return 1
    IFS=, read -ra parts <<<"$1"
    for part in "${parts[@]}"; do
        lo=${part%-*}; hi=${part#*-}
        ((lo <= hi && hi < NCPU)) || return 1
    done
}

# pin_prefix CPUS: set PIN to the command prefix that runs a command on those CPUs (taskset -c CPUS), or to
# nothing, with a warning, where that cannot be done
PIN=()
pin_prefix() {
    if command -v taskset >/dev/null && cpus_ok "$1"; then
        PIN=(taskset -c "$1")
    else
        echo "[$_me] warning: not pinning to CPUs $1 (this machine has $NCPU, or no taskset)" >&2
        PIN=()
    fi
}

# pin CPUS CMD...: run CMD on those CPUs
pin() {
    pin_prefix "$1"
    shift
    "${PIN[@]}" "$@"
}

# http_ok URL: whether URL answers 200 within 3 s
http_ok() {
    "$PY" - "$1" <<'EOF' 2>/dev/null
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

# http_get URL FILE: save URL's body to FILE (exit 1 on failure)
# launch_and_wait LOG PIDFILE WAIT PATTERN CMD...: start the server CMD on $SERVER_CPUS in its own session,
# its output in LOG and its pid in PIDFILE; with WAIT 1, wait until http://$HOST:$PORT/health answers (up to
# $WAIT_S s), then show LOG's lines matching PATTERN; returns 1 when the server exits or never answers
launch_and_wait() {
    local log=$1 pidfile=$2 wait_ready=$3 pattern=$4 pid t0 el
    shift 4
    pin_prefix "$SERVER_CPUS"
    setsid nohup "${PIN[@]}" "$@" >"$log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$pidfile"
    say "pid $pid"
    ((wait_ready)) || return 0
    t0=$(date +%s)
    while :; do
        el=$(($(date +%s) - t0))
        if ! kill -0 "$pid" 2>/dev/null; then
            say "the server exited after ${el}s; the end of $log:"
            tail -n 40 "$log"
            return 1
        fi
        if http_ok "http://$HOST:$PORT/health"; then
            say "READY after ${el}s: http://$HOST:$PORT (model $SERVED_NAME)"
            grep -E "$pattern" "$log" | tail -n 8 | sed "s/^/[$_me] log: /" || true
            return 0
        fi
        if ((el >= WAIT_S)); then
            say "/health did not answer within ${WAIT_S}s (server pid $pid left running); the end of $log:"
            tail -n 40 "$log"
            return 1
        fi
        sleep 3
    done
}

http_get() {
    "$PY" - "$1" "$2" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=30) as r, open(sys.argv[2], "wb") as fh:
        fh.write(r.read())
except Exception as e:
    print(f"GET {sys.argv[1]}: {e}", file=sys.stderr)
    sys.exit(1)
EOF
}

# What the GPU spends, for tokenswarm's --gpu-metrics. gpu_metrics_start sets GPU_ARGS: GPU_METRICS (a DCGM
# exporter's URL) when set; else, where NVML's binding imports (nvidia-ml-py, in the GPU image), it starts
# `tokenswarm gpu-exporter` on 127.0.0.1:GPU_EXPORTER_PORT (9401; log $WORK/gpu-exporter.log) and points at it;
# else nothing, with a line saying so. GPU_METRICS=none: nothing. gpu_metrics_stop stops that exporter.
# shellcheck disable=SC2034  # GPU_ARGS is read by the scripts that source this file
GPU_ARGS=()
GPU_EXPORTER_PID=0
# shellcheck disable=SC2034
gpu_metrics_start() {
    local port=${GPU_EXPORTER_PORT:-9401} url _
    GPU_ARGS=()
    if [ "${GPU_METRICS:-}" = none ]; then
        return 0
    elif [ -n "${GPU_METRICS:-}" ]; then
        GPU_ARGS=(--gpu-metrics "$GPU_METRICS")
        return 0
    fi
    if ! "$PY" -c 'import pynvml; pynvml.nvmlInit()' 2>/dev/null; then
        say "no NVML here (nvidia-ml-py, driver): no GPU figures (or set GPU_METRICS to a DCGM exporter's URL)"
        return 0
    fi
    [[ $port =~ ^[0-9]+$ ]] || die "GPU_EXPORTER_PORT=$port: must be a port number"
    url=http://127.0.0.1:$port/metrics
    "$PY" -m tokenswarm gpu-exporter --host 127.0.0.1 --port "$port" >"$WORK/gpu-exporter.log" 2>&1 &
    GPU_EXPORTER_PID=$!
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        http_ok "$url" && break
        sleep 0.5
    done
    if http_ok "$url"; then
        say "gpu-exporter (pid $GPU_EXPORTER_PID) on $url"
        GPU_ARGS=(--gpu-metrics "$url")
    else
        say "warning: gpu-exporter did not answer; no GPU figures. Its log:"
        cat "$WORK/gpu-exporter.log" >&2 || true
        gpu_metrics_stop
    fi
}
gpu_metrics_stop() {
    if ((GPU_EXPORTER_PID)); then
        kill "$GPU_EXPORTER_PID" 2>/dev/null || true
        wait "$GPU_EXPORTER_PID" 2>/dev/null || true
    fi
    GPU_EXPORTER_PID=0
}
