"""
The C{twistd tracker} plugin: C{tracker.daemon.tap}'s options and service, with a mistake on the
command line ending in its one line instead of after the whole usage text, as twistd and
twist would print it.
"""

from __future__ import annotations

from twisted.python import usage

from tracker.daemon import tap
from tracker.daemon.errors import StartError
from tracker.daemon.tap import makeService

__all__ = ["Options", "makeService"]


class Options(tap.Options):
    def parseOptions(self, options: list[str] | None = None) -> None:
        try:
            super().parseOptions(options)
        except StartError as e:
            # The options are right; what they name is not: the list of options would not help.
            raise SystemExit(f"tracker: {e}") from None
        except usage.UsageError as e:
            raise SystemExit(f"tracker: {e} (--help lists every option)") from None
