"""An HTTP BitTorrent tracker on Twisted, with an embedded SQLite store."""

from tracker.config import TrackerConfig
from tracker.resource import TrackerResource
from tracker.service import TrackerService

__all__ = ["TrackerConfig", "TrackerResource", "TrackerService"]
