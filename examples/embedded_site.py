"""
Embedding the tracker in a Twisted web application of your own.

    python examples/embedded_site.py [PORT] [DATABASE]

The host serves its own page at / and the tracker at /tracker/announce and /tracker/scrape.
PORT defaults to $PORT or 8080, DATABASE to $TRACKER_DATABASE or tracker.sqlite3.
"""

from __future__ import annotations

import os
import sys

from twisted.application import strports
from twisted.application.service import MultiService
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from tracker.config import TrackerConfig
from tracker.resource import TrackerResource
from tracker.service import TrackerService
from tracker.store.sqlite import SQLitePeerStore


def main(argv: list[str]) -> None:
    port = int(argv[1]) if len(argv) > 1 else int(os.environ.get("PORT", "8080"))
    database = argv[2] if len(argv) > 2 else os.environ.get("TRACKER_DATABASE", "tracker.sqlite3")

    config = TrackerConfig(interval=900, min_interval=300)
    store = SQLitePeerStore(database)

    # The host application's own resources, with the tracker mounted beside them.
    root = Resource()
    root.putChild(b"", Data(b"Hello from the host application.\n", "text/plain"))
    root.putChild(b"tracker", TrackerResource(store, config))

    # The tracker service opens and closes the store and expires silent peers.
    application = MultiService()
    TrackerService(store, config).setServiceParent(application)
    strports.service(f"tcp:{port}", Site(root)).setServiceParent(application)

    application.startService()
    reactor.addSystemEventTrigger("before", "shutdown", application.stopService)
    reactor.run()  # Ctrl-C or SIGTERM stops the reactor, which first stops the services


if __name__ == "__main__":
    main(sys.argv)
