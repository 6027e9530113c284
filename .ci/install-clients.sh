#!/usr/bin/env bash
# Install the BitTorrent clients that tests/test_real_clients.py drives:
# aria2 and transmission-cli from Debian, libtorrent's Python bindings from PyPI.
# Runs as root, non-interactively, and is safe to run again.
#
#   PYTHON  interpreter that runs pytest (default: python3); libtorrent is
#           installed for it, since the tests load it in-process.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
LIBTORRENT_VERSION="2.1.1"

export DEBIAN_FRONTEND=noninteractive
missing=()
command -v aria2c >/dev/null 2>&1 || missing+=(aria2)
command -v transmission-cli >/dev/null 2>&1 || missing+=(transmission-cli)
if ((${#missing[@]})); then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The PyPI wheel bundles its own libtorrent; Debian's python3-libtorrent only
# imports under Debian's own /usr/bin/python3.
PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install --quiet --disable-pip-version-check \
    "libtorrent==${LIBTORRENT_VERSION}"

aria2c --version | head -n 1
transmission-cli --version 2>&1 | head -n 1
"$PYTHON" -c 'import libtorrent; print("libtorrent", libtorrent.__version__)'
