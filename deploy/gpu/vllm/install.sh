#!/usr/bin/env bash
# Install the kit from build_kit.sh on the GPU machine (no network): reassemble kit.tar from its parts,
# check every hash, unpack it, and pip-install all its wheels into one folder (--target), without an index
# and without dependency resolution (the kit is the whole set).
#
#   deploy/gpu/vllm/install.sh [KIT_DIR] [SITE]    (defaults /tmp/kit and /tmp/vllm-site)
#
# KIT_DIR holds the parts as they were copied: kit.tar.01 ... and kit.sha256, flat or in part folders.
# Afterwards: the model folder is $KIT_DIR/kit/model/llama-8b-shape; serve.sh and sweep.sh use SITE.
# Env: PY (python3: must be Python 3.12, the one with PyTorch); KIT_IMPORTS (what must import afterwards,
# groups separated by "|", each group in a process of its own: "vllm|locust gevent tokenswarm";
# deploy/gpu/sglang/install.sh names sglang's).
set -euo pipefail
# shellcheck source=deploy/gpu/vllm/common.sh
. "$(dirname "$0")/common.sh"
KIT_DIR=${1:-$KIT_DIR}
SITE=${2:-$SITE}

[ -d "$KIT_DIR" ] || die "$KIT_DIR does not exist: copy the kit's parts there first"
t0=$(date +%s)

manifest=$(find "$KIT_DIR" -maxdepth 2 -name kit.sha256 -type f | head -n1)
[ -n "$manifest" ] || die "no kit.sha256 under $KIT_DIR: no part of the kit has arrived"
mapfile -t names < <(awk '!/^#/ && $2 ~ /^kit\.tar\.[0-9]+$/ { print $2 }' "$manifest")
[ "${#names[@]}" -gt 0 ] || die "$manifest lists no parts"
paths=()
missing=()
for n in "${names[@]}"; do
    p=$(find "$KIT_DIR" -maxdepth 2 -name "$n" -type f | head -n1)
    if [ -z "$p" ]; then missing+=("$n"); continue; fi
    want=$(awk -v n="$n" '$2 == n { print $1 }' "$manifest")
    got=$(sha256sum "$p" | cut -d' ' -f1)
    [ "$got" = "$want" ] || die "$p: sha256 $got, expected $want (copy part ${n##*.} again)"
    paths+=("$p")
done
[ "${#missing[@]}" -eq 0 ] || die "missing part(s) ${missing[*]} of ${#names[@]} in $KIT_DIR: copy them first"
say "${#names[@]} parts present, hashes OK"

cat "${paths[@]}" >"$KIT_DIR/kit.tar"
want=$(awk '!/^#/ && $2 == "kit.tar" { print $1 }' "$manifest")
got=$(sha256sum "$KIT_DIR/kit.tar" | cut -d' ' -f1)
[ "$got" = "$want" ] || die "$KIT_DIR/kit.tar: sha256 $got, expected $want"
rm -rf "$KIT_DIR/kit"
tar -C "$KIT_DIR" -xf "$KIT_DIR/kit.tar"
rm -f "$KIT_DIR/kit.tar"
(cd "$KIT_DIR/kit" && sha256sum -c --quiet SHA256SUMS) || die "$KIT_DIR/kit: files differ from SHA256SUMS"
say "unpacked $KIT_DIR/kit: $(grep -c . "$KIT_DIR/kit/SHA256SUMS") files, hashes OK; $(grep tokenswarm "$KIT_DIR/kit/BUILD_INFO")"

"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null \
    || die "$PY is not Python 3.12 (the kit's wheels are built for 3.12): set PY=/path/to/python3.12"
rm -rf "$SITE"
mkdir -p "$SITE"
wheels=("$KIT_DIR"/kit/wheels/*.whl)
say "pip install --target $SITE (${#wheels[@]} wheels) ..."
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
    --target "$SITE" "${wheels[@]}"
say "pip done after $(($(date +%s) - t0)) s"

export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
# each group (separated by "|") in a process of its own, as they run: Locust monkey-patches the standard
# library with gevent on import, which breaks ssl where a server's packages imported it first (RecursionError)
IFS='|' read -ra groups <<<"${KIT_IMPORTS:-vllm|locust gevent tokenswarm}"
for group in "${groups[@]}"; do
read -ra imports <<<"$group"
"$PY" - "${imports[@]}" <<'EOF' || die "the installed packages do not import (see above)"
import importlib
import importlib.metadata as md
import sys

for name in sys.argv[1:]:
    importlib.import_module(name)
    try:
        print(f"[install] {name} {md.version(name)}")
    except md.PackageNotFoundError:  # a module whose distribution has another name (sgl_kernel)
        print(f"[install] {name} imported")
for name in ("torch", "transformers", "tokenizers", "numpy", "pandas", "matplotlib", "psutil", "msgpack",
             "prometheus-client", "requests"):
    try:
        print(f"[install]   image: {name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"[install]   image: {name} NOT INSTALLED")
EOF
done
say "done in $(($(date +%s) - t0)) s; model folder: $KIT_DIR/kit/model/llama-8b-shape"
