"""Real BitTorrent clients exchanging a file through the tracker.

Each test starts the tracker, seeds a 4 MiB random file with one client
implementation and downloads it with another.  All clients are bound to
127.0.0.1 with DHT, PEX, local peer discovery and port mapping off, and the
torrent is private, so the only way the leecher and the seeder can meet is
the tracker's peer list.  The download is checked byte for byte (SHA-256).

Tests marked with :data:`over_http_and_udp` run twice: once with a torrent
whose only tracker is the HTTP announce URL, once with the UDP (BEP 15) one
on the same port, so that the peers must find each other over ``udp://``.
Either way the assertions read the swarm's counters over HTTP scrape: a swarm
is one swarm, whatever protocol its peers announce with.

The clients come from ``.ci/install-clients.sh``.  A missing client skips its
tests with a loud reason, unless REALCLIENTS_REQUIRED=1 is set (as in CI),
which turns the skip into a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.realclients.aria2 import aria2c_path
from tests.realclients.compact_proxy import CompactZeroProxy
from tests.realclients.lt_peer import libtorrent_version
from tests.realclients.payload import Payload, make_payload
from tests.realclients.swarm import Swarm
from tests.realclients.tracker import RunningTracker, describe, start_tracker
from tests.realclients.transmission import transmission_cli_path
from tracker.core.bencode import bdecode

pytestmark = pytest.mark.realclient


def _require(available: bool, client: str) -> None:
    """Skip (or, when clients are required, fail) if ``client`` is missing."""
    if available:
        return
    message = (
        f"!!! REAL-CLIENT TEST NOT RUN: {client} is not installed. "
        f"Run .ci/install-clients.sh as root to install it. !!!"
    )
    if os.environ.get("REALCLIENTS_REQUIRED") == "1":
        pytest.fail(message)
    pytest.skip(message)


def require_libtorrent() -> None:
    _require(libtorrent_version() is not None, "libtorrent (pip install libtorrent)")


def require_aria2() -> None:
    _require(aria2c_path() is not None, "aria2c (apt-get install aria2)")


def require_transmission() -> None:
    _require(
        transmission_cli_path() is not None, "transmission-cli (apt-get install transmission-cli)"
    )


@pytest.fixture
def tracker(tmp_path: Path) -> Iterator[RunningTracker]:
    """The tracker under test, on a free port with its own database."""
    running = start_tracker(tmp_path / "tracker")
    try:
        yield running
    finally:
        running.process.stop()


@pytest.fixture
def scheme() -> str:
    """How the torrent reaches the tracker: "http", unless a test parametrizes it."""
    return "http"


#: Runs a test once over HTTP and once over UDP (the ``scheme`` fixture).
over_http_and_udp = pytest.mark.parametrize("scheme", ["http", "udp"])


@pytest.fixture
def payload(tmp_path: Path, tracker: RunningTracker, scheme: str) -> Payload:
    """A random file in ``seed/`` and a private v1 torrent announcing to the tracker.

    The torrent names exactly one tracker URL, over ``scheme``: with "udp"
    there is no HTTP URL a client could fall back to.
    """
    # libtorrent builds the torrent, so every test needs it.
    require_libtorrent()
    urls = {"http": tracker.announce_url, "udp": tracker.udp_announce_url}
    made = make_payload(tmp_path / "seed", urls[scheme])
    assert torrent_trackers(made) == [urls[scheme]], "the torrent must name one tracker"
    return made


@pytest.fixture
def swarm(tmp_path: Path, tracker: RunningTracker, payload: Payload) -> Iterator[Swarm]:
    """Client launcher; every client it started is stopped at teardown."""
    group = Swarm(tmp_path, tracker, payload)
    try:
        yield group
    finally:
        group.close()


def seed_dir(payload: Payload) -> Path:
    return payload.path.parent


def torrent_trackers(payload: Payload) -> list[str]:
    """Every tracker URL in the .torrent file: ``announce`` and ``announce-list``."""
    meta = bdecode(payload.torrent.read_bytes())
    urls = [meta[b"announce"]] if b"announce" in meta else []
    urls += [url for tier in meta.get(b"announce-list", []) for url in tier]
    return [url.decode() for url in urls]


@over_http_and_udp
def test_libtorrent_seeder_to_aria2_leecher(swarm: Swarm, payload: Payload, tmp_path: Path) -> None:
    """aria2 finds a libtorrent seeder through the tracker and downloads the file intact.

    aria2 leaves as soon as it is done; its 'stopped' announce must take it
    out of the swarm, leaving the seeder alone in the scrape counts.
    """
    require_aria2()
    swarm.libtorrent("lt-seeder", seed_dir(payload))
    swarm.wait_for_seeder()

    leech_dir = tmp_path / "leech"
    leecher = swarm.aria2("aria2-leecher", leech_dir, seed=False)
    swarm.wait_for_download(leech_dir)

    assert leecher.wait(15.0) == 0, swarm.diagnostics()
    swarm.wait_for_scrape(
        "the tracker to drop aria2 after its 'stopped' announce",
        lambda stats: stats.get("complete") == 1 and stats.get("incomplete") == 0,
    )


@over_http_and_udp
def test_aria2_seeder_to_libtorrent_leecher(swarm: Swarm, payload: Payload, tmp_path: Path) -> None:
    """libtorrent finds an aria2 seeder through the tracker and downloads the file intact.

    libtorrent announces 'completed' when done, which the tracker counts:
    two seeders and one completed download.
    """
    require_aria2()
    swarm.aria2("aria2-seeder", seed_dir(payload), seed=True)
    swarm.wait_for_seeder()

    leech_dir = tmp_path / "leech"
    swarm.libtorrent("lt-leecher", leech_dir)
    swarm.wait_for_download(leech_dir)

    swarm.wait_for_scrape(
        "the tracker to count libtorrent's 'completed' announce",
        lambda stats: stats.get("complete") == 2 and stats.get("downloaded", 0) >= 1,
    )


@over_http_and_udp
def test_transmission_seeder_to_libtorrent_leecher(
    swarm: Swarm, payload: Payload, tmp_path: Path
) -> None:
    """libtorrent finds a Transmission seeder through the tracker and downloads the file intact."""
    require_transmission()
    swarm.transmission("transmission-seeder", seed_dir(payload), seed=True)
    swarm.wait_for_seeder()

    leech_dir = tmp_path / "leech"
    swarm.libtorrent("lt-leecher", leech_dir)
    swarm.wait_for_download(leech_dir)


@over_http_and_udp
def test_transmission_seeder_to_aria2_leecher(
    swarm: Swarm, payload: Payload, tmp_path: Path
) -> None:
    """aria2 finds a Transmission seeder through the tracker and downloads the file intact."""
    require_transmission()
    require_aria2()
    swarm.transmission("transmission-seeder", seed_dir(payload), seed=True)
    swarm.wait_for_seeder()

    leech_dir = tmp_path / "leech"
    leecher = swarm.aria2("aria2-leecher", leech_dir, seed=False)
    swarm.wait_for_download(leech_dir)
    assert leecher.wait(15.0) == 0, swarm.diagnostics()


@over_http_and_udp
def test_libtorrent_seeder_to_transmission_leecher(
    swarm: Swarm, payload: Payload, tmp_path: Path
) -> None:
    """A libtorrent seeder learns of a Transmission leecher from its announces and serves it.

    Transmission will not dial peers on 127.0.0.1, so here the tracker's
    peer list has to work in the other direction: the seeder re-announces,
    receives the leecher's address and port, and connects to it.
    """
    require_transmission()
    seeder = swarm.libtorrent("lt-seeder", seed_dir(payload))
    swarm.wait_for_seeder()

    leech_dir = tmp_path / "leech"
    swarm.transmission("transmission-leecher", leech_dir, seed=False)
    swarm.wait_for_download(leech_dir, on_tick=swarm.reannouncer(seeder))

    swarm.wait_for_scrape(
        "the tracker to count Transmission's 'completed' announce",
        lambda stats: stats.get("complete") == 2 and stats.get("downloaded", 0) >= 1,
    )


def test_non_compact_peer_list_aria2_seeder_to_libtorrent_leecher(
    swarm: Swarm, payload: Payload, tmp_path: Path
) -> None:
    """libtorrent downloads using the tracker's non-compact (compact=0) peer list.

    No client under test can ask for compact=0 itself, so libtorrent's
    tracker requests go through a proxy that rewrites compact=1 to compact=0.
    The tracker must then answer with a list of dictionaries holding the
    seeder's ip and port, and libtorrent must be able to use it.
    """
    require_aria2()
    swarm.aria2("aria2-seeder", seed_dir(payload), seed=True)
    swarm.wait_for_seeder()

    leech_dir = tmp_path / "leech"
    with CompactZeroProxy() as proxy:
        swarm.libtorrent("lt-leecher", leech_dir, proxy_port=proxy.port)
        swarm.wait_for_download(leech_dir)
        exchanges = proxy.exchanges()

    assert exchanges, "libtorrent sent no announce through the proxy"
    first = exchanges[0]
    assert "compact=0" in first.forwarded_url
    assert first.status == 200
    response = bdecode(first.body)
    peers = response.get(b"peers")
    assert isinstance(peers, list), f"compact=0 answered with {describe(response)}"
    addresses = {(peer.get(b"ip"), peer.get(b"port")) for peer in peers}
    seeder = (b"127.0.0.1", swarm.listen_ports["aria2-seeder"])
    assert seeder in addresses, describe(response)
