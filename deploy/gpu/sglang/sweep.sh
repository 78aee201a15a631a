#!/usr/bin/env bash
# Load-test a running SGLang server (serve.sh) with tokenswarm (a master and WORKERS workers on CLIENT_CPUS, the
# engine's /metrics and the GPUs' power sampled at each level's edges), then with SGLang's own benchmark at the
# same levels (bench.sh), and pack the results into OUT_DIR: the vLLM kit's sweep and pack steps
# (../vllm/sweep.sh) with ENGINE=sglang, and bench.sh between them.
#
#   deploy/gpu/sglang/sweep.sh [--steps sweep,bench,pack] [--no-bench] OUT_DIR [-- extra tokenswarm sweep args]
#
# What the GPU spends (the vLLM sweep step's, common.sh's gpu_metrics_start): GPU_METRICS, a DCGM exporter's
# URL, is passed as --gpu-metrics. Unset, and where NVML's binding imports (nvidia-ml-py, in the GPU image),
# `tokenswarm gpu-exporter` is started on 127.0.0.1:GPU_EXPORTER_PORT (9401) for the sweep and stopped after
# it; GPU_METRICS=none leaves it out.
# Env: everything ../vllm/sweep.sh and bench.sh read (LEVELS, LEVEL_DURATION, WORKERS, INPUT_LEN, MAX_TOKENS,
# BENCH_*, PACK_MIB; HOST, PORT (30000), WORK (/tmp/sglang-work), RUN_NAME (sglang-h100), SITE, PY, ...).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=deploy/gpu/sglang/common.sh
. "$here/common.sh"

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
export SITE PORT WORK ENGINE RUN_NAME GPU_METRICS GPU_EXPORTER_PORT
mkdir -p "$WORK"

rc=0
if has sweep; then
    set +e
    bash "$here/../vllm/sweep.sh" --steps sweep "$out" -- "$@"
    src=$?
    set -e
    ((src == 0)) || rc=$src
fi
if has bench; then
    bash "$here/bench.sh" || rc=1
fi
if has pack; then
    bash "$here/../vllm/sweep.sh" --steps pack "$out" || rc=1
fi
exit "$rc"
