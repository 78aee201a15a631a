#!/usr/bin/env bash
# Build, where a package registry can be reached, the kit a GPU machine without network access needs to serve
# SGLang 0.5.17 and load-test it with tokenswarm: the wheels of requirements-sglang.txt and
# ../vllm/requirements-client.txt (Python 3.12, x86-64 manylinux, pinned with hashes), the sglang-kernel wheel
# rewritten without FlashAttention 3 and the other libraries a Llama on the triton backend never loads
# (strip_kernel.py: 383 MB -> about 15 MB, reproducibly; the hashes before and after are in wheels/STRIPPED.txt),
# a tokenswarm wheel from this checkout and the Llama-3-8B-shaped model folder. The packing is the vLLM kit's
# (../vllm/build_kit.sh): one tar in parts of at most PART_MIB MiB (52: 3 parts), each with kit.sha256.
#
#   deploy/gpu/sglang/build_kit.sh [OUT]        (default: .kit-sglang in the repository, ignored by git)
#
# Env: PART_MIB (52), PY (.venv/bin/python, else python3).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
out=${1:-$repo/.kit-sglang}
py=${PY:-python3}
[ -z "${PY:-}" ] && [ -x "$repo/.venv/bin/python" ] && py=$repo/.venv/bin/python
export KIT_NAME=sglang
export KIT_REQUIREMENTS="$here/requirements-sglang.txt $here/../vllm/requirements-client.txt"
export KIT_AFTER_DOWNLOAD="$py $here/strip_kernel.py"
exec bash "$here/../vllm/build_kit.sh" "$out"
