#!/usr/bin/env bash
# Load-test a running vLLM server (serve.sh) with tokenswarm, then with vLLM's own `vllm bench serve` at the
# same concurrency levels, and pack the results into OUT_DIR for the trip home.
#
#   deploy/gpu/vllm/sweep.sh [--steps sweep,bench,pack] [--no-bench] OUT_DIR [-- extra tokenswarm sweep args]
#
# Steps (all three by default, in this order):
#   sweep  tokenswarm: a master and WORKERS local workers pinned to CLIENT_CPUS (the server has SERVER_CPUS),
#          the engine's /metrics sampled every METRICS_INTERVAL s and at each level's edges; the run folder is
#          $WORK/run. Also there: machine.txt, sample_stream.txt (one raw streamed answer), cpu-sweep.csv
#          (cpu_sample.py) and gpu-sweep.csv (nvidia-smi); with --gpu-metrics (GPU_METRICS, or a
#          `tokenswarm gpu-exporter` started where NVML imports: common.sh's gpu_metrics_start), gpu_metrics.csv
#          and power and J per output token per level.
#   bench  `vllm bench serve` for each of BENCH_LEVELS (largest first), max(BENCH_PROMPTS_PER_USER x C,
#          BENCH_MIN_PROMPTS) prompts at --max-concurrency C, all users at once, a seed of its own per level
#          (no prompt repeats another level's, so none is served from the prefix cache), detailed results in
#          $WORK/run/peers/vllm-bench-c<C>.json and the engine's /metrics just before and after each
#          (vllm-bench-c<C>.metrics-before.prom, .metrics-after.prom). Levels that would start after
#          BENCH_BUDGET_S seconds are skipped, with a message, and none runs past BENCH_BUDGET_S + 80 s.
#          --no-bench leaves this step out.
#   pack   the files of $WORK/run new since the last pack, with the server's log, as OUT_DIR/<RUN_NAME>-<time>.tar.gz,
#          split into pieces of PACK_MIB MiB when larger (join them with cat).
#
# Env (defaults in common.sh and here): LEVELS (1,2,4,...,2048), LEVEL_DURATION (a span per level: 6 s up to
# 64, then 8, 15, 30, 60 and 120 s, 275 s in all: 3 request lifetimes after the 20 % warm-up at the mean E2E
# measured on SGLang/H100 and vLLM/H200, where MIN_LIFETIMES lengthens a level that needs more; before, 10 s up to
# 64, then 15, 20, 40, 75 and 160 s, 380 s), MIN_LIFETIMES (3: a level whose window holds fewer mean request
# lifetimes runs on, by
# --min-lifetimes, for at most the budget's slack, SWEEP_BUDGET_S minus a minute minus the planned levels, beyond
# the longest level; 0: off), WORKERS (8), INPUT_LEN (128), MAX_TOKENS (128), METRICS_INTERVAL (1), ENGINE (vllm), RUN_NAME
# (vllm-h200), SWEEP_BUDGET_S (540: refuse a plan whose levels last longer than this minus 60 s), BENCH_LEVELS
# (LEVELS), BENCH_PROMPTS_PER_USER (3), BENCH_MIN_PROMPTS (10), BENCH_BUDGET_S (480), BENCH_SEED (1000, plus C),
# PACK_MIB (15); HOST, PORT, SERVED_NAME, MODEL_DIR, SITE, WORK, CLIENT_CPUS, PY.
set -euo pipefail
# shellcheck source=deploy/gpu/vllm/common.sh
. "$(dirname "$0")/common.sh"
repo=$(cd "$(dirname "$0")/../../.." && pwd)

DEFAULT_LEVELS=1,2,4,8,16,32,64,128,256,512,1024,2048
DEFAULT_DURATIONS=6s,6s,6s,6s,6s,6s,6s,8s,15s,30s,60s,120s
LEVELS=${LEVELS:-$DEFAULT_LEVELS}
if [ -z "${LEVEL_DURATION:-}" ]; then
    if [ "$LEVELS" = "$DEFAULT_LEVELS" ]; then LEVEL_DURATION=$DEFAULT_DURATIONS; else LEVEL_DURATION=10s; fi
fi
MIN_LIFETIMES=${MIN_LIFETIMES:-3}
WORKERS=${WORKERS:-8}
INPUT_LEN=${INPUT_LEN:-128}
MAX_TOKENS=${MAX_TOKENS:-128}
METRICS_INTERVAL=${METRICS_INTERVAL:-1}
ENGINE=${ENGINE:-vllm}
RUN_NAME=${RUN_NAME:-vllm-h200}
SWEEP_BUDGET_S=${SWEEP_BUDGET_S:-540}
BENCH_LEVELS=${BENCH_LEVELS:-$LEVELS}
BENCH_PROMPTS_PER_USER=${BENCH_PROMPTS_PER_USER:-3}
BENCH_MIN_PROMPTS=${BENCH_MIN_PROMPTS:-10}
BENCH_BUDGET_S=${BENCH_BUDGET_S:-480}
BENCH_SEED=${BENCH_SEED:-1000}
PACK_MIB=${PACK_MIB:-15}

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
has() { [[ ",$steps," == *",$1,"* ]]; }
for v in WORKERS INPUT_LEN MAX_TOKENS SWEEP_BUDGET_S BENCH_PROMPTS_PER_USER BENCH_MIN_PROMPTS BENCH_BUDGET_S \
         BENCH_SEED PACK_MIB; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v=${!v}: must be a whole number"
done
[[ $MIN_LIFETIMES =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "MIN_LIFETIMES=$MIN_LIFETIMES: must be a number, 0 or more"
[[ $LEVELS =~ ^[0-9]+(,[0-9]+)*$ ]] || die "LEVELS=$LEVELS: must be whole numbers separated by commas"
[[ $BENCH_LEVELS =~ ^[0-9]+(,[0-9]+)*$ ]] || die "BENCH_LEVELS=$BENCH_LEVELS: must be whole numbers separated by commas"

mkdir -p "$out" "$WORK"
out=$(cd "$out" && pwd)
RUN=$WORK/run
base=http://$HOST:$PORT
if [ -d "$repo/src/tokenswarm" ]; then
    export PYTHONPATH="$repo/src:$SITE${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's tokenswarm first
else
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
offline_env
if has sweep || has bench; then
    http_ok "$base/health" || die "no server answers at $base/health: start it with serve.sh (or set HOST/PORT)"
fi

# seconds of a span list (10s,2m,...), summed; span_total LIST max: the longest span
span_total() {
    "$PY" - "$1" "${2:-sum}" <<'EOF'
import re, sys
spans = []
for s in sys.argv[1].split(","):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m|h)?", s.strip())
    if not m:
        sys.exit(f"bad span {s!r} in LEVEL_DURATION")
    spans.append(float(m.group(1)) * {"s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)])
print(int(max(spans) if sys.argv[2] == "max" else sum(spans)))
EOF
}

samplers=()
stop_samplers() {
    local p
    gpu_metrics_stop
    for p in "${samplers[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${samplers[@]}"; do wait "$p" 2>/dev/null || true; done
    samplers=()
}
trap stop_samplers EXIT

# start_samplers TAG: CPU use per process and GPU use, into $RUN/cpu-TAG.csv and $RUN/gpu-TAG.csv
start_samplers() {
    local server_pid=0
    [ -f "$WORK/server.pid" ] && server_pid=$(cat "$WORK/server.pid")
    "$PY" "$(dirname "$0")/cpu_sample.py" "$RUN/cpu-$1.csv" --server-pid "$server_pid" --interval 2 &
    samplers+=($!)
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,power.draw --format=csv,nounits -l 2 \
            >"$RUN/gpu-$1.csv" 2>/dev/null &
        samplers+=($!)
    fi
}

rc=0
t_start=$(date +%s)

# -- sweep ---------------------------------------------------------------------------------------------
if has sweep; then
    [ -e "$RUN/requests.csv" ] && die "$RUN already holds a run: move it away, or set WORK to another folder"
    planned=$(span_total "$LEVEL_DURATION") || die "LEVEL_DURATION=$LEVEL_DURATION: not a list of spans"
    n_levels=$(tr ',' '\n' <<<"$LEVELS" | grep -c .)
    n_spans=$(tr ',' '\n' <<<"$LEVEL_DURATION" | grep -c .)
    [ "$n_spans" -eq 1 ] && planned=$((planned * n_levels))
    [ "$n_spans" -eq 1 ] || [ "$n_spans" -eq "$n_levels" ] \
        || die "LEVEL_DURATION has $n_spans spans for $n_levels levels"
    ((planned + 60 <= SWEEP_BUDGET_S)) \
        || die "the levels last ${planned}s; with a minute to drain and report that is over SWEEP_BUDGET_S=$SWEEP_BUDGET_S"
    lifetime_args=()
    if [ "$(awk -v n="$MIN_LIFETIMES" 'BEGIN { print (n > 0) }')" = 1 ]; then
        longest=$(span_total "$LEVEL_DURATION" max)
        slack=$((SWEEP_BUDGET_S - 60 - planned))
        lifetime_args=(--min-lifetimes "$MIN_LIFETIMES" --max-level-duration "$((longest + slack))s")
    fi
    mkdir -p "$RUN"
    {
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "cpus: $NCPU (server $SERVER_CPUS, client $CLIENT_CPUS)"
        command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
            --format=csv,noheader | sed 's/^/gpu: /'
        [ -f "$KIT_DIR/kit/BUILD_INFO" ] && sed 's/^/kit /' "$KIT_DIR/kit/BUILD_INFO"
        "$PY" - <<'EOF'
import importlib.metadata as md, sys
print("python:", sys.version.split()[0])
for n in ("torch", "vllm", "sglang", "transformers", "locust", "tokenswarm"):
    try:
        print(f"{n}: {md.version(n)}")
    except md.PackageNotFoundError:
        print(f"{n}: not installed")
EOF
    } >"$RUN/machine.txt"
    sed "s/^/[$_me] /" "$RUN/machine.txt"
    # one raw streamed answer: the wire format (the role chunk, token chunks, usage, [DONE])
    "$PY" - "$base" "$SERVED_NAME" >"$RUN/sample_stream.txt" <<'EOF' || say "warning: the sample request failed"
import json, sys, urllib.request
body = {"model": sys.argv[2], "stream": True, "max_tokens": 8, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "Say hello."}]}
req = urllib.request.Request(sys.argv[1] + "/v1/chat/completions", json.dumps(body).encode(),
                             {"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=60) as r:
    sys.stdout.write(r.read().decode("utf-8", "replace"))
EOF
    gpu_metrics_start
    start_samplers sweep
    say "tokenswarm sweep: levels $LEVELS, ${planned}s of load, $WORKERS workers on CPUs $CLIENT_CPUS"
    set +e
    pin "$CLIENT_CPUS" "$PY" -m tokenswarm sweep --engine "$ENGINE" --host "$base" --model "$SERVED_NAME" \
        --tokenizer "$MODEL_DIR" --levels "$LEVELS" --level-duration "$LEVEL_DURATION" --workers "$WORKERS" \
        --input-len "$INPUT_LEN" --max-tokens "$MAX_TOKENS" --ignore-eos --server-metrics "$base/metrics" \
        --server-metrics-interval "$METRICS_INTERVAL" --read-timeout 600 --stop-timeout 120 \
        --max-fail-ratio 0.01 --run-name "$RUN_NAME" --out "$RUN" "${GPU_ARGS[@]}" "${lifetime_args[@]}" "$@"
    sweep_rc=$?
    set -e
    stop_samplers
    say "tokenswarm finished (exit $sweep_rc) after $(($(date +%s) - t_start))s"
    ((sweep_rc == 0)) || rc=$sweep_rc
fi

# -- bench ---------------------------------------------------------------------------------------------
if has bench; then
    "$PY" -c 'import vllm' 2>/dev/null \
        || die "vllm does not import with PYTHONPATH=$PYTHONPATH: install the kit, or leave this step out (--no-bench)"
    mkdir -p "$RUN/peers"
    start_samplers bench
    t_bench=$(date +%s)
    skipped=()
    for c in $(tr ',' '\n' <<<"$BENCH_LEVELS" | sort -rn); do
        el=$(($(date +%s) - t_bench))
        if ((el >= BENCH_BUDGET_S)); then skipped+=("$c"); continue; fi
        n=$((c * BENCH_PROMPTS_PER_USER))
        ((n >= BENCH_MIN_PROMPTS)) || n=$BENCH_MIN_PROMPTS
        stem=$RUN/peers/vllm-bench-c$c
        say "vllm bench serve: concurrency $c, $n prompts (${el}s into the bench step)"
        http_get "$base/metrics" "$stem.metrics-before.prom" || say "warning: no /metrics before level $c"
        set +e
        # no level runs past BENCH_BUDGET_S + 80 s: the step, and the pack after it, stay inside one 10-minute call
        pin "$CLIENT_CPUS" timeout $((BENCH_BUDGET_S + 80 - el)) "$PY" -m vllm.entrypoints.cli.main bench serve \
            --backend openai-chat --endpoint /v1/chat/completions --base-url "$base" --model "$MODEL_DIR" \
            --served-model-name "$SERVED_NAME" --tokenizer "$MODEL_DIR" --dataset-name random \
            --random-input-len "$INPUT_LEN" --random-output-len "$MAX_TOKENS" --random-prefix-len 0 \
            --num-prompts "$n" --max-concurrency "$c" --ignore-eos --percentile-metrics ttft,tpot,itl,e2el \
            --seed $((BENCH_SEED + c)) --save-result --save-detailed --result-dir "$RUN/peers" \
            --result-filename "vllm-bench-c$c.json" --disable-tqdm >"$stem.log" 2>&1
        brc=$?
        set -e
        http_get "$base/metrics" "$stem.metrics-after.prom" || say "warning: no /metrics after level $c"
        if ((brc != 0)); then
            say "vllm bench failed at concurrency $c (exit $brc); the end of $stem.log:"
            tail -n 15 "$stem.log"
            rc=1
        else
            grep -E "Output token throughput|Mean TTFT|Mean E2EL|Peak concurrent" "$stem.log" | sed "s/^/[$_me]   /" || true
        fi
    done
    stop_samplers
    ((${#skipped[@]} == 0)) || say "skipped concurrency ${skipped[*]}: past BENCH_BUDGET_S=${BENCH_BUDGET_S}s"
fi

# -- pack ----------------------------------------------------------------------------------------------
if has pack; then
    [ -d "$RUN" ] || die "nothing to pack: $RUN does not exist"
    [ -f "$WORK/server.log" ] && cp "$WORK/server.log" "$RUN/server.log"
    list=$WORK/.pack-list
    if [ -f "$WORK/.packed" ]; then
        (cd "$WORK" && find run -type f -newer .packed) >"$list"
    else
        (cd "$WORK" && find run -type f) >"$list"
    fi
    touch "$WORK/.pack-start"
    if [ ! -s "$list" ]; then
        say "nothing new to pack in $RUN"
    else
        name=$RUN_NAME-$(date +%H%M%S).tar.gz
        tar -C "$WORK" -czf "$out/$name" -T "$list"
        mv "$WORK/.pack-start" "$WORK/.packed"
        size=$(stat -c %s "$out/$name")
        if ((size > PACK_MIB * 1048576)); then
            split -b "${PACK_MIB}M" -a 2 "$out/$name" "$out/$name.part-"
            rm "$out/$name"
            say "packed $(wc -l <"$list") files as $(find "$out" -name "$name.part-*" | wc -l) pieces; join them:" \
                "cat $name.part-* > $name"
        else
            say "packed $(wc -l <"$list") files: $out/$name"
        fi
        find "$out" -maxdepth 1 -type f -name "$RUN_NAME-*" -printf "%f %s\n" | sort \
            | awk -v me="[$_me]" '{ printf "%s   %-40s %6.2f MiB\n", me, $1, $2 / 1048576 }'
        n=$(find "$out" -maxdepth 1 -type f | wc -l)
        ((n <= 8)) || say "warning: $out holds $n files; a transfer may take back at most 8"
    fi
fi
say "done after $(($(date +%s) - t_start))s (exit $rc)"
exit "$rc"
