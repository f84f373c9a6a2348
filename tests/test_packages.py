"""The JVM packages: one list of coordinates that matches the wheels, the docs and the bundle,
and a local session that finds them offline (or says which one is missing and how to fetch it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import graphframes
import pyspark
import pytest
import yaml
from delta import configure_spark_with_delta_pip
from pyspark.sql import SparkSession

from resolution.packages import (
    DELTA,
    FETCH_COMMAND,
    GRAPHFRAMES,
    PACKAGES,
    SPARK_PROVIDED,
    MissingPackageError,
    local_session_conf,
    maven_repository,
    missing_packages,
)
from resolution.session import jvm_packages_conf

ROOT = Path(__file__).resolve().parents[1]
# Any Maven coordinate of Delta's or GraphFrames' groups, with or without a version.
COORDINATE = re.compile(r"io\.(?:delta|graphframes):[A-Za-z0-9_.\-]+(?::[0-9][A-Za-z0-9_.\-]*)?")
DOCUMENTS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("**/*.md")),
    ROOT / "databricks.yml",
    *sorted((ROOT / "deploy").glob("**/*.*")),
    *sorted((ROOT / "jobs").glob("*.py")),
    *sorted((ROOT / "notebooks").glob("*.py")),
]


def test_delta_coordinate_is_the_one_the_delta_spark_wheel_names():
    builder = configure_spark_with_delta_pip(SparkSession.Builder())
    assert builder._options["spark.jars.packages"] == DELTA.coordinate  # noqa: SLF001


def test_graphframes_coordinate_matches_the_graphframes_py_wheel():
    assert GRAPHFRAMES.version == graphframes.__version__
    assert GRAPHFRAMES.artifact.startswith(f"graphframes-spark{pyspark.__version__[0]}_")


def test_docs_bundle_and_examples_name_exactly_the_coordinates_the_code_uses():
    expected = {package.coordinate for package in PACKAGES}
    named = {
        (path.relative_to(ROOT).as_posix(), found)
        for path in DOCUMENTS
        for found in COORDINATE.findall(path.read_text(encoding="utf-8"))
    }
    assert {found for _, found in named} <= expected, sorted(
        (path, found) for path, found in named if found not in expected
    )
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert all(coordinate in readme for coordinate in expected)


def test_the_bundle_installs_graphframes_on_every_cluster_that_resolves():
    bundle = yaml.safe_load((ROOT / "databricks.yml").read_text(encoding="utf-8"))
    for name, job in bundle["resources"]["jobs"].items():
        for task in job["tasks"]:
            if "run" in task["python_wheel_task"]["parameters"][:1]:
                libraries = [lib.get("maven", {}).get("coordinates") for lib in task["libraries"]]
                assert GRAPHFRAMES.coordinate in libraries, (name, task["task_key"])


def test_every_excluded_dependency_is_one_spark_ships():
    shipped = [jar.name for jar in (Path(pyspark.__file__).parent / "jars").glob("*.jar")]
    bridged = {"commons-logging": "jcl-over-slf4j"}  # Spark ships commons-logging's API as a bridge
    for group_artifact in SPARK_PROVIDED:
        artifact = bridged.get(group_artifact.split(":")[1], group_artifact.split(":")[1])
        assert any(re.fullmatch(rf"{re.escape(artifact)}-\d.*\.jar", jar) for jar in shipped), artifact


def test_a_package_not_fetched_fails_fast_naming_it_and_the_make_target(tmp_path):
    assert missing_packages(PACKAGES, tmp_path) == list(PACKAGES)
    with pytest.raises(MissingPackageError) as caught:
        local_session_conf([DELTA], tmp_path)
    message = str(caught.value)
    assert DELTA.coordinate in message and FETCH_COMMAND in message and str(tmp_path) in message


def test_jvm_backend_session_settings_resolve_from_the_local_repository_only(monkeypatch):
    if missing_packages([DELTA]):
        pytest.skip(f"{DELTA.coordinate} not fetched: run `{FETCH_COMMAND}`")
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    conf = jvm_packages_conf("jvm")
    assert conf["spark.jars.packages"].split(",")[0] == DELTA.coordinate
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    settings = Path(conf["spark.jars.ivySettings"]).read_text()
    assert maven_repository().as_uri() in settings and "repo1.maven.org" not in settings
    assert jvm_packages_conf("embedded") == {} and jvm_packages_conf("auto") == {}


def test_the_test_session_loaded_delta_from_the_local_repository(spark):
    if missing_packages([DELTA]):
        pytest.skip(f"{DELTA.coordinate} not fetched: run `{FETCH_COMMAND}`")
    from delta.tables import DeltaTable

    assert DeltaTable.isDeltaTable(spark, str(ROOT)) is False  # the JVM class answers


def test_idr_run_on_the_jvm_backend_without_the_jars_exits_2_naming_them(tmp_path):
    """In a fresh process (this one's session is built already), as a user would run it."""
    from tests.incremental_harness import sample_pipeline_file

    config = sample_pipeline_file(tmp_path, backend="jvm")
    env = {**os.environ, "IDR_MAVEN_REPOSITORY": str(tmp_path / "empty-repository")}
    command = [sys.executable, "-m", "resolution.cli", "run", "--config", str(config),
               "--var", f"warehouse={tmp_path / 'lakehouse'}"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert DELTA.coordinate in result.stderr and FETCH_COMMAND in result.stderr
    assert "storage.backend" in result.stderr
    assert not (tmp_path / "lakehouse").exists()  # nothing started


def test_a_cluster_session_keeps_the_cluster_sized_shuffle_and_snapshot_partitions():
    from resolution.session import session_defaults

    local = session_defaults("local[*]", None)
    assert local["spark.sql.shuffle.partitions"] == "8" and "spark.databricks.delta.snapshotPartitions" in local
    for master in ("yarn", "k8s://https://api:6443", "spark://head:7077"):
        cluster = session_defaults(master, None)
        assert "spark.sql.shuffle.partitions" not in cluster and "spark.databricks.delta.snapshotPartitions" not in cluster
        assert "spark.driver.memory" not in cluster and cluster["spark.sql.adaptive.enabled"] == "true"
    assert session_defaults("yarn", 400)["spark.sql.shuffle.partitions"] == "400"
