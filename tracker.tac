# The tracker with its defaults: port 6969 on IPv4 and IPv6, database tracker.sqlite3 here.
#     twistd -ny tracker.tac
# Change any setting without editing this file: TRACKER_OPTIONS takes the same options as
# `twistd tracker --help`, e.g.
#     TRACKER_OPTIONS="--listen tcp:8080 --interval 600" twistd -ny tracker.tac
import os
import shlex

from twisted.application.service import Application

from tracker.tap import Options, makeService

options = Options()
options.parseOptions(shlex.split(os.environ.get("TRACKER_OPTIONS", "")))
application = Application("tracker")
makeService(options).setServiceParent(application)
