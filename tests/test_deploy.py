"""The deployment files call `idr` with arguments it accepts: the Databricks bundle
(databricks.yml), the Airflow DAG (deploy/airflow) and the crontab (deploy/cron). No Spark."""

from __future__ import annotations

import ast
import re
import shlex
import sys
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml

from resolution.cli import _parser
from resolution.config import load_config, parse_variables

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = yaml.safe_load((ROOT / "databricks.yml").read_text(encoding="utf-8"))
JOBS = BUNDLE["resources"]["jobs"]
WHEEL_TASKS = [
    (name, task) for name, job in JOBS.items() for task in job["tasks"] if "python_wheel_task" in task
]
SHELL_OPERATORS = {"&&", "||", ";", "|", ">", ">>", "2>&1"}


@cache
def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def normalized(name: str) -> str:
    """A distribution name as wheels and Databricks' package_name spell it (lakehouse_idr)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def bundle_variables(target: str) -> dict[str, str]:
    """The bundle's variable defaults, overridden by the target's values."""
    values = {name: spec.get("default") for name, spec in BUNDLE["variables"].items()}
    values.update(BUNDLE["targets"][target].get("variables") or {})
    return {name: str(value) for name, value in values.items()}


def resolve(text: str, variables: dict[str, str]) -> str:
    """``text`` with ${var.X} (nested too) and ${workspace.file_path} (the repository) replaced."""
    for _ in range(10):
        before = text
        text = text.replace("${workspace.file_path}", str(ROOT))
        text = re.sub(r"\$\{var\.(\w+)\}", lambda m: variables.get(m[1], m[0]), text)
        if text == before:
            break
    assert "${" not in text, f"unresolved reference in {text!r}"
    return text


def parse(argv: list[str]):
    """``idr``'s own parse of ``argv``; fails the test (not the session) on a bad argument."""
    try:
        return _parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"idr cannot parse {argv}")


def idr_arguments(command: str) -> list[str]:
    """The arguments after the ``idr`` executable in a shell command, up to redirections."""
    words = shlex.split(command)
    start = next(i for i, word in enumerate(words) if Path(word).name == "idr") + 1
    end = next((i for i, word in enumerate(words[start:], start) if word in SHELL_OPERATORS), len(words))
    return words[start:end]


def interval_minutes(job: dict) -> float | None:
    """Minutes between runs of a job: a periodic trigger, or a Quartz cron every N minutes / weekly."""
    periodic = (job.get("trigger") or {}).get("periodic")
    if periodic:
        return periodic["interval"] * {"HOURS": 60, "DAYS": 1440, "WEEKS": 10080}[periodic["unit"]]
    cron = (job.get("schedule") or {}).get("quartz_cron_expression")
    if not cron:
        return None
    _, minute, hour, day, month, weekday = cron.split()[:6]
    every = re.fullmatch(r"[0*]/(\d+)", minute)
    if every and hour == "*" and day in "*?" and weekday in "*?":
        return int(every[1])
    if minute.isdigit() and hour.isdigit() and day == "?" and month == "*" and re.fullmatch(r"[A-Z]{3}|[1-7]", weekday):
        return 7 * 1440
    return None


def weekly(cron: str | None) -> bool:
    """True for a five-field cron schedule that fires once a week (minute hour * * weekday)."""
    return bool(re.fullmatch(r"\d+ \d+ \* \* [0-7]", cron or ""))


def run_modes(job: str) -> set[str]:
    """The --mode of every `idr run` task of a bundle job."""
    variables = bundle_variables("dev")
    argvs = [[resolve(p, variables) for p in t["python_wheel_task"]["parameters"]] for j, t in WHEEL_TASKS if j == job]
    return {parse(argv).mode for argv in argvs if argv[0] == "run"}


@pytest.mark.parametrize("target", ["dev", "prod"])
def test_targets_set_catalog_and_schema(target):
    settings = BUNDLE["targets"][target]
    assert settings["mode"] == {"dev": "development", "prod": "production"}[target]
    assert {"catalog", "schema"} <= set(settings.get("variables") or {})
    assert bundle_variables("dev")["schema"] != bundle_variables("prod")["schema"], "dev would write prod tables"


def test_artifact_builds_the_wheel_without_pyspark():
    (artifact,) = BUNDLE["artifacts"].values()
    assert artifact["type"] == "whl" and (ROOT / artifact.get("path", ".")).resolve() == ROOT
    assert "wheel" in artifact["build"] and "[spark]" not in artifact["build"]
    assert not [dep for dep in project()["dependencies"] if normalized(re.split(r"[ <>=!;\[]", dep)[0]) == "pyspark"]


@pytest.mark.parametrize("target", ["dev", "prod"])
@pytest.mark.parametrize(("job", "task"), WHEEL_TASKS, ids=[f"{j}.{t['task_key']}" for j, t in WHEEL_TASKS])
def test_wheel_task_calls_idr_with_valid_arguments(target, job, task):
    wheel = task["python_wheel_task"]
    scripts = project()["scripts"]
    assert wheel["package_name"] == normalized(project()["name"])
    assert wheel["entry_point"] in scripts
    installed = [
        ep for ep in entry_points(group="console_scripts")
        if ep.name == wheel["entry_point"] and normalized(ep.dist.name) == wheel["package_name"]
    ]
    assert installed, f"{wheel['entry_point']} is not a console script of the installed {wheel['package_name']}"
    assert installed[0].value == scripts[wheel["entry_point"]] and callable(installed[0].load())
    assert any(re.fullmatch(r"(\./)?dist/\*\.whl", lib.get("whl", "")) for lib in task["libraries"])

    variables = bundle_variables(target)
    args = parse([resolve(p, variables) for p in wheel["parameters"]])
    if getattr(args, "config", None):
        assert Path(args.config).is_file(), f"{args.config} is not in the repository"
        given = parse_variables(args.var)
        for value in given.values():  # files the bundle uploads (the example model) exist
            assert not value.startswith(str(ROOT)) or Path(value).is_file(), value
        load_config(args.config, given)


def test_schedules():
    incremental, full, train = JOBS["idr_incremental"], JOBS["idr_full_refresh"], JOBS["idr_train"]
    assert interval_minutes(incremental) == 10 and incremental["max_concurrent_runs"] == 1
    assert run_modes("idr_incremental") <= {"auto", "incremental"} and run_modes("idr_incremental")
    assert interval_minutes(full) == 7 * 1440 and run_modes("idr_full_refresh") == {"full"}
    assert not {"schedule", "trigger", "continuous"} & set(train), "training runs on demand only"


def test_airflow_dag_runs_idr():
    tree = ast.parse((ROOT / "deploy/airflow/lakehouse_idr_dag.py").read_text(encoding="utf-8"))
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]

    def name(call: ast.Call) -> str:
        return getattr(call.func, "id", getattr(call.func, "attr", ""))

    def keywords(call: ast.Call) -> dict:
        return {k.arg: ast.literal_eval(k.value) for k in call.keywords if isinstance(k.value, ast.Constant | ast.List)}

    commands = [keywords(c).get("bash_command") for c in calls if name(c) == "BashOperator"]
    commands += [
        ["run", *keywords(c).get("application_args", [])] for c in calls
        if name(c) == "SparkSubmitOperator" and keywords(c).get("application", "").endswith("jobs/run_resolution.py")
    ]
    parsed = [parse(idr_arguments(c) if isinstance(c, str) else c) for c in commands if c]
    modes = {args.mode for args in parsed if args.command == "run"}
    assert modes & {"auto", "incremental"} and "full" in modes, f"`idr run` modes: {modes}"
    dags = [keywords(c) for c in calls if name(c) == "DAG"]
    schedules = {dag.get("schedule") for dag in dags}
    assert "*/10 * * * *" in schedules and any(weekly(s) for s in schedules), schedules
    assert all(dag.get("max_active_runs") == 1 and dag.get("catchup") is False for dag in dags)


def test_crontab_lines_run_idr():
    lines = (ROOT / "deploy/cron/lakehouse-idr.crontab").read_text(encoding="utf-8").splitlines()
    entries = [line.split(None, 5) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    modes = {}
    for *schedule, command in entries:
        assert len(schedule) == 5 and all(re.fullmatch(r"[\d*/,\-]+", field) for field in schedule), schedule
        assert "%" not in command, "cron turns % into a newline"
        modes[" ".join(schedule)] = parse(idr_arguments(command)).mode
    assert modes.get("*/10 * * * *") in ("auto", "incremental")
    assert any(weekly(schedule) for schedule, mode in modes.items() if mode == "full")


def test_wheel_entry_point_fails_the_task_on_error(monkeypatch, tmp_path):
    (_, task), *_ = WHEEL_TASKS
    name = task["python_wheel_task"]["entry_point"]
    (entry,) = [ep for ep in entry_points(group="console_scripts") if ep.name == name]
    monkeypatch.setattr(sys, "argv", [name, "run", "--config", str(tmp_path / "missing.yml")])
    with pytest.raises(SystemExit) as exit_:
        entry.load()()  # what the Databricks wheel launcher does; exit 2 here (config error)
    assert exit_.value.code not in (0, None)
