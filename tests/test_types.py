"""Pyright over the program (pyrightconfig.json: components/, stacks/, config.py, __main__.py).

Resource inputs are typed with the cloud SDKs' own `*Args`/`*ArgsDict` types, generated from
the providers' schemas: a misspelt or misplaced property key in a nested input, which the
mocks accept, is a type error here.
"""

import json
import subprocess
import sys

from harness import ROOT


def test_pyright_finds_no_type_error_in_the_program():
    done = subprocess.run([sys.executable, "-m", "pyright", "--outputjson", "-p", str(ROOT)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    report = json.loads(done.stdout)
    errors = [f"{d['file'].removeprefix(str(ROOT) + '/')}:{d['range']['start']['line'] + 1}: {d['message']}"
              for d in report["generalDiagnostics"] if d["severity"] == "error"]
    assert errors == []
    assert report["summary"]["filesAnalyzed"] >= 10
