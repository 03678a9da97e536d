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


# A stand-in `python3 -m venv DIR`: a venv whose pip records its arguments and takes a second,
# so the Makefile's own lines around pip can be read without installing anything.
PYTHON3 = r'''#!/usr/bin/env bash
[ "$1 $2" = "-m venv" ] || exit 2
mkdir -p "$3/bin"
printf '#!/usr/bin/env bash\nsleep 1\necho "$*" > "%s/pip-args"\n' "$3" > "$3/bin/pip"
chmod +x "$3/bin/pip"
'''


def test_a_first_venv_install_says_what_runs_while_pip_is_quiet_and_how_long_it_took(tmp_path):
    for name in ("Makefile", "requirements.txt", "requirements-airflow.txt", "constraints-airflow.txt"):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy/requirements.txt").write_bytes((ROOT / "policy/requirements.txt").read_bytes())
    stand_ins = tmp_path / "bin"
    stand_ins.mkdir()
    (stand_ins / "python3").write_text(PYTHON3)
    (stand_ins / "python3").chmod(0o755)
    env = {"PATH": f"{stand_ins}:/usr/bin:/bin"}
    for target, venvs in (("venv", [".venv"]), ("test-venvs", [".venv-airflow", "policy/venv"])):
        shown = subprocess.run(["make", "--no-print-directory", target], cwd=tmp_path, env=env, capture_output=True,
                               text=True, check=True).stdout
        for venv in venvs:
            before = re.search(rf"^make: pip install (-r \S+.*) into {re.escape(venv)}: once, a minute or more, "
                               r"quiet until done$", shown, re.MULTILINE)
            after = re.search(rf"^make: {re.escape(venv)} ready in (\d+)s$", shown, re.MULTILINE)
            assert before and after and before.start() < after.start(), shown
            assert int(after.group(1)) >= 1
            assert (tmp_path / venv / "pip-args").read_text().split() == [
                "install", "-q", "--disable-pip-version-check", *before.group(1).split()]
