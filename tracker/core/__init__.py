"""
The protocol-neutral core: the announce model, the swarm index and its journal, client
addresses, errors, settings and the storage contract. Nothing here imports from the front ends,
the stores, the operating features or the daemon.
"""
