#!/usr/bin/env bash
# Start vLLM's OpenAI-compatible server in the background (setsid: it outlives this shell), pinned to
# SERVER_CPUS, serving the kit's Llama-3-8B-shaped model with random weights, and wait until /health answers.
#
#   deploy/gpu/vllm/serve.sh [--no-wait] [extra `vllm serve` flags...]
#
# Env (defaults in common.sh): SITE, MODEL_DIR, SERVED_NAME, HOST, PORT, WORK (server.log, server.pid),
# SERVER_CPUS (0-5), PY; MAX_NUM_SEQS (1024), GPU_UTIL (0.85), ATTN (FLASH_ATTN; empty: vLLM chooses),
# WAIT_S (420: seconds to wait for /health). Exit 0 once healthy (or at once with --no-wait); 1 when the
# server died or was not healthy in time (its log's tail is printed). Stop it: kill "$(cat $WORK/server.pid)".
set -euo pipefail
# shellcheck source=deploy/gpu/vllm/common.sh
. "$(dirname "$0")/common.sh"
MAX_NUM_SEQS=${MAX_NUM_SEQS:-1024}
GPU_UTIL=${GPU_UTIL:-0.85}
ATTN=${ATTN-FLASH_ATTN}
WAIT_S=${WAIT_S:-420}
wait=1
if [ "${1:-}" = "--no-wait" ]; then wait=0; shift; fi

[ -d "$SITE/vllm" ] || die "$SITE/vllm is missing: run install.sh first (or set SITE)"
[ -f "$MODEL_DIR/config.json" ] || die "$MODEL_DIR/config.json is missing: run install.sh first (or set MODEL_DIR)"
[[ $WAIT_S =~ ^[0-9]+$ ]] || die "WAIT_S=$WAIT_S: must be a whole number of seconds"
mkdir -p "$WORK"
log=$WORK/server.log
pidfile=$WORK/server.pid
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    die "a server is already running (pid $(cat "$pidfile")); stop it first: kill $(cat "$pidfile")"
fi
http_ok "http://$HOST:$PORT/health" && die "something already answers on http://$HOST:$PORT"

offline_env
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
export VLLM_LOGGING_LEVEL=${VLLM_LOGGING_LEVEL:-INFO}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

args=(serve "$MODEL_DIR" --load-format dummy --served-model-name "$SERVED_NAME" --host "$HOST" --port "$PORT"
      --max-num-seqs "$MAX_NUM_SEQS" --gpu-memory-utilization "$GPU_UTIL")
[ -n "$ATTN" ] && args+=(--attention-backend "$ATTN")
args+=("$@")
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.used,memory.total,driver_version \
    --format=csv,noheader | sed "s/^/[$_me] GPU: /"
say "starting on CPUs $SERVER_CPUS: $PY -m vllm.entrypoints.cli.main ${args[*]}"
say "log: $log"
# `python3 -m vllm.entrypoints.cli.main` is what the `vllm` console script runs
ready_lines="KV cache|Maximum concurrency|Graph capturing finished|torch.compile takes|Model loading took"
launch_and_wait "$log" "$pidfile" "$wait" "$ready_lines" \
    "$PY" -m vllm.entrypoints.cli.main "${args[@]}"
