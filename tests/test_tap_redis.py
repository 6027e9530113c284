"""The --redis option: what it accepts, what it refuses, and the daemon it builds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from unittest.mock import patch

from twisted.python import usage
from twisted.trial.unittest import TestCase

from tests.redis_servers import shared_cluster, shared_server
from tests.test_tap import _Reactor, parse
from tracker.core.interfaces import ISharedStore
from tracker.daemon.service import TrackerService
from tracker.daemon.tap import makeService


class RedisOptionTests(TestCase):
    timeout = 60

    def test_database_not_used_with_redis(self) -> None:
        """With --redis the database file is neither checked nor created: a unit file can
        switch to Redis by adding the one option."""
        url = shared_server().url
        directory = tempfile.mkdtemp(prefix="tracker-tap-redis-")
        self.addCleanup(shutil.rmtree, directory, True)
        options = parse("--redis", url, "--database", directory)
        self.assertEqual(options["redis"], url)
        root = makeService(options, _Reactor())
        (tracker,) = [c for c in root if isinstance(c, TrackerService)]  # type: ignore[attr-defined]
        self.assertTrue(ISharedStore.providedBy(tracker.store))
        self.assertIs(tracker.stats.roundtrips, tracker.store.roundtrips)  # type: ignore[attr-defined]
        self.assertEqual(os.listdir(directory), [])

    def test_bad_urls_refused(self) -> None:
        """A URL that is not Redis's is refused before anything is contacted."""
        for url, expected in [
            ("http://127.0.0.1:6379", "a Redis URL starts with redis://, rediss:// or unix://"),
            ("redis://:pw@127.0.0.1:6379/zero", "the database is a number, not 'zero'"),
            ("unix://", "a unix:// URL names the socket"),
        ]:
            with self.assertRaises(usage.UsageError) as caught:
                parse("--redis", url)
            self.assertIn(expected, str(caught.exception))
            self.assertNotIn(":pw@", str(caught.exception))

    def test_redis_before_7_refused(self) -> None:
        """A Redis older than 7 (whose scripts cannot say what they do) is refused at start, in
        one line with its version."""
        import redis

        from tracker.daemon.errors import StartError

        real = redis.Redis.info

        def older(client: redis.Redis, section: str | None = None, *args: object) -> object:
            if section == "server":
                return {"redis_version": "6.2.14"}
            return real(client, section, *args)

        url = shared_server().url
        with patch.object(redis.Redis, "info", older), self.assertRaises(StartError) as caught:
            parse("--redis", url)
        self.assertEqual(
            str(caught.exception),
            f"cannot use Redis at {url}: it is version 6.2.14; the tracker's scripts need Redis 7"
            " or later (or Valkey)",
        )

    def test_cluster_found_from_one_node(self) -> None:
        """Any one node's URL of a cluster gives the whole cluster."""
        cluster = shared_cluster()
        options = parse("--redis", cluster.nodes[1].url)
        self.assertIn("Redis Cluster of 3 primaries", options["redis-description"])

    def test_help_says_what_the_database_holds(self) -> None:
        """--help names --redis and says that the database is not used with it."""
        result = subprocess.run(
            [sys.executable, "-m", "twisted", "tracker", "--help"], capture_output=True, timeout=60
        )
        text = " ".join(result.stdout.decode().split())
        self.assertIn("--redis=", text)
        self.assertIn("With --redis it is not used", text)
