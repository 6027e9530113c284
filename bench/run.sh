#!/usr/bin/env bash
# Installs what the benchmark needs, then runs it; arguments go to run.py (e.g. --quick).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Some Node.js installs carry npm without putting it on PATH.
npm_cmd=(npm)
if ! command -v npm >/dev/null && command -v node >/dev/null; then
    bundled="$(dirname "$(readlink -f "$(command -v node)")")/../lib/node_modules/npm/bin/npm-cli.js"
    [ -f "$bundled" ] && npm_cmd=(node "$bundled")
fi

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v opentracker >/dev/null || missing+=(opentracker)
command -v node >/dev/null || missing+=(nodejs)
[ "${npm_cmd[0]}" = node ] || command -v npm >/dev/null || missing+=(npm)
command -v taskset >/dev/null || missing+=(util-linux)
command -v pypy3 >/dev/null || missing+=(pypy3)
# Debian splits venv support out of pypy3.
pypy3 -c "import venv, ensurepip" 2>/dev/null || missing+=(pypy3-venv)
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y "${missing[@]}" || { apt-get update && apt-get install -y "${missing[@]}"; }
fi

# Install scripts are skipped: only the HTTP server module is used, and the optional native
# addons they would build are not needed for it.
if [ ! -f "$here/node_modules/bittorrent-tracker/package.json" ]; then
    "${npm_cmd[@]}" ci --prefix "$here" --ignore-scripts --no-audit --no-fund
fi

# Our tracker under PyPy runs from its own venv at the repository root.
repo="$(dirname "$here")"
if [ ! -x "$repo/.venv-pypy/bin/python" ]; then
    (cd "$repo" && pypy3 -m venv .venv-pypy && .venv-pypy/bin/pip install --quiet -e .)
fi

python3 -c "import tracker.daemon.tap" 2>/dev/null || (cd "$repo" && python3 -m pip install --quiet .)
python3 -c "import matplotlib" 2>/dev/null || python3 -m pip install --quiet matplotlib

exec python3 "$here/run.py" "$@"
