"""The README's own examples hold: its stack file validates, the names it tells a DAG to read are
the ones the tools set, and the files it names exist."""

import re

import yaml

import config
import remote_kpo_janitor_rules as rules
from consumer import astro_env
from harness import ROOT

README = (ROOT / "README.md").read_text()


def section(heading: str) -> str:
    """The text under the heading `heading`, up to the next heading of its level or above."""
    lines = README.splitlines(keepends=True)
    fenced, headings = False, {}  # line number -> level, outside code blocks (a `# comment` is no heading)
    for i, line in enumerate(lines):
        fenced ^= line.startswith("```")
        if not fenced and (match := re.match(r"(#+) ", line)):
            headings[i] = len(match.group(1))
    (start,) = [i for i in headings if lines[i].strip() == f"{'#' * headings[i]} {heading}"]
    end = next((i for i in headings if i > start and headings[i] <= headings[start]), len(lines))
    return "".join(lines[start + 1:end])


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.M | re.S)


def test_the_your_own_stack_example_is_a_valid_stack_file():
    (example, *_) = blocks(section("Your own stack"), "yaml")
    document = yaml.safe_load(example)["config"]
    cfg = config.load({key.removeprefix("remote-kpo:"): value for key, value in document.items()})
    assert [d.name for d in cfg.deployments] == ["analytics", "ml-training"]


def test_the_gpu_example_reads_the_variable_astro_env_sets():
    outputs = {"deployments": {"ml-training": {"envVar": "AIRFLOW_CONN_KPO_ML_TRAINING",
                                               "connectionId": "kpo_ml_training"}},
               "airflowConnections": {"ml-training": "{}"}, "gpuTask": {"resourceName": "nvidia.com/gpu"}}
    mapping = astro_env.Mapping(stack="prod", source="--map", workspace_id=None, deployments={"ml-training": "clx0"})
    todo, _ = astro_env.assignments(outputs, mapping)
    (gpu_variable,) = [a.key for a in todo if a.key != "AIRFLOW_CONN_KPO_ML_TRAINING"]
    # Airflow's Variable of an AIRFLOW_VAR_<NAME> environment variable is <name>, lower case.
    name = gpu_variable.removeprefix("AIRFLOW_VAR_").lower()
    (example,) = blocks(section("GPU tasks"), "python")
    assert f'Variable.get("{name}", deserialize_json=True)' in example


def test_the_by_hand_hand_off_takes_the_connection_out_with_jq_r():
    (by_hand,) = [b for b in blocks(section("Handing them to Astro"), "sh") if "airflowConnections" in b]
    assert "jq -r '.[\"analytics\"]'" in by_hand and "jq -c" not in by_hand


def test_every_project_file_the_readme_names_exists():
    # In the text and in its commands (`--map-file ci/github/astro/...`); a placeholder such as
    # components/<cloud>_tasks.py ends the match before its `<`.
    named = set(re.findall(r"(?<![\w./-])((?:ci|scripts|components|consumer|dags|policy|stacks|tests|bench)/[\w./-]*\w)",
                           README))
    assert "ci/github/astro/onprem.yaml" in named
    assert sorted(path for path in named if not (ROOT / path).exists()) == []


def test_the_janitor_section_names_the_variable_astro_env_sets_and_shows_the_line_the_rules_log():
    text = section("Orphaned task pods")
    outputs = {"deployments": {"ml-training": {"envVar": "AIRFLOW_CONN_KPO_ML_TRAINING", "connectionId": "kpo_ml_training",
                                               "janitor": {"enabled": True}}},
               "airflowConnections": {"ml-training": "{}"}}
    mapping = astro_env.Mapping(stack="prod", source="--map", workspace_id=None, deployments={"ml-training": "clx0"})
    todo, _ = astro_env.assignments(outputs, mapping)
    (variable,) = [a.key for a in todo if a.key != "AIRFLOW_CONN_KPO_ML_TRAINING"]
    assert variable.removeprefix("AIRFLOW_VAR_").lower().removesuffix("kpo_ml_training") in text
    (example,) = blocks(text, "")
    removal = rules.Removal("train-x7f2", "kpo-ml-training", "u", "1", "pending", 2160, 2100, {
        "dag_id": "train", "task_id": "fit", "run_id": "manual__2026-12-05T100000-0000-3f2a9c1d0", "try_number": "1"})
    assert example.strip() == removal.line()
