"""The HTTP front end: the embeddable resource, its request parsing and bencoded replies."""
