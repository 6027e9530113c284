from twisted.application.service import ServiceMaker

tracker = ServiceMaker(
    "BitTorrent tracker",
    "tracker.tap",
    "An HTTP BitTorrent tracker with an embedded SQLite store.",
    "tracker",
)
