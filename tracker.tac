# The tracker with its defaults: port 6969 on IPv4 and IPv6, database tracker.sqlite3 here.
#     twistd -ny tracker.tac
# Change any setting without editing this file: TRACKER_OPTIONS takes the same options as
# `twistd tracker --help`, e.g.
#     TRACKER_OPTIONS="--listen tcp:8080 --interval 600" twistd -ny tracker.tac
import os
import shlex

from twisted.application.service import Application
from twisted.python import usage

from tracker.daemon.errors import StartError
from tracker.daemon.tap import Options, makeService

options = Options()
try:
    options.parseOptions(shlex.split(os.environ.get("TRACKER_OPTIONS", "")))
except StartError as e:
    # One line and a non-zero exit, rather than twistd's traceback of an application that failed.
    raise SystemExit(f"TRACKER_OPTIONS: {e}") from None
except usage.UsageError as e:
    raise SystemExit(f"TRACKER_OPTIONS: {e} (see `twistd tracker --help`)") from None
application = Application("tracker")
makeService(options).setServiceParent(application)
