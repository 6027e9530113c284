"""Peer stores: implementations of L{tracker.core.interfaces.IPeerStore}."""
