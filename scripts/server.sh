#!/usr/bin/env bash
# A local Prefect server for deepclust, in one command:
#
#   bash scripts/server.sh            # start on 127.0.0.1:4200 (PORT=4300 bash scripts/server.sh for another)
#   bash scripts/server.sh stop       # stop the server this script started
#
# The server's home (its SQLite database, logs) is .prefect/ in this repository; set
# PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://user:pass@host:5432/prefect to use PostgreSQL.
# It then points the Prefect CLI of your current profile at the server (prefect config set PREFECT_API_URL=...),
# so `deepclust reproduce`, `prefect deploy` and workers started afterwards report to it, and waits until
# /api/health answers. The plain commands it runs are in deployments/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
HOST=127.0.0.1
PORT=${PORT:-4200}
HOME_DIR="$REPO/.prefect"
PID_FILE="$HOME_DIR/server.pid"
LOG_FILE="$HOME_DIR/server.log"
if [ -x "$REPO/.venv/bin/python" ]; then PYTHON=${PYTHON:-$REPO/.venv/bin/python}; else PYTHON=${PYTHON:-python3}; fi
API_URL="http://$HOST:$PORT/api"

if [ "${1:-start}" = "stop" ]; then
  if [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
    kill -- "-$(cat "$PID_FILE")" 2>/dev/null || kill "$(cat "$PID_FILE")"
    echo "stopped the Prefect server (pid $(cat "$PID_FILE"))"
  else
    echo "no Prefect server started by this script is running"
  fi
  rm -f "$PID_FILE"
  exit 0
fi

mkdir -p "$HOME_DIR"
if curl -fsS "$API_URL/health" >/dev/null 2>&1; then
  echo "a Prefect server already answers on $API_URL"
else
  # setsid: the server gets its own process group, so `stop` ends it and its children together.
  # PREFECT_UI_API_URL: where the UI in the browser calls the API (it defaults to port 4200, whatever --port says).
  PREFECT_HOME="$HOME_DIR" PREFECT_UI_API_URL="$API_URL" PREFECT_SERVER_ANALYTICS_ENABLED=${PREFECT_SERVER_ANALYTICS_ENABLED:-false} \
    setsid nohup "$PYTHON" -m prefect server start --host "$HOST" --port "$PORT" >"$LOG_FILE" 2>&1 &
  echo $! >"$PID_FILE"
  echo -n "starting the Prefect server (home $HOME_DIR, log $LOG_FILE) "
  for _ in $(seq 1 120); do
    if curl -fsS "$API_URL/health" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then echo; tail -n 30 "$LOG_FILE"; exit 1; fi
    echo -n "."; sleep 1
  done
  echo
  curl -fsS "$API_URL/health" >/dev/null || { echo "not healthy after 120 s; see $LOG_FILE"; exit 1; }
fi
"$PYTHON" -m prefect config set PREFECT_API_URL="$API_URL" >/dev/null
echo "Prefect server healthy: UI http://$HOST:$PORT, API $API_URL (now this profile's PREFECT_API_URL)"
echo "stop it with: bash scripts/server.sh stop"
