"""What a newcomer asks the project's commands first: `make help` and `scripts/stale-lock --help`."""

import re
import subprocess

from harness import ROOT


def test_make_alone_lists_every_target_with_what_it_does():
    listed = subprocess.run(["make", "--no-print-directory"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    targets = dict(re.findall(r"^  (\S+) +(\S.*)$", listed, re.MULTILINE))
    phony = re.search(r"^\.PHONY: (.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE).group(1).split()
    assert set(targets) == set(phony) - {"help"}
    assert all(len(text) > 10 for text in targets.values()), targets


def test_stale_lock_help_says_what_it_clears_and_when():
    shown = subprocess.run([str(ROOT / "scripts/stale-lock"), "--help"], capture_output=True, text=True)
    assert shown.returncode == 0
    assert shown.stdout.startswith("scripts/stale-lock STACK: clear what a `pulumi` that died left")
    assert "scripts/stale-lock dev" in shown.stdout and "Exit status" in shown.stdout
    wrong = subprocess.run([str(ROOT / "scripts/stale-lock")], capture_output=True, text=True)
    assert wrong.returncode != 0 and "--help" in wrong.stderr
