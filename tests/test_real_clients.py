"""Real BitTorrent clients exchanging a file through the tracker.

Each test starts the tracker, seeds a 4 MiB random file with one client
implementation and downloads it with another (or another instance of the
same).  All clients are bound to
127.0.0.1 with DHT, PEX, local peer discovery and port mapping off, and the
torrent is private, so the only way the leecher and the seeder can meet is
the tracker's peer list.  The download is checked byte for byte (SHA-256).

Tests marked with :data:`over_http_and_udp` run twice: once with a torrent
whose only tracker is the HTTP announce URL, once with the UDP (BEP 15) one
on the same port, so that the peers must find each other over ``udp://``.
Either way the assertions read the swarm's counters over HTTP scrape: a swarm
is one swarm, whatever protocol its peers announce with.

One test runs two tracker daemons on one Redis (a redis-server of its own) and
hands the seeder a torrent naming one node and the leecher the same torrent
naming the other: the peers can only meet through the swarm the nodes share.

The tests write the .torrent themselves (``tests/realclients/metainfo.py``),
so each test needs only the clients it drives: aria2 and Transmission from
Debian (``.ci/install-clients.sh``), libtorrent's Python bindings from the
test extra where PyPI has their wheel.  A missing client skips its tests with
a loud reason naming the remedy, unless CI or REALCLIENTS_REQUIRED=1 is set,
which turns the skip into a failure.  The same holds for the Redis test's
redis-server and redis-py.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.realclients.aria2 import aria2c_path
from tests.realclients.compact_proxy import CompactZeroProxy
from tests.realclients.lt_peer import libtorrent_version
from tests.realclients.payload import PIECE_SIZE, Payload, make_payload, retargeted
from tests.realclients.swarm import Swarm
from tests.realclients.tracker import DEFAULT_OPTIONS, RunningTracker, describe, start_tracker
from tests.realclients.transmission import transmission_cli_path
from tests.redis_servers import RedisServer
from tracker.core.bencode import bdecode

pytestmark = pytest.mark.realclient


#: libtorrent's Python bindings come from the test extra (pyproject.toml) where PyPI has a wheel.
LIBTORRENT_WHEELS = "CPython 3.9 to 3.13 on Linux x86_64"


def clients_required() -> bool:
    """Whether a missing client fails its tests instead of skipping them: in CI."""
    return os.environ.get("REALCLIENTS_REQUIRED") == "1" or bool(os.environ.get("CI"))


def libtorrent_advice() -> str:
    """How to get libtorrent's bindings into the Python running the tests, or why there are none."""
    wheel_exists = (
        platform.python_implementation() == "CPython"
        and sys.platform == "linux"
        and platform.machine() == "x86_64"
        and (3, 9) <= sys.version_info[:2] <= (3, 13)
    )
    if wheel_exists:
        return f"{sys.executable} -m pip install '.[test]' installs it (the test extra holds it)"
    return (
        f"PyPI has its wheel for {LIBTORRENT_WHEELS} only, not for"
        f" {platform.python_implementation()} {platform.python_version()} on"
        f" {sys.platform} {platform.machine()}"
    )


def redis_installed() -> bool:
    """redis-server and redis-cli (``tests/redis_servers.py`` runs both) and redis-py, which
    the tracker's ``--redis`` needs."""
    programs = shutil.which("redis-server") and shutil.which("redis-cli")
    return bool(programs) and importlib.util.find_spec("redis") is not None


#: Each client, and each program a test needs besides: whether it is installed, and what to do
#: when it is not.
CLIENTS: dict[str, tuple[Callable[[], bool], Callable[[], str]]] = {
    "libtorrent": (lambda: libtorrent_version() is not None, libtorrent_advice),
    "aria2": (lambda: aria2c_path() is not None, lambda: "apt-get install aria2 (as root)"),
    "transmission": (
        lambda: transmission_cli_path() is not None,
        lambda: "apt-get install transmission-cli (as root)",
    ),
    "redis": (
        redis_installed,
        lambda: (
            "apt-get install redis-server redis-tools (as root), and redis-py:"
            f" {sys.executable} -m pip install '.[test]'"
        ),
    ),
}


def needs(*clients: str) -> pytest.MarkDecorator:
    """The clients a test drives; checked before its tracker starts."""
    return pytest.mark.clients(*clients)


@pytest.fixture(autouse=True)
def _clients_installed(request: pytest.FixtureRequest) -> None:
    """Skip (in CI: fail) a test whose clients are not installed, each named with its remedy."""
    marker = request.node.get_closest_marker("clients")
    missing = [name for name in marker.args if not CLIENTS[name][0]()] if marker else []
    if not missing:
        return
    reasons = "; ".join(f"{name} is not installed: {CLIENTS[name][1]()}" for name in missing)
    message = f"!!! REAL-CLIENT TEST NOT RUN: {reasons} !!!"
    if clients_required():
        pytest.fail(message)
    pytest.skip(message)


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


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A redis-server of the test's own, empty, on a free loopback port."""
    server = RedisServer()
    try:
        server.start()
        yield server.url
    finally:
        server.destroy()


@pytest.fixture
def nodes(tmp_path: Path, redis_url: str) -> Iterator[tuple[RunningTracker, RunningTracker]]:
    """Two tracker daemons sharing their swarms through ``redis_url``, each on a loopback
    address and port of its own."""
    started: list[RunningTracker] = []
    try:
        for name in ("node-a", "node-b"):
            options = (*DEFAULT_OPTIONS, "--redis", redis_url)
            started.append(start_tracker(tmp_path / name, options))
        yield started[0], started[1]
    finally:
        for node in started:
            node.process.stop()


def seed_dir(payload: Payload) -> Path:
    return payload.path.parent


def torrent_trackers(payload: Payload) -> list[str]:
    """Every tracker URL in the .torrent file: ``announce`` and ``announce-list``."""
    meta = bdecode(payload.torrent.read_bytes())
    urls = [meta[b"announce"]] if b"announce" in meta else []
    urls += [url for tier in meta.get(b"announce-list", []) for url in tier]
    return [url.decode() for url in urls]


def _aria2_leeches_and_leaves(swarm: Swarm, leech_dir: Path) -> None:
    """An aria2 leecher downloads the file intact from the swarm's seeder, leaves, and its
    'stopped' announce takes it out of the swarm, leaving the seeder alone in the counts."""
    leecher = swarm.aria2("aria2-leecher", leech_dir, seed=False)
    swarm.wait_for_download(leech_dir)

    assert leecher.wait(15.0) == 0, swarm.diagnostics()
    swarm.wait_for_scrape(
        "the tracker to drop the aria2 leecher after its 'stopped' announce",
        lambda stats: stats.get("complete") == 1 and stats.get("incomplete") == 0,
    )


@over_http_and_udp
@needs("libtorrent", "aria2")
def test_libtorrent_seeder_to_aria2_leecher(swarm: Swarm, payload: Payload, tmp_path: Path) -> None:
    """aria2 finds a libtorrent seeder through the tracker and downloads the file intact.

    aria2 leaves as soon as it is done; its 'stopped' announce must take it
    out of the swarm, leaving the seeder alone in the scrape counts.
    """
    swarm.libtorrent("lt-seeder", seed_dir(payload))
    swarm.wait_for_seeder()

    _aria2_leeches_and_leaves(swarm, tmp_path / "leech")


@over_http_and_udp
@needs("aria2", "libtorrent")
def test_aria2_seeder_to_libtorrent_leecher(swarm: Swarm, payload: Payload, tmp_path: Path) -> None:
    """libtorrent finds an aria2 seeder through the tracker and downloads the file intact.

    libtorrent announces 'completed' when done, which the tracker counts:
    two seeders and one completed download.
    """
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
@needs("transmission", "libtorrent")
def test_transmission_seeder_to_libtorrent_leecher(
    swarm: Swarm, payload: Payload, tmp_path: Path
) -> None:
    """libtorrent finds a Transmission seeder through the tracker and downloads the file intact."""
    swarm.transmission("transmission-seeder", seed_dir(payload), seed=True)
    swarm.wait_for_seeder()

    leech_dir = tmp_path / "leech"
    swarm.libtorrent("lt-leecher", leech_dir)
    swarm.wait_for_download(leech_dir)


@over_http_and_udp
@needs("aria2")
def test_aria2_seeder_to_aria2_leecher(swarm: Swarm, payload: Payload, tmp_path: Path) -> None:
    """One aria2 downloads the file intact from another that it found through the tracker.

    The pair needs nothing but aria2: the torrent is written by the tests
    themselves.  The leecher's 'stopped' announce on the way out leaves the
    seeder alone in the scrape counts.
    """
    swarm.aria2("aria2-seeder", seed_dir(payload), seed=True)
    swarm.wait_for_seeder()

    _aria2_leeches_and_leaves(swarm, tmp_path / "leech")


@over_http_and_udp
@needs("transmission", "aria2")
def test_transmission_seeder_to_aria2_leecher(
    swarm: Swarm, payload: Payload, tmp_path: Path
) -> None:
    """aria2 finds a Transmission seeder through the tracker and downloads the file intact."""
    swarm.transmission("transmission-seeder", seed_dir(payload), seed=True)
    swarm.wait_for_seeder()

    leech_dir = tmp_path / "leech"
    leecher = swarm.aria2("aria2-leecher", leech_dir, seed=False)
    swarm.wait_for_download(leech_dir)
    assert leecher.wait(15.0) == 0, swarm.diagnostics()


@over_http_and_udp
@needs("libtorrent", "transmission")
def test_libtorrent_seeder_to_transmission_leecher(
    swarm: Swarm, payload: Payload, tmp_path: Path
) -> None:
    """A libtorrent seeder learns of a Transmission leecher from its announces and serves it.

    Transmission will not dial peers on 127.0.0.1, so here the tracker's
    peer list has to work in the other direction: the seeder re-announces,
    receives the leecher's address and port, and connects to it.
    """
    seeder = swarm.libtorrent("lt-seeder", seed_dir(payload))
    swarm.wait_for_seeder()

    leech_dir = tmp_path / "leech"
    swarm.transmission("transmission-leecher", leech_dir, seed=False)
    swarm.wait_for_download(leech_dir, on_tick=swarm.reannouncer(seeder))

    swarm.wait_for_scrape(
        "the tracker to count Transmission's 'completed' announce",
        lambda stats: stats.get("complete") == 2 and stats.get("downloaded", 0) >= 1,
    )


@needs("aria2", "libtorrent")
def test_non_compact_peer_list_aria2_seeder_to_libtorrent_leecher(
    swarm: Swarm, payload: Payload, tmp_path: Path
) -> None:
    """libtorrent downloads using the tracker's non-compact (compact=0) peer list.

    No client under test can ask for compact=0 itself, so libtorrent's
    tracker requests go through a proxy that rewrites compact=1 to compact=0.
    The tracker must then answer with a list of dictionaries holding the
    seeder's ip and port, and libtorrent must be able to use it.
    """
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


@needs("libtorrent")
def test_torrent_as_libtorrent_reads_it(payload: Payload) -> None:
    """libtorrent reads the torrent the tests write as they mean it: the same info hash, one
    file of the payload's size in 16 pieces, private, and the one announce URL."""
    import libtorrent as lt

    params = lt.load_torrent_file(str(payload.torrent))
    info = params.ti
    assert bytes.fromhex(str(info.info_hashes().v1)) == payload.info_hash
    assert info.num_files() == 1
    assert info.total_size() == payload.size
    assert info.num_pieces() == payload.size // PIECE_SIZE
    assert info.priv()
    assert list(params.trackers) == [payload.announce_url]


@over_http_and_udp
@needs("libtorrent", "redis")
def test_seeder_at_one_node_leecher_at_the_other(
    nodes: tuple[RunningTracker, RunningTracker], scheme: str, tmp_path: Path
) -> None:
    """A libtorrent leecher announcing only to node B downloads the file intact from a
    libtorrent seeder announcing only to node A, both nodes on one Redis.

    The seeder announces over HTTP, the leecher over ``scheme``.  Node B knows
    of the seeder only through Redis; the two torrents differ in their tracker
    alone, so the info hash (the swarm) is the same.  Both nodes then scrape
    the one swarm: two seeders, nobody left downloading, and the leecher's
    'completed' counted once.
    """
    node_a, node_b = nodes
    seeding = make_payload(tmp_path / "seed", node_a.announce_url)
    leecher_url = {"http": node_b.announce_url, "udp": node_b.udp_announce_url}[scheme]
    leeching = retargeted(seeding, leecher_url, tmp_path / "leecher.torrent")
    assert leeching.info_hash == seeding.info_hash
    assert torrent_trackers(seeding) == [node_a.announce_url]
    assert torrent_trackers(leeching) == [leecher_url]

    swarm = Swarm(tmp_path, node_a, seeding, [node_b])
    try:
        swarm.libtorrent("lt-seeder", seed_dir(seeding))
        swarm.wait_for_seeder(node_b)

        leech_dir = tmp_path / "leech"
        swarm.libtorrent("lt-leecher", leech_dir, payload=leeching)
        # A 4 MiB loopback transfer between libtorrent peers takes a second or so.
        swarm.wait_for_download(leech_dir, timeout=30.0)

        def completed_once(stats: dict[str, int]) -> bool:
            counts = (stats.get("complete"), stats.get("incomplete"), stats.get("downloaded"))
            return counts == (2, 0, 1)

        for node in nodes:
            swarm.wait_for_scrape(
                f"{node.base_url} to count the leecher's 'completed' once", completed_once, node
            )
    finally:
        swarm.close()
