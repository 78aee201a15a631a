#!/usr/bin/env bash
# Start SGLang's server in the background (setsid: it outlives this shell), pinned to SERVER_CPUS, serving the
# kit's Llama-3-8B-shaped model with random weights and its Prometheus /metrics (--enable-metrics), and wait
# until /health answers 200 (503 while it starts; on an H100 it was ready after 112 s, 57 of them capturing
# prefill CUDA graphs).
#
#   deploy/gpu/sglang/serve.sh [--no-wait] [extra `sglang.launch_server` flags...]
#
# The flags avoid what the kit leaves out: --attention-backend triton (Hopper's default, fa3, is the
# FlashAttention-3 library strip_kernel.py removed), --sampling-backend pytorch, --grammar-backend none.
# Env (defaults in common.sh): SITE, MODEL_DIR, SERVED_NAME, HOST, PORT (30000), WORK (server.log, server.pid),
# SERVER_CPUS (0-5), PY; MAX_RUNNING (empty: SGLang chooses; it chose 4096 on an H100), MEM_FRACTION (empty:
# SGLang's --mem-fraction-static), WAIT_S (420). Exit 0 once healthy (or at once with --no-wait); 1 when the
# server died or was not healthy in time (its log's tail is printed). Stop it: kill "$(cat $WORK/server.pid)".
set -euo pipefail
# shellcheck source=deploy/gpu/sglang/common.sh
. "$(dirname "$0")/common.sh"
MAX_RUNNING=${MAX_RUNNING:-}
MEM_FRACTION=${MEM_FRACTION:-}
WAIT_S=${WAIT_S:-420}
wait=1
if [ "${1:-}" = "--no-wait" ]; then wait=0; shift; fi

[ -d "$SITE/sglang" ] || die "$SITE/sglang is missing: run install.sh first (or set SITE)"
[ -f "$MODEL_DIR/config.json" ] || die "$MODEL_DIR/config.json is missing: run install.sh first (or set MODEL_DIR)"
[[ $WAIT_S =~ ^[0-9]+$ ]] || die "WAIT_S=$WAIT_S: must be a whole number of seconds"
[[ $MAX_RUNNING =~ ^[0-9]*$ ]] || die "MAX_RUNNING=$MAX_RUNNING: must be a whole number (or empty)"
mkdir -p "$WORK"
log=$WORK/server.log
pidfile=$WORK/server.pid
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    die "a server is already running (pid $(cat "$pidfile")); stop it first: kill $(cat "$pidfile")"
fi
http_ok "http://$HOST:$PORT/health" && die "something already answers on http://$HOST:$PORT"

sglang_env
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ -n "${CUDA_HOME:-}" ] || say "warning: no nvcc found and CUDA_HOME unset: SGLang's RoPE kernel is built with nvcc"

args=(--model-path "$MODEL_DIR" --load-format dummy --served-model-name "$SERVED_NAME" --host "$HOST"
      --port "$PORT" --enable-metrics --attention-backend triton --sampling-backend pytorch --grammar-backend none)
[ -n "$MAX_RUNNING" ] && args+=(--max-running-requests "$MAX_RUNNING")
[ -n "$MEM_FRACTION" ] && args+=(--mem-fraction-static "$MEM_FRACTION")
args+=("$@")
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.used,memory.total,driver_version \
    --format=csv,noheader | sed "s/^/[$_me] GPU: /"
say "starting on CPUs $SERVER_CPUS: $PY -m sglang.launch_server ${args[*]}"
say "log: $log"
ready_lines="KV Cache is allocated|max_total_num_tokens|Capture cuda graph end|max_running_requests|Load weight end"
launch_and_wait "$log" "$pidfile" "$wait" "$ready_lines" \
    "$PY" -m sglang.launch_server "${args[@]}"
