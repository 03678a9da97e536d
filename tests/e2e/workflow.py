"""Run a GitHub Actions job's own `run:` steps here, as a runner would, for one matrix entry.

Only what the templates in ci/github/ use is understood, and anything else is an error, so the
templates cannot grow a construct these tests would silently skip:
- `${{ a.b.c }}` context look-ups (matrix, inputs, vars, secrets, github, steps, env) in `env:`;
- `if:` conditions made of `X == 'v'`, `X != 'v'`, `X` and `!X` joined by `&&`;
- $GITHUB_ENV and $GITHUB_OUTPUT (NAME=value lines), $RUNNER_TEMP, `defaults.run.shell: bash`.
`uses:` steps (checkout, setup-python, cloud logins) are not run: the caller's environment stands
in for them; so are `run:` steps whose id starts with `install-` (the local toolchain has the tools).
"""

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
PATH = r"[A-Za-z_][\w-]*(?:\.[\w-]+)*"


def load(path: Path) -> dict:
    document = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as true.
    if True in document:
        document["on"] = document.pop(True)
    return document


def lookup(path: str, context: dict):
    value = context
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def render(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return "" if value is None else str(value)


def resolve(text, context: dict) -> str:
    def one(match):
        if not re.fullmatch(PATH, match.group(1)):
            raise ValueError(f"expression not understood by tests/e2e/workflow.py: {match.group(0)}")
        return render(lookup(match.group(1), context))

    return EXPRESSION.sub(one, str(text))


def condition(expression: str, context: dict) -> bool:
    results = []
    for term in (t.strip() for t in expression.split("&&")):
        compared = re.fullmatch(rf"({PATH})\s*(==|!=)\s*'([^']*)'", term)
        truthy = re.fullmatch(rf"(!?)({PATH})", term)
        if compared:
            equal = render(lookup(compared.group(1), context)) == compared.group(3)
            results.append(equal if compared.group(2) == "==" else not equal)
        elif truthy:
            value = bool(lookup(truthy.group(2), context))
            results.append(not value if truthy.group(1) else value)
        else:
            raise ValueError(f"condition not understood by tests/e2e/workflow.py: {expression}")
    return all(results)


def read_commands_file(path: Path) -> dict:
    """NAME=value lines of $GITHUB_ENV / $GITHUB_OUTPUT."""
    pairs = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        if "<<" in line.split("=", 1)[0]:
            raise ValueError(f"multi-line value not understood by tests/e2e/workflow.py: {line}")
        name, _, value = line.partition("=")
        pairs[name] = value
    return pairs


@dataclass
class StepRun:
    name: str
    returncode: int
    output: str
    outputs: dict = field(default_factory=dict)


def run_job(workflow: dict, job: str, context: dict, cwd: Path, base_env: dict, temp: Path) -> list[StepRun]:
    """Run `job`'s `run:` steps in order, stopping at the first that fails (as a runner does)."""
    spec = workflow["jobs"][job]
    assert workflow.get("defaults", {}).get("run", {}).get("shell") == "bash", "runs as bash only"
    context = {**context, "steps": {}, "env": {}}
    temp.mkdir(parents=True, exist_ok=True)
    github_env = temp / "github_env"
    github_env.write_text("")
    env = {**base_env, "RUNNER_TEMP": str(temp), "GITHUB_ENV": str(github_env)}
    for scope in (workflow.get("env", {}), spec.get("env", {})):
        for name, value in scope.items():
            env[name] = context["env"][name] = resolve(value, context)
    runs = []
    for index, step in enumerate(spec["steps"]):
        if "run" not in step or str(step.get("id", "")).startswith("install-"):
            continue
        if "if" in step and not condition(step["if"], context):
            continue
        assert "${{" not in step["run"], f"an expression in a run script: {step['run']}"
        output_file = temp / f"output-{index}"
        step_env = {**env, **read_commands_file(github_env), "GITHUB_OUTPUT": str(output_file)}
        step_env.update({name: resolve(value, context) for name, value in step.get("env", {}).items()})
        script = temp / f"step-{index}.sh"
        script.write_text(step["run"])
        # GitHub's `shell: bash`: bash --noprofile --norc -eo pipefail {0}
        result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=cwd,
                                env=step_env, capture_output=True, text=True, timeout=600)
        outputs = read_commands_file(output_file)
        if "id" in step:
            context["steps"][step["id"]] = {"outputs": outputs}
        runs.append(StepRun(step.get("name", step["run"].split("\n")[0]), result.returncode,
                            result.stdout + result.stderr, outputs))
        if result.returncode != 0:
            break
    return runs
