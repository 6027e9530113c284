"""
The WebSocket front end: browsers (WebTorrent and the libraries built on it) announce over a
WebSocket opened on the HTTP announce URL and find each other through WebRTC offers and answers
the tracker relays (L{tracker.ws.tracker}).
"""
