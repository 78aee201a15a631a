#!/usr/bin/env bash
# Build, where a package registry can be reached, the kit that a GPU machine without network access needs
# to serve vLLM 0.26.0 and load-test it with tokenswarm: every wheel (Python 3.12, x86-64 manylinux), a
# tokenswarm wheel built from this checkout and a Llama-3-8B-shaped model folder (no weights: vLLM's
# --load-format dummy), packed as one tar split into parts of at most PART_MIB MiB, each in its own folder
# (OUT/part01, OUT/part02, ...) with the manifest kit.sha256, so each part can travel on its own. The default,
# 52 MiB, gives 6 or 7 parts and leaves room for a checkout of up to 9 MB beside a part in a 64 MB transfer
# (tests/integration/test_deploy_gpu_vllm.py holds the checkout to that; at 57 MiB a 7.1 MB one no longer fit).
#
#   deploy/gpu/vllm/build_kit.sh [OUT]        (default: .kit in the repository, ignored by git)
#
# Env: PART_MIB (52), PY (the Python that runs pip and trains the tokenizer: .venv/bin/python, else python3).
# Wheels are pinned with their hashes in requirements-vllm.txt and requirements-client.txt (pip checks them).
# Another engine's kit (deploy/gpu/sglang/build_kit.sh) sets KIT_REQUIREMENTS (its requirement files, space
# separated) and KIT_AFTER_DOWNLOAD (a command run with the wheels folder as its last argument, e.g. to rewrite
# a wheel), and KIT_NAME (vllm) for the messages.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
out=${1:-$repo/.kit}
PART_MIB=${PART_MIB:-52}
if [ -z "${PY:-}" ]; then
    PY=python3
    [ -x "$repo/.venv/bin/python" ] && PY=$repo/.venv/bin/python
fi
say() { echo "[build_kit] $*"; }
die() { echo "[build_kit] error: $*" >&2; exit 2; }

if ! [[ $PART_MIB =~ ^[1-9][0-9]*$ ]]; then die "PART_MIB=$PART_MIB: must be a whole number of MiB"; fi
"$PY" -m pip --version >/dev/null 2>&1 || die "$PY has no pip (set PY=...)"
"$PY" -c 'import tokenizers' 2>/dev/null || die "$PY lacks the tokenizers package (make install, or set PY=...)"
for tool in sha256sum split tar; do command -v "$tool" >/dev/null || die "$tool is needed"; done

build=$out/build
kit=$build/kit
mkdir -p "$kit/wheels" "$out"
rm -rf "$kit/model" "$build/kit.tar" "$out"/part[0-9][0-9]

platforms=()
for p in manylinux_2_39_x86_64 manylinux_2_35_x86_64 manylinux_2_34_x86_64 manylinux_2_31_x86_64 manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_26_x86_64 \
         manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_5_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
read -ra reqs <<<"${KIT_REQUIREMENTS:-$here/requirements-vllm.txt $here/requirements-client.txt}"
for req in "${reqs[@]}"; do
    [ -f "$req" ] || die "KIT_REQUIREMENTS: $req does not exist"
    say "pip download -r ${req#"$repo"/}"
    "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --require-hashes \
        --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none "${platforms[@]}" \
        --platform any -d "$kit/wheels" -r "$req" 2> >(grep -v "^WARNING: Location" >&2)
done
if [ -n "${KIT_AFTER_DOWNLOAD:-}" ]; then
    say "$KIT_AFTER_DOWNLOAD $kit/wheels"
    read -ra after <<<"$KIT_AFTER_DOWNLOAD"
    "${after[@]}" "$kit/wheels" || die "$KIT_AFTER_DOWNLOAD failed"
fi

say "building the tokenswarm wheel from $repo"
rm -f "$kit"/wheels/tokenswarm-*.whl
"$PY" -m pip wheel -q --disable-pip-version-check --no-deps -w "$kit/wheels" "$repo" \
    2> >(grep -v "^WARNING: Location" >&2)
rm -rf "$repo/build"

# every wheel present must be one the requirement files name, or tokenswarm's own
expected=$(cat "${reqs[@]}" | grep -c -- '--hash=sha256:')
have=$(find "$kit/wheels" -name '*.whl' ! -name 'tokenswarm-*' | wc -l)
[ "$have" -eq "$expected" ] || die "$kit/wheels holds $have wheels, the requirement files name $expected: \
remove $kit/wheels and build again"

say "model folder (Llama-3-8B shape, tokenizer trained now)"
"$PY" "$here/make_model.py" "$kit/model/llama-8b-shape" >/dev/null

commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=""
if git -C "$repo" status --porcelain 2>/dev/null | grep -qv '^??'; then dirty=" (with uncommitted changes)"; fi
cat >"$kit/BUILD_INFO" <<EOF
built: $(date -u +%Y-%m-%dT%H:%M:%SZ)
tokenswarm: $commit$dirty
engine: ${KIT_NAME:-vllm}
python: 3.12, manylinux x86-64
wheels: $(find "$kit/wheels" -name '*.whl' | wc -l)
EOF
rm -f "$kit/SHA256SUMS"
(cd "$kit" && find . -type f -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum) >"$build/SHA256SUMS"
mv "$build/SHA256SUMS" "$kit/SHA256SUMS"

say "packing"
tar -C "$build" --sort=name --owner=0 --group=0 --numeric-owner -cf "$build/kit.tar" kit
# 64 KiB under the limit: the part and its manifest together stay within PART_MIB MiB
split -b $((PART_MIB * 1048576 - 65536)) -d -a 2 --numeric-suffixes=1 "$build/kit.tar" "$build/kit.tar."
parts=("$build"/kit.tar.[0-9][0-9])
{
    echo "# kit.tar in ${#parts[@]} parts: sha256 of each part, then of the whole"
    (cd "$build" && sha256sum kit.tar.[0-9][0-9] kit.tar)
} >"$build/kit.sha256"
for p in "${parts[@]}"; do
    n=${p##*.}
    mkdir -p "$out/part$n"
    mv "$p" "$out/part$n/"
    cp "$build/kit.sha256" "$out/part$n/"
done
rm -f "$build/kit.tar"

limit=$((PART_MIB * 1048576))
total=0
for d in "$out"/part[0-9][0-9]; do
    size=$(find "$d" -type f -printf '%s\n' | awk '{ t += $1 } END { print t + 0 }')
    total=$((total + size))
    ((size <= limit)) || die "$d is $size bytes, over $PART_MIB MiB"
    awk -v d="${d#"$repo"/}" -v s="$size" 'BEGIN { printf "[build_kit] %-14s %7.2f MiB\n", d, s / 1048576 }'
done
awk -v s="$total" -v n="${#parts[@]}" 'BEGIN { printf "[build_kit] %d parts, %.2f MiB in all\n", n, s / 1048576 }'
