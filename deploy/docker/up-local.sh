#!/usr/bin/env bash
# Brings the docker-compose cluster up for real on this machine: the simulated engine, the master and WORKERS
# workers (`docker compose --profile sim up --scale worker=N`), runs one headless test, prints the engine's
# own count of what it served, and tears down what it started. Made for machines that reach package
# registries but no image registry (CI here; air-gapped GPU clusters are similar):
#
#   1. the Docker engine: found, or Debian's docker.io installed with apt; dockerd started when none runs
#   2. Compose v2 (`docker compose`): found, or the plugin binary taken from Debian 13's docker-compose
#      package (apt-get download with a sources list of its own; the system's apt sources are left alone)
#   3. the base image: PYTHON_IMAGE if set; else local/debian-python:bookworm, made once with debootstrap
#      (Debian 12 minbase + python3 + python3-venv) and docker import; no image registry is needed
#   4. wheels of tokenswarm's dependencies built on this host (pip wheel) into deploy/docker/wheels/, so the
#      image build installs tokenswarm from src/ with `pip install --no-index` (no network inside the build)
#   5. the image, built once (`docker compose build`: only the master service has a build section)
#   6. `docker compose up --scale worker=WORKERS --attach master --exit-code-from master` with MODE=run
#   7. teardown: `docker compose down` of this compose project only, and dockerd (by its PID) only if this
#      script started it
#
#   deploy/docker/up-local.sh                  # 4 workers, 8 users for 15 s; or: make cluster-local
#   WORKERS=8 USERS=64 DURATION=30s deploy/docker/up-local.sh
#   deploy/docker/up-local.sh prepare          # steps 1-5 only; leaves dockerd running; prints what to export
#
# Knobs (environment): WORKERS (4: the master waits for this many), SCALE (worker containers, default
# WORKERS), USERS (8), DURATION (15s), MAX_TOKENS (64), INPUT_LEN (128), SIM_ARGS ('--ttft-ms 50 --tpot-ms
# 20'), MODE (run or sweep; LEVELS, LEVEL_DURATION), REPORTS_DIR (./reports), COMPOSE_PROJECT_NAME
# (tokenswarm-local), TIMEOUT (seconds the test may take, 900), PYTHON_IMAGE, IMAGE (tokenswarm:local), NOFILE
# (65536, or the engine's hard open-files limit when lower), WEB_PORT (a free port), PYTHON (builds the
# wheels: .venv/bin/python, else python3; its version must be the image's), DEBIAN_MIRROR (the first Debian
# mirror in this machine's apt sources), TOKENSWARM_CACHE (~/.cache/tokenswarm: the base image's root file
# system, the Compose plugin and the dependency wheels are kept under docker/).
# Output: the compose output (the master's), the workers' and the engine's logs, then
# `up-local.sh: engine stats: {json}` (the engine's own counters) and `up-local.sh: run folder DIR`.
# Exit code: the master's (0 ok, 1 failures), 2 bad input or a failed step, 124 the test outlived TIMEOUT
# (stopped, then torn down).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

die() { echo "up-local.sh: error: $*" >&2; exit 2; }
say() { echo "up-local.sh: [$(printf '%4ds' "$SECONDS")] $*"; }

ACTION="${1:-run}"
case "$ACTION" in
  run | prepare) ;;
  *) die "unknown action '$ACTION': use 'run' (default) or 'prepare'" ;;
esac
WORKERS="${WORKERS:-4}"
case "$WORKERS" in '' | *[!0-9]* | 0) die "WORKERS=$WORKERS: must be a whole number of workers, at least 1" ;; esac
SCALE="${SCALE:-$WORKERS}"  # worker containers; WORKERS is how many the master waits for
case "$SCALE" in '' | *[!0-9]*) die "SCALE=$SCALE: must be a whole number of worker containers" ;; esac
TIMEOUT="${TIMEOUT:-900}"
case "$TIMEOUT" in '' | *[!0-9]* | 0) die "TIMEOUT=$TIMEOUT: must be a whole number of seconds, at least 1" ;; esac
export MODE="${MODE:-run}"
case "$MODE" in run | sweep) ;; *) die "MODE=$MODE: this script runs headless tests: run or sweep" ;; esac
export WORKERS USERS="${USERS:-8}" DURATION="${DURATION:-15s}" MAX_TOKENS="${MAX_TOKENS:-64}"
export INPUT_LEN="${INPUT_LEN:-128}" SIM_ARGS="${SIM_ARGS:---ttft-ms 50 --tpot-ms 20}"
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-tokenswarm-local}"
export IMAGE="${IMAGE:-tokenswarm:local}"
export REPORTS_DIR="${REPORTS_DIR:-$ROOT/reports}"
export REPORTS_UID="${REPORTS_UID:-$(id -u)}" REPORTS_GID="${REPORTS_GID:-$(id -g)}"
# the web UI is not served in headless modes, but compose requires a password: a random one, never shown
export WEB_PASSWORD="${WEB_PASSWORD:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}"
CACHE="${TOKENSWARM_CACHE:-$HOME/.cache/tokenswarm}/docker"
BASE_DEFAULT="local/debian-python:bookworm"
WHEELS="$HERE/wheels"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

mkdir -p "$CACHE" "$REPORTS_DIR" || die "cannot create $CACHE or $REPORTS_DIR"
exec 9>"$CACHE/.lock"  # one bring-up at a time on a machine: they would share (and stop) one dockerd
flock -n 9 || { say "another up-local.sh holds $CACHE/.lock; waiting"; flock 9; }

as_root() {
  if [ -z "$SUDO" ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "'$*' needs root: run as root or install sudo"; fi
}
apt_install() {  # apt_install PACKAGE...: Debian packages, with a fresh package list if the first try fails
  command -v apt-get >/dev/null || die "no apt-get: install $* yourself"
  say "installing $* (apt)"
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
    as_root apt-get update -qq >/dev/null || die "apt-get update failed"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
      || die "apt-get install $* failed"
  fi
}
debian_mirror() {  # the first Debian archive this machine's apt sources name (not the security archive)
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local m
  m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
      | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -1 | tr -d ' ' || true)
  echo "${m:-http://deb.debian.org/debian}"
}

# -- teardown: only what this script started ------------------------------------------------------------
DOCKERD_PID=""
COMPOSE_STARTED=""
SCRATCH=()  # temporary folders to remove
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  local code=$?
  trap - EXIT INT TERM
  if [ ${#SCRATCH[@]} -gt 0 ]; then rm -rf "${SCRATCH[@]}"; fi
  if [ -n "$COMPOSE_STARTED" ]; then
    say "compose down (project $COMPOSE_PROJECT_NAME)"
    docker compose --profile sim down --remove-orphans --timeout 30 >/dev/null 2>&1 \
      || echo "up-local.sh: warning: 'docker compose down' failed for project $COMPOSE_PROJECT_NAME" >&2
  fi
  if [ -n "$DOCKERD_PID" ]; then
    say "stopping the dockerd this script started (pid $DOCKERD_PID)"
    kill -TERM "$DOCKERD_PID" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$DOCKERD_PID" 2>/dev/null; then kill -KILL "$DOCKERD_PID" 2>/dev/null || true; fi
  fi
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# -- 1. the Docker engine ----------------------------------------------------------------------------------
if ! command -v docker >/dev/null || ! { docker info >/dev/null 2>&1 || command -v dockerd >/dev/null; }; then
  apt_install docker.io
fi
if docker info >/dev/null 2>&1; then
  say "Docker engine found: $(docker info --format '{{.ServerVersion}}' 2>/dev/null)"
else
  command -v dockerd >/dev/null || die "no dockerd: install Docker (Debian: apt-get install docker.io)"
  [ "$(id -u)" -eq 0 ] || die "no Docker engine runs, and only root can start dockerd: start Docker first"
  say "starting dockerd (log: $CACHE/dockerd.log)"
  setsid dockerd >"$CACHE/dockerd.log" 2>&1 </dev/null 9>&- &  # 9: the lock, not dockerd's to keep
  DOCKERD_PID=$!
  for _ in $(seq 1 150); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$DOCKERD_PID" 2>/dev/null || { tail -5 "$CACHE/dockerd.log" >&2; DOCKERD_PID=""; die "dockerd exited"; }
    sleep 0.2
  done
  docker info >/dev/null 2>&1 || { tail -5 "$CACHE/dockerd.log" >&2; die "dockerd did not answer within 30 s"; }
  say "dockerd ready (pid $DOCKERD_PID)"
fi

# -- 2. Compose v2 -----------------------------------------------------------------------------------------
if ! docker compose version >/dev/null 2>&1; then
  plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
  if [ ! -x "$CACHE/docker-compose" ]; then
    say "downloading Compose v2: Debian 13's docker-compose package (apt-get download, own sources list)"
    tmp=$(mktemp -d)
    SCRATCH+=("$tmp")
    mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(debian_mirror) trixie main" \
      >"$tmp/sources.list"
    apt_opts=(-o "Dir::Etc::SourceList=$tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null
              -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache" -o APT::Sandbox::User=root)
    apt-get "${apt_opts[@]}" update -qq >/dev/null 2>&1 || die "cannot read Debian 13's package list"
    (cd "$tmp" && apt-get "${apt_opts[@]}" download docker-compose >/dev/null 2>&1) \
      || die "apt-get download docker-compose (Debian 13) failed"
    dpkg -x "$tmp"/docker-compose_*.deb "$tmp/x"
    cp "$tmp/x/usr/libexec/docker/cli-plugins/docker-compose" "$CACHE/docker-compose.tmp"
    mv -f "$CACHE/docker-compose.tmp" "$CACHE/docker-compose"
    rm -rf "$tmp"
  fi
  mkdir -p "$plugins"
  cp "$CACHE/docker-compose" "$plugins/docker-compose"
  docker compose version >/dev/null 2>&1 || die "the Compose plugin in $plugins does not run"
fi
say "$(docker compose version)"

# -- 3. the base image -------------------------------------------------------------------------------------
if [ -z "${PYTHON_IMAGE:-}" ]; then
  export PYTHON_IMAGE="$BASE_DEFAULT"
  rootfs_tar="$CACHE/debian-python-bookworm.tar.gz"
  if docker image inspect "$PYTHON_IMAGE" >/dev/null 2>&1; then
    say "base image $PYTHON_IMAGE present"
  else
    if [ ! -s "$rootfs_tar" ]; then
      [ "$(id -u)" -eq 0 ] || die "making the base image needs root (debootstrap, chroot); or set PYTHON_IMAGE"
      command -v debootstrap >/dev/null || apt_install debootstrap
      rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
      SCRATCH+=("$rootfs")
      say "debootstrap: Debian 12 minbase from $(debian_mirror) (about a minute)"
      debootstrap --variant=minbase bookworm "$rootfs" "$(debian_mirror)" >"$CACHE/debootstrap.log" 2>&1 \
        || { tail -5 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }
      say "adding python3 and python3-venv in a chroot"
      chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive sh -c \
        'apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 python3-venv \
         && apt-get clean && rm -rf /var/lib/apt/lists/*' >"$CACHE/chroot.log" 2>&1 \
        || { tail -5 "$CACHE/chroot.log" >&2; die "installing python3 in the chroot failed"; }
      tar -C "$rootfs" -c . | gzip -1 >"$rootfs_tar.tmp"
      mv -f "$rootfs_tar.tmp" "$rootfs_tar"
      rm -rf "$rootfs"
    fi
    say "docker import $rootfs_tar as $PYTHON_IMAGE"
    docker import - "$PYTHON_IMAGE" <"$rootfs_tar" >/dev/null || die "docker import failed"
  fi
else
  say "base image: PYTHON_IMAGE=$PYTHON_IMAGE"
fi
image_py=$(docker run --rm --entrypoint python3 "$PYTHON_IMAGE" -c \
           'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) \
  || die "cannot run python3 in $PYTHON_IMAGE (pull it, or unset PYTHON_IMAGE to make one from Debian packages)"

# -- 4. wheels for a build without network -----------------------------------------------------------------
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
host_py=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) \
  || die "PYTHON=$PYTHON does not run"
[ "$host_py" = "$image_py" ] || die "the wheels must be built by the image's Python $image_py; $PYTHON is \
$host_py: set PYTHON=python$image_py (with pip), or PYTHON_IMAGE to an image with Python $host_py"
wheel_cache="$CACHE/wheels-py$host_py"
mkdir -p "$wheel_cache"
rm -f "$wheel_cache"/tokenswarm-*.whl  # this checkout's tokenswarm, built anew each time
say "building wheels with $PYTHON (Python $host_py; kept in $wheel_cache)"
# every dependency, and what building tokenswarm from src/ takes (setuptools, wheel); the image builds
# tokenswarm itself from this checkout's source, so its own wheel is left out
pip_wheel() {
  "$PYTHON" -m pip wheel --quiet --disable-pip-version-check --find-links "$wheel_cache" \
    --wheel-dir "$wheel_cache" "$@" "$ROOT" "setuptools>=68" wheel >"$CACHE/wheels.log" 2>&1
}
# from the kept wheels alone when they suffice (seconds); else from the package index
pip_wheel --no-index || pip_wheel \
  || { grep -v '^WARNING: Location' "$CACHE/wheels.log" | tail -5 >&2; die "pip wheel failed (log: $CACHE/wheels.log)"; }
rm -f "$WHEELS"/*.whl
find "$wheel_cache" -maxdepth 1 -name '*.whl' ! -name 'tokenswarm-*' -exec cp {} "$WHEELS/" \;

# -- 5. the image, built once ------------------------------------------------------------------------------
say "building $IMAGE from $PYTHON_IMAGE (docker compose build; log: $CACHE/build.log)"
docker compose --profile sim build >"$CACHE/build.log" 2>&1 \
  || { tail -20 "$CACHE/build.log" >&2; die "the image build failed (log: $CACHE/build.log)"; }
# the wheels stay in deploy/docker/wheels/ (ignored by git): a later `docker compose up --build` needs them here

# the engine's hard open-files limit caps what containers may ask for
if [ -z "${NOFILE:-}" ]; then
  hard=$(docker run --rm --entrypoint sh "$PYTHON_IMAGE" -c 'ulimit -Hn' 2>/dev/null || echo 65536)
  case "$hard" in '' | *[!0-9]*) NOFILE=65536 ;; *) NOFILE=$((hard < 65536 ? hard : 65536)) ;; esac
fi
export NOFILE
if [ -z "${WEB_PORT:-}" ]; then
  WEB_PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
export WEB_PORT

if [ "$ACTION" = prepare ]; then
  trap - EXIT
  say "ready: image $IMAGE from $PYTHON_IMAGE${DOCKERD_PID:+; dockerd left running (pid $DOCKERD_PID)}"
  echo "export PYTHON_IMAGE=$PYTHON_IMAGE NOFILE=$NOFILE"
  exit 0
fi

# -- 6. the cluster, one headless test ---------------------------------------------------------------------
say "docker compose --profile sim up --scale worker=$SCALE (WORKERS=$WORKERS, MODE=$MODE, USERS=$USERS, \
DURATION=$DURATION, NOFILE=$NOFILE, reports in $REPORTS_DIR)"
COMPOSE_STARTED=1
# only the master attached: its exit ends `up` (a worker's does not), and its last lines are not cut short
docker compose --ansi never --profile sim up --no-build --scale "worker=$SCALE" --attach master \
  --exit-code-from master &
up_pid=$!
deadline=$((SECONDS + TIMEOUT))
timed_out=""
while kill -0 "$up_pid" 2>/dev/null; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    # stopped as `compose stop` does it: SIGTERM, and the master writes what it has (or, still waiting for
    # its workers, leaves no run folder); `timeout -s INT` signalled compose twice, which then killed them
    echo "up-local.sh: the test outlived TIMEOUT=${TIMEOUT}s; stopping it (docker compose stop)" >&2
    timed_out=1
    docker compose --ansi never --profile sim stop --timeout 60 >/dev/null 2>&1 || true
    break
  fi
  sleep 1
done
code=0
wait "$up_pid" || code=$?
if [ -n "$timed_out" ]; then code=124; fi
echo "up-local.sh: -- the workers' logs --"
docker compose --ansi never --profile sim logs --no-color worker || true
echo "up-local.sh: -- the engine's log --"
docker compose --ansi never --profile sim logs --no-color simengine || true
plain_log() {  # plain_log SERVICE: its log lines as the service wrote them
  docker compose --ansi never --profile sim logs --no-color --no-log-prefix "$1" 2>/dev/null \
    | sed -e 's/\x1b\[[0-9;]*[A-Za-z]//g' -e 's/\r$//'
}
stats=$(plain_log simengine | grep -o 'tokenswarm simengine stats: {.*}' | tail -1 \
        | sed 's/^tokenswarm simengine stats: //' || true)
echo "up-local.sh: engine stats: ${stats:-{\}}"
run=$(plain_log master | grep -oE '^reports/[^ ]+$' | tail -1 || true)
if [ -n "$run" ]; then echo "up-local.sh: run folder $REPORTS_DIR/${run#reports/}"; fi
say "done in ${SECONDS}s (master exit code $code)"
exit "$code"
