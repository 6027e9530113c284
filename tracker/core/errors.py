"""The one error type a client ever sees."""


class TrackerError(Exception):
    """A request the tracker refuses; C{reason} becomes the bencoded C{failure reason}."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeyMismatch(TrackerError):
    """
    An announce for a known peer, from another address than the peer's, that does not carry
    the key the peer registered with: it may come from anyone who learnt the peer id, so it
    must neither move nor remove the peer.
    """

    def __init__(self) -> None:
        # Short enough for a UDP error reply, which is cut to the size of the announce.
        super().__init__(
            "this peer id is registered with another key: announce with the key it started with"
        )
