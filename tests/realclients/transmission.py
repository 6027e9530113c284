"""Configuration and command lines for transmission-cli.

transmission-cli has no command-line switches for DHT, LPD, PEX or uTP, so
they are turned off in a ``settings.json`` inside a private config directory.

Transmission drops loopback addresses from tracker peer lists (it treats
127.0.0.0/8 as unusable for peers), so on 127.0.0.1 it never connects out:
as a leecher it must be found by the seeder, which learns its address from
the tracker and dials in.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from .procs import LOOPBACK

# transmission-cli runs until stopped; coreutils' timeout ends it after this
# many seconds in case the test process dies before its finalizers run.
SAFETY_STOP_SECONDS = 300


def transmission_cli_path() -> str | None:
    return shutil.which("transmission-cli")


def transmission_settings(download_dir: Path, peer_port: int) -> dict[str, Any]:
    """settings.json contents: loopback only, TCP only, tracker as the sole peer source."""
    return {
        "bind-address-ipv4": LOOPBACK,
        "bind-address-ipv6": "::1",
        "peer-port": peer_port,
        "peer-port-random-on-start": False,
        "port-forwarding-enabled": False,
        "dht-enabled": False,
        "lpd-enabled": False,
        "pex-enabled": False,
        "utp-enabled": False,
        "rpc-enabled": False,
        "blocklist-enabled": False,
        "download-dir": str(download_dir),
        "incomplete-dir-enabled": False,
        # Write under the final name so the test can hash the file in place.
        "rename-partial-files": False,
        "start-added-torrents": True,
        "ratio-limit-enabled": False,
        "idle-seeding-limit-enabled": False,
        "speed-limit-down-enabled": False,
        "speed-limit-up-enabled": False,
        "alt-speed-enabled": False,
        # 0 = prefer plain connections, accept encrypted ones.
        "encryption": 0,
        "message-level": 3,
    }


def transmission_argv(
    torrent: Path,
    config_dir: Path,
    download_dir: Path,
    peer_port: int,
    verify: bool,
) -> list[str]:
    """Write the config directory and return the transmission-cli arguments.

    ``verify`` makes it hash existing data first, which is how it is told to
    seed a file that is already complete.
    """
    config_dir.mkdir(parents=True, exist_ok=True)
    download_dir.mkdir(parents=True, exist_ok=True)
    settings = transmission_settings(download_dir, peer_port)
    (config_dir / "settings.json").write_text(json.dumps(settings, indent=2))
    binary = transmission_cli_path() or "transmission-cli"
    argv = [
        "timeout",
        "--kill-after=10",
        str(SAFETY_STOP_SECONDS),
        binary,
        "--config-dir",
        str(config_dir),
        "--download-dir",
        str(download_dir),
        "--port",
        str(peer_port),
        "--no-portmap",
        "--no-downlimit",
        "--no-uplimit",
        "--no-blocklist",
        "--encryption-tolerated",
    ]
    if verify:
        argv.append("--verify")
    argv.append(str(torrent))
    return argv
