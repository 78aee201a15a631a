# Shared defaults and helpers of deploy/gpu/sglang/*.sh (sourced, not run): SGLang's defaults, then the vLLM
# kit's common.sh (its helpers: say, die, pin, http_ok, http_get, offline_env; every default there yields to a
# value set here or in the environment).
# shellcheck shell=bash

SITE=${SITE:-/tmp/sglang-site}                    # pip install --target: SGLang, Locust, tokenswarm
PORT=${PORT:-30000}                               # SGLang's default port
WORK=${WORK:-/tmp/sglang-work}                    # server.log, server.pid, run/ (the run folder)
ENGINE=${ENGINE:-sglang}                          # tokenswarm's preset
RUN_NAME=${RUN_NAME:-sglang-h100}
# shellcheck source=deploy/gpu/vllm/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../vllm/common.sh"

# The environment every SGLang process here needs: offline_env's (no network, NVLink multicast off), and
# CUDA_HOME, which SGLang's just-in-time RoPE kernel (nvcc + g++ through tvm_ffi) needs: nvcc's toolkit.
sglang_env() {
    offline_env
    if [ -z "${CUDA_HOME:-}" ]; then
        local nvcc
        nvcc=$(command -v nvcc || true)
        [ -z "$nvcc" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc=/usr/local/cuda/bin/nvcc
        if [ -n "$nvcc" ]; then
            CUDA_HOME=$(cd "$(dirname "$nvcc")/.." && pwd)
            export CUDA_HOME
        fi
    fi
}
