#!/usr/bin/env bash
# Start every Glia service in the foreground; Ctrl-C stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."
pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop EXIT INT TERM
for cmd in glia-chat-api glia-extractor glia-card-query; do
  if [ -x ".venv/bin/$cmd" ]; then
    ".venv/bin/$cmd" & pids+=($!)
  fi
done
echo "Glia is running: chat API on :8000, card query on :8001, extractor health on :8002 (Ctrl-C stops)"
wait -n "${pids[@]}"
