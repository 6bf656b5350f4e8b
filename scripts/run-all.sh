#!/usr/bin/env bash
# Start every Glia service in the foreground; Ctrl-C stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."
# The web client (/app on the chat API) calls card query on its own port: tell the page
# where it is, and let card query answer the page's origin. .env or the environment win.
default() {
  if [ -z "${!1:-}" ] && ! grep -qs "^$1=" .env; then export "$1=$2"; fi
}
default GLIA_WEB_CARD_QUERY_URL http://127.0.0.1:8001
default GLIA_CORS_ORIGINS http://127.0.0.1:8000,http://localhost:8000
pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop EXIT INT TERM
for cmd in glia-chat-api glia-extractor glia-card-query; do
  if [ -x ".venv/bin/$cmd" ]; then
    ".venv/bin/$cmd" & pids+=($!)
  fi
done
echo "Glia is running: chat API on :8000, card query on :8001, extractor health on :8002 (Ctrl-C stops)"
echo "Web client: http://127.0.0.1:8000/app/ (sign in with a token from: .venv/bin/glia-token alice)"
wait -n "${pids[@]}"
