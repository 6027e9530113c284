"""Code that drives real BitTorrent clients against the tracker.

Every client is confined to 127.0.0.1 and has DHT, PEX, local peer discovery
and port mapping switched off, so the tracker is the only way peers can find
each other.  The modules here only build commands, settings and sessions; the
pytest fixtures in ``tests/test_real_clients.py`` own their lifetimes.
"""
