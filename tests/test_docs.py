"""
The README and docs/ as a newcomer reads them: short, every link and option true, and every
command they show run, as written, by a test or by .ci/first_contact.py.
"""

from __future__ import annotations

import glob
import os
import re

from twisted.trial.unittest import SynchronousTestCase

from tracker.daemon.tap import Options

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def files(pattern: str) -> list[str]:
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


DOCUMENTS = ["README.md", *files("docs/*.md")]
#: Where the documented commands are run: CI runs the README's test command itself.
RUNNERS = [".ci/first_contact.py", ".ci/run", *files("tests/*.py")]


def read(path: str) -> str:
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def commands(text: str) -> list[str]:
    """The lines of every ```sh block: the commands a reader is told to type."""
    blocks = re.findall(r"```sh\n(.*?)```\n", text, re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


class DocumentsTests(SynchronousTestCase):
    def test_readme_is_short(self) -> None:
        """The README stays a newcomer's page, task by task; depth goes to docs/."""
        self.assertLessEqual(len(read("README.md").splitlines()), 250)

    def test_every_command_is_run_somewhere(self) -> None:
        """Each command in README.md and docs/ appears, as written, in what CI runs."""
        runners = "".join(read(path) for path in RUNNERS)
        documented = [c for path in DOCUMENTS for c in commands(read(path))]
        self.assertGreater(len(documented), 5)
        missing = [command for command in documented if command not in runners]
        self.assertEqual(missing, [], "documented commands that nothing runs")

    def test_no_command_needs_an_activated_virtualenv(self) -> None:
        """Programs installed into the venv are called by their path inside it."""
        programs = {"twistd", "pip", "pytest", "ruff", "mypy", "python"}
        for path in DOCUMENTS:
            for command in commands(read(path)):
                words = command.split()
                for before, word in zip(["", *words], words):
                    if word in programs and before != "-m":
                        self.fail(f"{path}: {word} without its venv's path in: {command}")

    def test_links_lead_somewhere(self) -> None:
        """Every relative link in README.md and docs/ names a file or folder that exists."""
        for path in DOCUMENTS:
            for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", read(path)):
                where = os.path.join(ROOT, os.path.dirname(path), target)
                self.assertTrue(os.path.exists(where), f"{path} links to {target}")

    def test_settings_table_is_the_options(self) -> None:
        """The README's settings table names every option of `twistd tracker`, and no other."""
        table = re.findall(r"^\| `--([a-z-]+)", read("README.md"), re.M)
        names = {name.rstrip("=") for name in Options().longOpt} - {"help", "version"}
        self.assertEqual(sorted(set(table)), sorted(names))
