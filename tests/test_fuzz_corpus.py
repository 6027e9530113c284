"""
The fuzz corpus replayed: every input in C{tests/fuzz/corpus/<target>/} (the seeds, the inputs
the fuzzer kept for the coverage they reach, and each input that once found a bug) still holds
its target's properties (L{tests.fuzz.targets}), under CPython and PyPy alike. Fuzzing itself
(C{python -m tests.fuzz.run}) needs atheris, on CPython only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.seeds import SEEDS
from tests.fuzz.targets import TARGETS

CORPUS = Path(__file__).resolve().parent / "fuzz" / "corpus"
INPUTS = [(target, path) for target in TARGETS for path in sorted((CORPUS / target).iterdir())]


@pytest.mark.parametrize(
    ("target", "path"), INPUTS, ids=[f"{target}/{path.name}" for target, path in INPUTS]
)
def test_corpus_input(target: str, path: Path) -> None:
    """The input holds every property its target checks."""
    TARGETS[target](path.read_bytes())


def test_every_target_has_its_seeds() -> None:
    """Each target has a corpus that holds the seeds tests/fuzz/seeds.py writes, as written."""
    assert set(SEEDS) == set(TARGETS)
    for target, seeds in SEEDS.items():
        for name, data in seeds():
            seed = CORPUS / target / f"seed-{name}"
            assert seed.is_file() and seed.read_bytes() == data, (
                f"{seed} is not as tests/fuzz/seeds.py writes it: python -m tests.fuzz.seeds"
            )


def test_targets_refuse_what_they_should() -> None:
    """The log check does fail a target: on an unexpected error logged, or a secret."""
    from twisted.logger import Logger

    from tests.fuzz.targets import PASSKEY, watched_log

    log = Logger()
    with pytest.raises(AssertionError, match="logged an error"), watched_log():
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            log.failure("boom")
    with pytest.raises(AssertionError, match="a secret in the log"), watched_log():
        log.debug("refused {uri!r}", uri=b"/" + PASSKEY + b"/announce")
    with watched_log():
        log.debug("refused {uri!r}", uri=b"/<passkey>/announce")
