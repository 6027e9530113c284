"""
Embedding the tracker in a Twisted web application of your own.

    python examples/embedded_site.py [PORT] [DATABASE]

The host serves its own page at / and the tracker at /tracker/announce and /tracker/scrape.
PORT defaults to $PORT or 8080, DATABASE to $TRACKER_DATABASE or tracker.sqlite3.
"""

from __future__ import annotations

import os
import sys

from twisted.application.service import MultiService
from twisted.internet import reactor
from twisted.internet.error import CannotListenError
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from tracker import SQLitePeerStore, TrackerConfig, TrackerResource, TrackerService

log = Logger()


def main(argv: list[str]) -> None:
    try:
        port = int(argv[1]) if len(argv) > 1 else int(os.environ.get("PORT", "8080"))
    except ValueError:
        raise SystemExit(f"usage: {argv[0]} [PORT] [DATABASE] (PORT is a number)") from None
    database = argv[2] if len(argv) > 2 else os.environ.get("TRACKER_DATABASE", "tracker.sqlite3")
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])

    config = TrackerConfig(interval=900, min_interval=300)
    store = SQLitePeerStore(database)
    # The tracker service opens and closes the store, expires silent peers and keeps the
    # figures at /tracker/stats up to date; the resource counts its requests into them.
    tracker = TrackerService(store, config)

    # The host application's own resources, with the tracker mounted beside them.
    root = Resource()
    root.putChild(b"", Data(b"Hello from the host application.\n", "text/plain"))
    root.putChild(b"tracker", TrackerResource(store, config, stats=tracker.stats))

    # Listen before opening the database, so that a port in use changes nothing on disk.
    try:
        reactor.listenTCP(port, Site(root))
    except CannotListenError as e:
        raise SystemExit(f"cannot listen on port {port}: {e.socketError}") from None
    log.info("tracker listening on http://127.0.0.1:{port}/tracker/announce", port=port)

    application = MultiService()
    tracker.setServiceParent(application)
    tracker.started.addCallbacks(opened, not_opened, callbackArgs=(database,))

    application.startService()
    reactor.addSystemEventTrigger("before", "shutdown", application.stopService)
    reactor.run()  # Ctrl-C or SIGTERM stops the reactor, which first stops the services


def opened(_: None, database: str) -> None:
    log.info("tracker database {path} open", path=os.path.abspath(database))


def not_opened(failure: Failure) -> None:
    log.failure("cannot open the tracker database; stopping", failure)
    reactor.stop()


if __name__ == "__main__":
    main(sys.argv)
