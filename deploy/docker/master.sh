#!/bin/sh
# The docker-compose master (installed in the image as `tokenswarm-master`): starts the Locust
# master in MODE (ui, sweep or run) and waits for WORKERS workers on port 5557.
#   ui     Locust's web UI on 0.0.0.0:8089; docker-compose.yml turns its login on (LOCUST_WEB_LOGIN)
#   sweep  headless concurrency sweep (TOKENSWARM_LEVELS, TOKENSWARM_LEVEL_DURATION)
#   run    one headless level (TOKENSWARM_USERS, TOKENSWARM_DURATION)
# Every other setting comes from TOKENSWARM_* variables; extra arguments are passed on.
# Run folders land under /app/reports/<run_id>/ (the bind-mounted ./reports).
set -eu

mode="${MODE:-ui}"
workers="${WORKERS:-1}"
case "$workers" in
  '' | *[!0-9]* | 0)
    echo "tokenswarm-master: error: WORKERS=$workers: must be a whole number of workers, at least 1" >&2
    exit 2 ;;
esac

case "$mode" in
  ui)
    exec tokenswarm ui --master --expect-workers "$workers" --web-host 0.0.0.0 --web-port 8089 "$@" ;;
  sweep)
    exec tokenswarm sweep --master --expect-workers "$workers" "$@" ;;
  run)
    exec tokenswarm run --master --expect-workers "$workers" "$@" ;;
  *)
    echo "tokenswarm-master: error: MODE=$mode: must be ui, sweep or run" >&2
    exit 2 ;;
esac
