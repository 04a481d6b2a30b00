#!/usr/bin/env bash
# The main job: set up, start the host with its catalog ($MODELHOST_CONFIG, else the default one),
# make a first generation with its musicgen model (first.wav, or $MODELHOST_FIRST_WAV), and keep serving.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
.venv/bin/modelhost serve &
host=$!
trap 'kill -TERM "$host" 2>/dev/null || true; wait "$host"; exit 0' INT TERM
for _ in $(seq 1 600); do
  .venv/bin/modelhost health >/dev/null 2>&1 && break
  kill -0 "$host" 2>/dev/null || { echo "run.sh: the host exited; see its log above" >&2; exit 1; }
  sleep 0.2
done
.venv/bin/modelhost generate musicgen "a calm piano melody" --param duration=3 -o "${MODELHOST_FIRST_WAV:-first.wav}"
echo "run.sh: the host keeps serving (pid $host); Ctrl-C stops it. Try: .venv/bin/modelhost ps"
wait "$host"
