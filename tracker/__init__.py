"""
A BitTorrent tracker on Twisted for HTTP and UDP clients, with an embedded SQLite store.

The names an embedder needs are here; C{docs/embedding.md} shows them at work. The package is
laid out by role, imports pointing down the list only:

    core     the announce model, the swarm index and its journal, addresses, errors, settings
             and the storage contract (L{tracker.core.interfaces.IPeerStore})
    store    the peer stores: SQLite (the default) and memory
    ops      statistics and metrics, access lists, private mode's passkeys, the admin API
    http     the HTTP front end: the embeddable resource
    udp      the UDP front end (BEP 15)
    daemon   command-line options, the service tree and listening, for twistd
"""

from tracker.core.config import TrackerConfig
from tracker.daemon.service import TrackerService
from tracker.http.resource import TrackerResource
from tracker.store.memory import MemoryPeerStore
from tracker.store.sqlite import SQLitePeerStore
from tracker.udp.protocol import UDPTracker

__all__ = [
    "MemoryPeerStore",
    "SQLitePeerStore",
    "TrackerConfig",
    "TrackerResource",
    "TrackerService",
    "UDPTracker",
]
