"""Long work done a slice at a time between turns of the reactor."""

from __future__ import annotations

import time
from typing import Any, Callable, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.task import Cooperator
from twisted.python.failure import Failure

T = TypeVar("T")

#: Seconds of work between two turns of the reactor, as the store's expiry and checkpoints do:
#: Twisted's default of 10 ms showed in the tail latency of a busy tracker.
SLICE_SECONDS = 0.002


def _slice_timer() -> Callable[[], bool]:
    deadline = time.monotonic() + SLICE_SECONDS
    return lambda: time.monotonic() >= deadline


def cooperator(reactor: Any) -> Cooperator:
    """A L{Cooperator} that steps its generators for L{SLICE_SECONDS} per turn of C{reactor}."""
    return Cooperator(
        terminationPredicateFactory=_slice_timer,
        scheduler=lambda work: reactor.callLater(0, work),
    )


def fire_all(waiting: list[Deferred[T]] | None, result: T | Failure) -> None:
    """Give every caller who waited for one piece of sliced work its outcome."""
    for waiter in waiting or ():
        if isinstance(result, Failure):
            waiter.errback(result)
        else:
            waiter.callback(result)
