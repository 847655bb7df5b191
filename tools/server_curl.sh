#!/bin/sh
# The curl examples of the README against a running g2w-server (default http://127.0.0.1:8080).
# Usage: tools/server_curl.sh [URL] [API_KEY]
set -e
URL=${1:-http://127.0.0.1:8080}
KEY=${2:-}
c() { if [ -n "$KEY" ]; then curl -sS -H "Authorization: Bearer $KEY" "$@"; else curl -sS "$@"; fi; }

echo "== GET /health"
c "$URL/health"; echo
echo "== GET /v1/models"
c "$URL/v1/models"; echo
echo "== POST /v1/completions (greedy)"
c "$URL/v1/completions" -H 'Content-Type: application/json' \
  -d '{"prompt": "ROMEO:", "max_tokens": 24, "temperature": 0}'; echo
echo "== POST /v1/completions (streaming, server-sent events)"
c -N "$URL/v1/completions" -H 'Content-Type: application/json' \
  -d '{"prompt": "ROMEO:", "max_tokens": 8, "temperature": 0, "stream": true}'
echo "== POST /v1/completions (logprobs)"
c "$URL/v1/completions" -H 'Content-Type: application/json' \
  -d '{"prompt": "ROMEO:", "max_tokens": 3, "temperature": 0, "logprobs": 2}'; echo
echo "== POST /tokenize, /detokenize"
c "$URL/tokenize" -H 'Content-Type: application/json' -d '{"content": "Hello, world!"}'; echo
c "$URL/detokenize" -H 'Content-Type: application/json' -d '{"tokens": [15496, 11, 995, 0]}'; echo
echo "== errors: wrong type (400), unknown path (404), chat (404)"
c "$URL/v1/completions" -H 'Content-Type: application/json' -d '{"prompt": "x", "max_tokens": "ten"}'; echo
c "$URL/v1/nothing"; echo
c "$URL/v1/chat/completions" -H 'Content-Type: application/json' -d '{"messages": []}'; echo
