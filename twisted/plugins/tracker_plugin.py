from twisted.application.service import ServiceMaker

tracker = ServiceMaker(
    "BitTorrent tracker",
    "tracker.daemon.plugin",
    "An HTTP BitTorrent tracker with an embedded SQLite store.",
    "tracker",
)
