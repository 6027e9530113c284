"""
Coverage-guided fuzzing of the targets in L{tests.fuzz.targets} with atheris (libFuzzer), on
CPython only:

    python -m tests.fuzz.run [TARGET ...] [--seconds N] [--jobs N] [--keep]
    python -m tests.fuzz.run TARGET --replay FILE ...

Each target is fuzzed for C{--seconds} (default: C{$FUZZ_SECONDS}, else 40) in a process of its
own, C{--jobs} at a time, starting from its corpus in C{tests/fuzz/corpus/<target>/}; new inputs
go to a temporary folder, or with C{--keep} are merged into the corpus (only those that add
coverage). A failing input is written to C{--artifacts} (default: a temporary folder), and the
run exits non-zero after printing it. C{--replay} runs files through a target without fuzzing.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
DICTIONARIES = HERE / "dictionaries"
#: Targets whose inputs go through Twisted's HTTP parser: it is instrumented too, so that the
#: fuzzer sees which headers and bodies reach new code there.
_THROUGH_TWISTED_WEB = {"http", "admin"}
_NAMES = ("request_line", "query", "http", "bencode", "udp", "journal", "admin", "websocket")


def _libfuzzer_args(target: str, seconds: int, work: Path, artifacts: Path) -> list[str]:
    args = [
        str(work),
        str(CORPUS / target),
        f"-max_total_time={seconds}",
        "-max_len=4096",
        # An input that takes this long is a finding: a request that could stall the reactor.
        "-timeout=10",
        "-rss_limit_mb=2048",
        f"-artifact_prefix={artifacts}/{target}-",
        "-print_final_stats=1",
    ]
    dictionary = DICTIONARIES / f"{target}.dict"
    if dictionary.is_file():
        args.append(f"-dict={dictionary}")
    return args


def _fuzz_here(target: str, libfuzzer_args: list[str]) -> None:
    """Fuzz C{target} in this process (atheris exits the process when done)."""
    import atheris

    # libFuzzer runs its own command line again for a merge: the launcher that started this.
    launcher = os.environ.get(_LAUNCHER, sys.argv[0])

    include = ["tracker", "tests.fuzz.targets", "tests.helpers"]
    if target in _THROUGH_TWISTED_WEB:
        include += ["twisted.web.http", "twisted.web.server"]
    with atheris.instrument_imports(include=include):
        from tests.fuzz.targets import TARGETS
    atheris.Setup([launcher, *libfuzzer_args], TARGETS[target])
    atheris.Fuzz()


_DONE = re.compile(r"#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+) corp: (\S+)")
_PULSE = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\S+)")
_RATE = re.compile(r"stat::average_exec_per_sec:\s+(\d+)")
_NEW = re.compile(r"stat::new_units_added:\s+(\d+)")


def summary(output: str) -> str:
    """One line from libFuzzer's output: runs, coverage, corpus and speed."""
    done = _DONE.findall(output) or _PULSE.findall(output)
    rate = _RATE.findall(output)
    new = _NEW.findall(output)
    if not done:
        return "no statistics"
    runs, cov, ft, corp = done[-1]
    return (
        f"{int(runs):,} runs, {rate[-1] if rate else '?'} exec/s, cov {cov}, ft {ft}, "
        f"corpus {corp}, {new[-1] if new else '?'} new"
    )


_LAUNCHER = "TRACKER_FUZZ_LAUNCHER"


def launcher(target: str, scratch: Path) -> Path:
    """An executable that fuzzes C{target} with the arguments it is given, as libFuzzer needs
    to run its command line again (for a merge)."""
    path = scratch / f"fuzz-{target}"
    path.write_text(
        "#!/bin/sh\n"
        f'cd "{HERE.parent.parent}" && {_LAUNCHER}="$0" exec "{sys.executable}"'
        f' -m tests.fuzz.run --child {target} "$@"\n'
    )
    path.chmod(0o755)
    return path


class _Job:
    def __init__(self, target: str, seconds: int, scratch: Path, artifacts: Path) -> None:
        self.target = target
        self.work = scratch / target
        self.work.mkdir()
        self.log_path = scratch / f"{target}.log"
        self.started = time.monotonic()
        args = _libfuzzer_args(target, seconds, self.work, artifacts)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(launcher(target, scratch)), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log_path.read_text("utf-8", "replace")


def _merge(target: str, work: Path) -> None:
    """Add to the target's corpus the inputs of C{work} that reach new coverage."""
    before = set(os.listdir(CORPUS / target))
    subprocess.run(
        [str(launcher(target, work.parent)), "-merge=1", str(CORPUS / target), str(work)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    added = len(set(os.listdir(CORPUS / target)) - before)
    print(f"   {target}: {added} inputs added to {CORPUS / target}")


def fuzz(targets: list[str], seconds: int, jobs: int, keep: bool, artifacts: Path) -> int:
    """Fuzz each target for C{seconds}, C{jobs} at a time; the number that failed."""
    failed = 0
    with tempfile.TemporaryDirectory(prefix="tracker-fuzz-") as scratch_name:
        scratch = Path(scratch_name)
        waiting = list(targets)
        running: list[_Job] = []
        while waiting or running:
            while waiting and len(running) < jobs:
                running.append(_Job(waiting.pop(0), seconds, scratch, artifacts))
            time.sleep(0.2)
            for job in [j for j in running if j.process.poll() is not None]:
                running.remove(job)
                output = job.output()
                took = time.monotonic() - job.started
                code = job.process.returncode
                status = "ok" if code == 0 else f"FAILED (exit {code})"
                print(f"== {job.target}: {status} in {took:.0f} s: {summary(output)}", flush=True)
                if code != 0:
                    failed += 1
                    print(output[-6000:], flush=True)
                elif keep:
                    _merge(job.target, job.work)
    return failed


def replay(target: str, paths: list[str]) -> int:
    from tests.fuzz.targets import TARGETS

    for path in paths:
        TARGETS[target](Path(path).read_bytes())
        print(f"{path}: ok")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        # One target in this process, with libFuzzer's arguments as they are.
        _fuzz_here(argv[1], argv[2:])
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("targets", nargs="*", metavar="TARGET", help=", ".join(_NAMES))
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", 40)))
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--keep", action="store_true", help="merge new inputs into the corpus")
    parser.add_argument("--artifacts", type=Path, help="where failing inputs are written")
    parser.add_argument("--replay", nargs="+", metavar="FILE", help="run FILEs, do not fuzz")
    options = parser.parse_args(argv)
    targets = options.targets or list(_NAMES)
    unknown = set(targets) - set(_NAMES)
    if unknown:
        parser.error(f"no such target: {', '.join(sorted(unknown))}")
    if options.replay:
        if len(targets) != 1:
            parser.error("--replay takes one TARGET")
        return replay(targets[0], options.replay)
    try:
        import atheris  # noqa: F401
    except ImportError:
        parser.error("atheris is not installed: pip install '.[fuzz]' (CPython 3.11 on Linux)")
    artifacts = options.artifacts or Path(tempfile.mkdtemp(prefix="tracker-fuzz-findings-"))
    artifacts.mkdir(parents=True, exist_ok=True)
    print(f"fuzzing {', '.join(targets)} for {options.seconds} s each; findings go to {artifacts}")
    failed = fuzz(targets, options.seconds, options.jobs, options.keep, artifacts)
    if not failed and not any(artifacts.iterdir()):
        shutil.rmtree(artifacts)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
