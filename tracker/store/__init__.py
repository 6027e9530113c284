"""Peer stores: implementations of L{tracker.interfaces.IPeerStore}."""
