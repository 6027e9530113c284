"""The UDP front end (BEP 15, BEP 41): the protocol, its batching port and connection IDs."""
