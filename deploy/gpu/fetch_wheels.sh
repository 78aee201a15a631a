#!/usr/bin/env bash
# Download, on a machine with a package registry, the wheels a GPU machine without one needs to run
# deploy/gpu/sweep.sh: Locust and its needs (tokenswarm's load generators) and the OpenAI-compatible
# server pieces of `transformers serve` (fastapi, uvicorn, openai). PyTorch, transformers, tokenizers,
# numpy, pandas, matplotlib, requests and prometheus-client are expected there already.
#
#   deploy/gpu/fetch_wheels.sh [DEST]      (default .whl; Python 3.12, x86-64 manylinux)
set -euo pipefail
dest=${1:-.whl}
py=${PYVER:-3.12}
mkdir -p "$dest"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
pkgs=(
    # load generation
    "locust==2.47.0" "gevent==26.9.0" "geventhttpclient==2.6.1" "greenlet==3.5.6" "zope.event==6.2"
    "zope.interface==8.7" "flask==3.1.3" "flask-cors==6.0.5" "flask-login==0.6.3" "werkzeug==3.1.9"
    "itsdangerous==2.2.0" "blinker==1.9.0" "pyzmq==27.3.0" "configargparse==1.9.0" "brotli==1.2.1"
    "python-socketio==5.18.1" "python-engineio==4.15.1" "bidict==0.24.1" "simple-websocket==1.1.0"
    "wsproto==1.3.2" "sseclient-py==1.9.0"
    # transformers serve
    "fastapi" "starlette" "pydantic" "pydantic-core" "annotated-types" "typing-inspection" "opentelemetry-api"
    "importlib-metadata" "uvicorn" "openai<2" "distro" "jiter" "sniffio"
)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
    "${platforms[@]}" -d "$dest" "${pkgs[@]}"
find "$dest" -name "*.whl" | wc -l
du -sh "$dest"
