"""scripts/toolchain on a first run: one line per component with its place in the order and
its rough cold time, its elapsed time at the end, Go's own output in a log shown only on failure.

Runs a copy of the script with one small component (the language host) and an empty cache, so
it really builds; Go's build cache keeps it to seconds.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

from realenv import ROOT


def toolchain_copy(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "project"
    shutil.copytree(ROOT / "scripts" / "go" / "language-python", root / "scripts" / "go" / "language-python")
    shutil.copy(ROOT / "scripts" / "toolchain", root / "scripts" / "toolchain")
    # A cache of its own for the project's builds; Go's build cache (which would move with
    # XDG_CACHE_HOME) stays the user's, so the compile is quick.
    gocache = subprocess.run(["go", "env", "GOCACHE"], capture_output=True, text=True, check=True).stdout.strip()
    return root, {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "GOCACHE": gocache}


def run(root: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(root / "scripts" / "toolchain"), "language-python"], env=env,
                          capture_output=True, text=True, timeout=600)


def test_a_cold_build_says_what_it_builds_how_long_it_took_and_where_go_wrote(tmp_path):
    root, env = toolchain_copy(tmp_path)
    result = run(root, env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    log_path = tmp_path / "cache" / "remote-kpo" / "logs" / "language-python.log"
    assert re.fullmatch(r"toolchain: \[1/1\] pulumi-language-python \S+ \(stand-in\): building into \S+ "
                        rf"\(about 1 min cold on 2 cores; Go's output: {re.escape(str(log_path))}\)", lines[1]), lines
    assert re.fullmatch(r"toolchain: \[1/1\] language-python: built in \d+s", lines[-2]), lines
    assert re.fullmatch(r"toolchain: done in \d+s; .*", lines[-1]), lines
    assert log_path.exists()
    # Warm: one line for the component, nothing built.
    again = run(root, env).stdout.splitlines()
    assert again[1] == "toolchain: [1/1] pulumi-language-python 3.259.0 (stand-in): cached", again
    assert not any("built" in line for line in again)


def test_a_failed_build_shows_go_s_own_output(tmp_path):
    root, env = toolchain_copy(tmp_path)
    with open(root / "scripts" / "go" / "language-python" / "main.go", "a") as source:
        source.write("\nfunc broken() { undefinedName() }\n")
    result = run(root, env)
    assert result.returncode != 0
    assert "undefined: undefinedName" in result.stderr
    assert re.search(r"toolchain: error: go build \. failed \(all of its output: \S+language-python\.log\)",
                     result.stderr), result.stderr


def test_every_step_has_a_number_of_its_own():
    """The project's own run (warm after the first): steps numbered 1..N in order, each number
    naming one binary or set of binaries (etcd and the Kubernetes binaries, kwok, kwok-front and
    kube-scheduler are steps of their own)."""
    result = subprocess.run([str(ROOT / "scripts" / "toolchain")], capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stderr
    steps = [(int(number), int(total), text) for number, total, text in
             re.findall(r"^toolchain: \[(\d+)/(\d+)\] (.*)$", result.stdout, re.MULTILINE)]
    numbers = [number for number, _, _ in steps]
    assert numbers == sorted(numbers), result.stdout
    assert sorted(set(numbers)) == list(range(1, steps[0][1] + 1)), result.stdout
    assert {total for _, total, _ in steps} == {steps[0][1]}
    named: dict[int, set[str]] = {}
    for number, _, text in steps:
        if ": built in " not in text:  # a step that built ends with its elapsed time
            named.setdefault(number, set()).add(re.split(r"[ :]", text, maxsplit=1)[0])
    assert all(len(names) == 1 for names in named.values()), named
    assert {"etcd", "kubernetes", "kwok", "kwok-front", "kube-scheduler"} <= set().union(*named.values())
