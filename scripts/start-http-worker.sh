#!/usr/bin/env bash
# The seed's launcher for Linux: starts a MoRAG worker (morag-supervisor) configured by
# ./.env (copy configs/http-worker.env.example) and the seed's flags.
#
#   cp configs/http-worker.env.example .env    # then edit it
#   ./scripts/start-http-worker.sh [--worker-type cpu ...] [-- MORAG-SUPERVISOR FLAGS ...]
#
# A thin wrapper: scripts/start_http_remote_worker.py maps the seed's flags and variables
# and replaces itself with morag-supervisor, so SIGTERM drains and the exit status is the
# supervisor's. PYTHON picks the interpreter (default: python3; without morag-worker
# installed, the clone's .venv from `make install` is used).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
  echo "start-http-worker.sh: $python not found; install Python 3.10 or newer or set PYTHON=/path/to/python" >&2
  exit 2
fi
exec "$python" "$here/start_http_remote_worker.py" "$@"
