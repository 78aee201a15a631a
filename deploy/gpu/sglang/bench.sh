#!/usr/bin/env bash
# SGLang's own benchmark on a running server (serve.sh), at the concurrency levels tokenswarm swept: the third
# opinion beside tokenswarm's and the engine's /metrics. For each of BENCH_LEVELS (largest first):
# max(BENCH_PROMPTS_PER_USER x C, BENCH_MIN_PROMPTS) prompts of INPUT_LEN random token ids (dataset random-ids:
# no ShareGPT download) and exactly MAX_TOKENS output tokens (EOS ignored: SGLang's bench default) at
# --max-concurrency C through the OpenAI chat API, a seed of its own per level; results appended to
# $WORK/run/peers/sglang-bench-c<C>.jsonl, its log beside, and the engine's /metrics just before and after
# (.metrics-before.prom, .metrics-after.prom). `python3 -m sglang.bench_serving` where the installed SGLang has
# it, else `python3 -m sglang.benchmark.serving`. Levels that would start after BENCH_BUDGET_S seconds are
# skipped, with a message; none runs past BENCH_BUDGET_S + 80 s.
#
#   deploy/gpu/sglang/bench.sh
#
# Env (defaults in common.sh and here): BENCH_LEVELS (LEVELS, else 1,2,4,...,2048), INPUT_LEN (128),
# MAX_TOKENS (128), BENCH_PROMPTS_PER_USER (3), BENCH_MIN_PROMPTS (10), BENCH_BUDGET_S (480), BENCH_SEED (1000,
# plus C); HOST, PORT, SERVED_NAME, MODEL_DIR, SITE, WORK, CLIENT_CPUS, PY. Exit 1 when a level failed.
set -euo pipefail
# shellcheck source=deploy/gpu/sglang/common.sh
. "$(dirname "$0")/common.sh"
BENCH_LEVELS=${BENCH_LEVELS:-${LEVELS:-1,2,4,8,16,32,64,128,256,512,1024,2048}}
INPUT_LEN=${INPUT_LEN:-128}
MAX_TOKENS=${MAX_TOKENS:-128}
BENCH_PROMPTS_PER_USER=${BENCH_PROMPTS_PER_USER:-3}
BENCH_MIN_PROMPTS=${BENCH_MIN_PROMPTS:-10}
BENCH_BUDGET_S=${BENCH_BUDGET_S:-480}
BENCH_SEED=${BENCH_SEED:-1000}
for v in INPUT_LEN MAX_TOKENS BENCH_PROMPTS_PER_USER BENCH_MIN_PROMPTS BENCH_BUDGET_S BENCH_SEED; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v=${!v}: must be a whole number"
done
[[ $BENCH_LEVELS =~ ^[0-9]+(,[0-9]+)*$ ]] || die "BENCH_LEVELS=$BENCH_LEVELS: must be whole numbers separated by commas"

base=http://$HOST:$PORT
sglang_env
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
http_ok "$base/health" || die "no server answers at $base/health: start it with serve.sh (or set HOST/PORT)"
find_module='
import importlib.util
for m in ("sglang.bench_serving", "sglang.benchmark.serving"):
    try:
        if importlib.util.find_spec(m):
            print(m)
            break
    except ImportError:
        continue
'
# SGLang 0.5.17's bench imports Hugging Face `datasets` at module level (for its MMMU loader), even for
# random-ids prompts, and the kit leaves `datasets` out (it pulls pyarrow, ~40 MB): where it does not import, a
# stand-in whose load_dataset raises goes first on the bench's path (on the H100, without it every level failed
# with "No module named 'datasets'")
if ! "$PY" -c 'import datasets' 2>/dev/null; then
    mkdir -p "$WORK/bench-shim/datasets"
    cat >"$WORK/bench-shim/datasets/__init__.py" <<'EOF'
"""Stand-in for Hugging Face datasets, which SGLang's bench imports but random-ids prompts never use."""


def load_dataset(*args, **kwargs):
    raise ImportError("Hugging Face `datasets` is not installed (deploy/gpu/sglang/bench.sh's stand-in)")
EOF
    export PYTHONPATH="$PYTHONPATH:$WORK/bench-shim"
    say "no \`datasets\` package: a stand-in is on the bench's path ($WORK/bench-shim)"
fi
module=$("$PY" -c "$find_module" 2>/dev/null || true)
[ -n "$module" ] || die "neither sglang.bench_serving nor sglang.benchmark.serving imports with PYTHONPATH=$PYTHONPATH: install the kit"

RUN=$WORK/run
mkdir -p "$RUN/peers"
rc=0
t0=$(date +%s)
skipped=()
for c in $(tr ',' '\n' <<<"$BENCH_LEVELS" | sort -rn); do
    el=$(($(date +%s) - t0))
    if ((el >= BENCH_BUDGET_S)); then skipped+=("$c"); continue; fi
    n=$((c * BENCH_PROMPTS_PER_USER))
    ((n >= BENCH_MIN_PROMPTS)) || n=$BENCH_MIN_PROMPTS
    stem=$RUN/peers/sglang-bench-c$c
    say "$module: concurrency $c, $n prompts (${el}s into the bench)"
    http_get "$base/metrics" "$stem.metrics-before.prom" || say "warning: no /metrics before level $c"
    set +e
    pin "$CLIENT_CPUS" timeout $((BENCH_BUDGET_S + 80 - el)) "$PY" -m "$module" --backend sglang-oai-chat \
        --base-url "$base" --model "$SERVED_NAME" --tokenizer "$MODEL_DIR" --dataset-name random-ids \
        --random-input-len "$INPUT_LEN" --random-output-len "$MAX_TOKENS" --random-range-ratio 1 \
        --num-prompts "$n" --max-concurrency "$c" --seed $((BENCH_SEED + c)) --output-file "$stem.jsonl" \
        --disable-tqdm >"$stem.log" 2>&1
    brc=$?
    set -e
    http_get "$base/metrics" "$stem.metrics-after.prom" || say "warning: no /metrics after level $c"
    if ((brc != 0)); then
        say "$module failed at concurrency $c (exit $brc); the end of $stem.log:"
        tail -n 15 "$stem.log"
        rc=1
    else
        grep -E "Output token throughput|Mean TTFT|Mean E2E|Concurrency" "$stem.log" | sed "s/^/[$_me]   /" || true
    fi
done
((${#skipped[@]} == 0)) || say "skipped concurrency ${skipped[*]}: past BENCH_BUDGET_S=${BENCH_BUDGET_S}s"
exit "$rc"
