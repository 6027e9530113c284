"""The one error type a client ever sees."""


class TrackerError(Exception):
    """A request the tracker refuses; C{reason} becomes the bencoded C{failure reason}."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
