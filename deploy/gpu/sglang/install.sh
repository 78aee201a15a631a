#!/usr/bin/env bash
# Install the SGLang kit from build_kit.sh on the GPU machine (no network): the vLLM kit's install.sh (parts
# reassembled and checked against their hashes, unpacked, every wheel pip-installed into SITE without an index),
# then the check that sglang, sgl_kernel, Locust and tokenswarm import.
#
#   deploy/gpu/sglang/install.sh [KIT_DIR] [SITE]    (defaults /tmp/kit and /tmp/sglang-site)
#
# Env: PY (python3: must be Python 3.12, the one with PyTorch 2.11).
set -euo pipefail
# shellcheck source=deploy/gpu/sglang/common.sh
. "$(dirname "$0")/common.sh"
export SITE KIT_DIR PY
export KIT_IMPORTS="sglang sgl_kernel|locust gevent tokenswarm"
exec bash "$(dirname "$0")/../vllm/install.sh" "$@"
