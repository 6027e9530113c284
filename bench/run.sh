#!/usr/bin/env bash
# Installs what the benchmark needs, then runs it; arguments go to run.py (e.g. --quick).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v opentracker >/dev/null || missing+=(opentracker)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v taskset >/dev/null || missing+=(util-linux)
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y "${missing[@]}" || { apt-get update && apt-get install -y "${missing[@]}"; }
fi

# Install scripts are skipped: only the HTTP server module is used, and the optional native
# addons they would build are not needed for it.
if [ ! -f "$here/node_modules/bittorrent-tracker/package.json" ]; then
    npm ci --prefix "$here" --ignore-scripts --no-audit --no-fund
fi

python3 -c "import matplotlib" 2>/dev/null || python3 -m pip install --quiet matplotlib

exec python3 "$here/run.py" "$@"
