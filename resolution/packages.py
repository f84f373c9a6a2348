"""The JVM packages of the JVM backends: one list of Maven coordinates, and how to fetch them.

Everything that names a JVM package (the session, error messages, the README, the Databricks
bundle, the spark-submit and Airflow examples) takes it from here; ``tests/test_packages.py``
checks that the docs and the bundle name exactly these coordinates.

``make jars`` runs ``python -m resolution.packages fetch``: Maven downloads each package with its
dependencies into the local Maven repository (``~/.m2/repository``), where a local session's
``spark.jars.packages`` finds them with no network (see :func:`local_session_conf`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class MavenPackage:
    """One Maven coordinate ``group:artifact:version`` and what it is for."""

    group: str
    artifact: str
    version: str
    purpose: str
    jvm_class: str  # a class that loads when the package is on the classpath

    @property
    def coordinate(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}"

    def jar_path(self, repository: Path) -> Path:
        """Where Maven keeps this package's jar in ``repository``."""
        return (
            repository.joinpath(*self.group.split("."))
            / self.artifact
            / self.version
            / f"{self.artifact}-{self.version}.jar"
        )


# Must match the delta-spark wheel pinned in pyproject.toml: delta-spark's own
# configure_spark_with_delta_pip names delta-spark_<spark major.minor>_<scala>:<wheel version>.
DELTA = MavenPackage(
    group="io.delta",
    artifact="delta-spark_4.2_2.13",
    version="4.4.0",
    purpose="Delta Lake for Spark: table writes, MERGE, change data feed, streaming source",
    jvm_class="io.delta.tables.DeltaTable",
)
# Must match graphframes-py (graphframes.__version__): another version fails in py4j with
# "method does not exist".
GRAPHFRAMES = MavenPackage(
    group="io.graphframes",
    artifact="graphframes-spark4_2.13",
    version="0.12.3",
    purpose="GraphFrames: distributed connected components",
    jvm_class="org.graphframes.GraphFrame",
)
PACKAGES = (DELTA, GRAPHFRAMES)

# Delta's SQL extension and catalog: MERGE INTO, DESCRIBE HISTORY and Delta catalog tables.
DELTA_SQL_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}

# Dependencies of the packages that Spark itself ships (in pyspark's jars, at newer versions).
# Resolving them again would put a second, older copy of Hadoop, Parquet, Jackson... on the
# classpath; excluded, they need not be fetched at all.
SPARK_PROVIDED = (
    "com.fasterxml.jackson.core:jackson-annotations",
    "com.fasterxml.jackson.core:jackson-core",
    "com.fasterxml.jackson.core:jackson-databind",
    "com.github.luben:zstd-jni",
    "com.google.code.findbugs:jsr305",
    "commons-logging:commons-logging",
    "commons-pool:commons-pool",
    "org.apache.hadoop:hadoop-client-api",
    "org.apache.hadoop:hadoop-client-runtime",
    "org.apache.logging.log4j:log4j-api",
    "org.apache.logging.log4j:log4j-core",
    "org.apache.logging.log4j:log4j-slf4j2-impl",
    "org.apache.parquet:parquet-column",
    "org.apache.parquet:parquet-encoding",
    "org.apache.parquet:parquet-hadoop",
    "org.apache.parquet:parquet-jackson",
    "org.roaringbitmap:RoaringBitmap",
    "org.scala-lang:scala-library",
    "org.slf4j:slf4j-api",
)

FETCH_COMMAND = "make jars"


class MissingPackageError(RuntimeError):
    """A JVM package the configuration asks for is not in the local Maven repository."""


def maven_repository() -> Path:
    """The local Maven repository (``IDR_MAVEN_REPOSITORY``, default ``~/.m2/repository``)."""
    return Path(os.environ.get("IDR_MAVEN_REPOSITORY", Path.home() / ".m2" / "repository"))


def missing_packages(
    packages: Sequence[MavenPackage], repository: Path | None = None
) -> list[MavenPackage]:
    """The packages whose jar is not in the local Maven repository."""
    repository = repository or maven_repository()
    return [package for package in packages if not package.jar_path(repository).is_file()]


def missing_message(packages: Sequence[MavenPackage], repository: Path | None = None) -> str:
    """One message naming each missing coordinate and the command that fetches it."""
    repository = repository or maven_repository()
    names = ", ".join(package.coordinate for package in packages)
    return (
        f"JVM package(s) {names} not in the local Maven repository {repository}: fetch them with "
        f"`{FETCH_COMMAND}` (Maven), or pass them to spark-submit with --packages"
    )


def ivy_settings_file(repository: Path) -> str:
    """An Ivy settings file that resolves only from the local Maven repository.

    Spark resolves ``spark.jars.packages`` with Ivy. Its default chain ends at Maven Central,
    which a build machine may not reach, and it stops at a POM Maven fetched without its jar;
    resolving from ``repository`` alone makes a local run need no network and fail at once when
    something was not fetched.
    """
    settings = (
        "<ivysettings>\n"
        '  <settings defaultResolver="local-maven"/>\n'
        "  <resolvers>\n"
        f'    <ibiblio name="local-maven" m2compatible="true" root="{repository.as_uri()}"/>\n'
        "  </resolvers>\n"
        "</ivysettings>\n"
    )
    handle, path = tempfile.mkstemp(prefix="idr-ivysettings-", suffix=".xml")
    with os.fdopen(handle, "w") as file:
        file.write(settings)
    return path


def local_session_conf(
    packages: Sequence[MavenPackage], repository: Path | None = None
) -> dict[str, str]:
    """Spark settings that put ``packages`` on a new local session, offline.

    Raises :class:`MissingPackageError` naming the coordinates when a jar was not fetched.
    """
    repository = repository or maven_repository()
    missing = missing_packages(packages, repository)
    if missing:
        raise MissingPackageError(missing_message(missing, repository))
    conf = {
        "spark.jars.packages": spark_submit_packages(packages),
        "spark.jars.excludes": ",".join(SPARK_PROVIDED),
        "spark.jars.ivySettings": ivy_settings_file(repository),
    }
    if DELTA in packages:
        conf.update(DELTA_SQL_CONF)
    return conf


def spark_submit_packages(packages: Sequence[MavenPackage] = PACKAGES) -> str:
    """The ``--packages`` value for spark-submit (as the docs show it)."""
    return ",".join(package.coordinate for package in packages)


# Ivy's words for a module whose POM (unresolved) or jar (download failed) it did not find.
_NOT_FOUND = re.compile(
    r"(?:download failed|unresolved dependency): ([^#\s]+)#([^;\s]+);([^!:\s]+)"
)


def fetch(packages: Sequence[MavenPackage], *, maven: str = "mvn", optional: Sequence[MavenPackage] = ()) -> int:
    """Download ``packages`` and their dependencies with Maven; return a shell exit code.

    Maven fetches each package alone; a dry resolution through Spark's own Ivy (with the
    dependencies Spark ships excluded) then names each module whose POM or jar it cannot find,
    and Maven fetches those, until Spark resolves everything from the local repository: exactly
    the versions Ivy picks (Maven would pick by nearness, Ivy picks by recency), and none of the
    Spark, Hadoop and Parquet jars a transitive Maven fetch would bring. A package in
    ``optional`` that Maven cannot fetch is reported and left out; any other failure fails.
    """
    if shutil.which(maven) is None:
        print(f"{maven} is not on the PATH: install Maven 3.8+ to fetch the JVM packages", file=sys.stderr)
        return 1
    fetched: list[MavenPackage] = []
    for package in packages:
        if not missing_packages([package]) or _maven_get(maven, package.coordinate):
            fetched.append(package)
            continue
        if package in optional:
            print(
                f"warning: {package.coordinate} ({package.purpose}) could not be fetched from the "
                "Maven repositories this machine reaches; the backend that needs it stays "
                "unavailable here",
                file=sys.stderr,
            )
            continue
        print(f"error: Maven could not fetch {package.coordinate}", file=sys.stderr)
        return 1
    for _ in range(20):
        wanted = _jars_spark_cannot_resolve(fetched)
        if not wanted:
            names = ", ".join(package.coordinate for package in fetched) or "none"
            print(f"JVM packages ready in {maven_repository()}: {names}")
            return 0
        for coordinate in wanted:
            if not _maven_get(maven, coordinate):
                print(f"error: Maven could not fetch {coordinate}, which Spark needs", file=sys.stderr)
                return 1
    print("error: Spark still cannot resolve the JVM packages offline", file=sys.stderr)
    return 1


def _maven_get(maven: str, coordinate: str) -> bool:
    """Fetch one artifact (its POM, parent POMs and jar); Spark's resolver names the rest."""
    command = [
        maven,
        "-B",
        "-q",
        "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:get",
        f"-Dartifact={coordinate}",
        "-Dtransitive=false",
        f"-Dmaven.repo.local={maven_repository()}",
    ]
    print(f"fetching {coordinate} with Maven")
    return subprocess.run(command, check=False).returncode == 0


def _jars_spark_cannot_resolve(packages: Sequence[MavenPackage]) -> list[str]:
    """Coordinates Spark's resolver wants but cannot find in the local repository ([] if none)."""
    if not packages:
        return []
    import pyspark  # only here: fetching needs pyspark's spark-submit, the module itself does not

    conf = local_session_conf(packages)
    spark_home = Path(pyspark.__file__).parent
    env = {
        **os.environ,
        "SPARK_HOME": str(spark_home),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }
    with tempfile.TemporaryDirectory(prefix="idr-ivy-") as ivy_home:
        command = [str(spark_home / "bin" / "spark-submit")]
        for key, value in {**conf, "spark.jars.ivy": ivy_home}.items():
            command += ["--conf", f"{key}={value}"]
        script = Path(ivy_home) / "noop.py"
        script.write_text("")
        result = subprocess.run(
            [*command, str(script)], capture_output=True, text=True, check=False, env=env
        )
        os.unlink(conf["spark.jars.ivySettings"])
    if result.returncode == 0:
        return []
    wanted = sorted({":".join(match) for match in _NOT_FOUND.findall(result.stderr)})
    if not wanted:
        raise RuntimeError(f"Spark could not resolve the JVM packages:\n{result.stderr[-3000:]}")
    return wanted


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m resolution.packages", description="The JVM packages of the JVM backends."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch", help="download every package into the local Maven repository")
    commands.add_parser("list", help="print the coordinates, one per line")
    commands.add_parser("missing", help="print the coordinates not fetched yet; exit 1 if any")
    args = parser.parse_args(argv)
    if args.command == "fetch":
        return fetch(PACKAGES, optional=(GRAPHFRAMES,))
    if args.command == "list":
        for package in PACKAGES:
            print(package.coordinate)
        return 0
    missing = missing_packages(PACKAGES)
    for package in missing:
        print(package.coordinate)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
