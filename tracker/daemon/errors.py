"""What ends a start before anything runs."""

from __future__ import annotations

from twisted.python import usage


class StartError(usage.UsageError):
    """
    A command line that is well formed but names something the tracker cannot use: a file that
    cannot be read or holds a mistake, a database it cannot open, a library that is missing.
    The message says all there is to fix: unlike a mistyped option, pointing at C{--help} would
    not help.
    """
