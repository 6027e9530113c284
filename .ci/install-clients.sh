#!/usr/bin/env bash
# Install the BitTorrent clients that tests/test_real_clients.py runs as programs: aria2 and
# transmission-cli, from Debian. (libtorrent's Python bindings, which the tests load
# in-process, come from the test extra: pip install '.[test]'.)
# Runs as root, non-interactively, and is safe to run again.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
missing=()
command -v aria2c >/dev/null 2>&1 || missing+=(aria2)
command -v transmission-cli >/dev/null 2>&1 || missing+=(transmission-cli)
if ((${#missing[@]})); then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

aria2c --version | head -n 1
transmission-cli --version 2>&1 | head -n 1
