"""
A passkey's ledger: what the peers announcing with it have uploaded and downloaded.

An announce in private mode carries its passkey's ledger (L{tracker.core.announce.AnnounceRequest}'s
C{account}), and the swarm index credits it as it records the announce: with the growth of the
reported totals since the same peer's previous announce, kept beside the peer
(L{tracker.core.swarms.SwarmIndex}). So crediting costs no lookup of its own, the report it is
measured against lives and dies with the peer, and an announce the store does not take (a
torrent the access list refuses, a peer's entry claimed from elsewhere with the wrong key)
credits nothing.
"""

from __future__ import annotations

from typing import Callable


class Ledger:
    """
    The running totals of one passkey, and the part of them not yet written to the database.
    C{number} names the passkey in the index's reports: never reused, so that a passkey removed
    and added again is a new account, whose peers start from new baselines.
    """

    __slots__ = (
        "passkey",
        "number",
        "uploaded",
        "downloaded",
        "unwritten_up",
        "unwritten_down",
        "_owing",
    )

    def __init__(
        self,
        passkey: bytes,
        number: int,
        uploaded: int,
        downloaded: int,
        owing: Callable[[Ledger], None],
    ) -> None:
        self.passkey = passkey
        self.number = number
        self.uploaded = uploaded
        self.downloaded = downloaded
        self.unwritten_up = 0
        self.unwritten_down = 0
        self._owing = owing

    def credit(self, up: int, down: int) -> None:
        """Add what a peer moved (never both 0)."""
        self.uploaded += up
        self.downloaded += down
        self.owe(up, down)

    def owe(self, up: int, down: int) -> None:
        """Count C{up} and C{down} as not written yet; the first since the last write calls
        C{owing} with the ledger, so that whoever writes knows to."""
        if not (self.unwritten_up or self.unwritten_down):
            self._owing(self)
        self.unwritten_up += up
        self.unwritten_down += down

    def take_unwritten(self) -> tuple[int, int]:
        """What is not written yet, counted as written from now on."""
        owed = (self.unwritten_up, self.unwritten_down)
        self.unwritten_up = self.unwritten_down = 0
        return owed


#: A peer's last report in private mode: its account's number, then the uploaded and
#: downloaded totals it reported.
Report = tuple[int, int, int]


def credit_report(
    account: Ledger, last: Report | None, uploaded: int, downloaded: int, started: bool
) -> Report:
    """
    Credit C{account} with what a peer moved since its C{last} report, and return this report
    for the next: the rule of L{tracker.core.swarms.SwarmIndex._credit}, for peers kept outside
    the index (WebSocket peers). A first report, one under another passkey and a C{started}
    one credit nothing; totals smaller than the last count from zero again.
    """
    report = (account.number, uploaded, downloaded)
    if last is None or last[0] != account.number or started:
        return report
    up = uploaded - last[1]
    down = downloaded - last[2]
    if up < 0:
        up = uploaded
    if down < 0:
        down = downloaded
    if up or down:
        account.credit(up, down)
    return report
