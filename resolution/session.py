"""Build or reuse the SparkSession, and detect which backends it can use.

Only this module (and ``jobs/`` / ``tests/conftest.py`` through it) creates a session; the rest
of the library takes the session as a parameter.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from dataclasses import dataclass

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

from resolution.packages import (
    DELTA,
    FETCH_COMMAND,
    GRAPHFRAMES,
    MissingPackageError,
    local_session_conf,
    missing_message,
    missing_packages,
    spark_submit_packages,
)
from resolution.scoring import register_similarity_functions, similarity_jar_path

logger = logging.getLogger(__name__)

DELTA_JVM_CLASS = DELTA.jvm_class
GRAPHFRAMES_JVM_CLASS = GRAPHFRAMES.jvm_class


@dataclass(frozen=True)
class Backends:
    """Which implementation runs each engine-dependent step."""

    delta: str  # "delta-spark" or "deltalake"
    clustering: str  # "graphframes" or "scipy"

    def describe(self) -> str:
        """One line for the log, so users see what their run actually uses."""
        return f"backends: delta={self.delta}, clustering={self.clustering}"


def get_spark_session(
    app_name: str = "identity-resolution",
    *,
    master: str | None = None,
    checkpoint_dir: str | None = None,
    shuffle_partitions: int | None = None,
    extra_conf: dict[str, str] | None = None,
    backend: str = "embedded",
) -> SparkSession:
    """Return the active SparkSession (Databricks, spark-submit) or build a local one.

    A new local session gets Splink's similarity jar, UI off and a small shuffle-partition
    count suited to one machine (a session on a cluster master, under spark-submit, keeps
    Spark's shuffle partitions and Delta's snapshot partitions, sized for clusters); with ``backend="jvm"`` also Delta's JVM package and its SQL
    extension, and GraphFrames where it was fetched, resolved offline from the local Maven
    repository (``make jars``). Either way a checkpoint dir is set, because Splink breaks
    lineage by writing parquet there.
    """
    spark = SparkSession.getActiveSession()
    if spark is None:
        spark = _build_session(
            app_name,
            master=master,
            shuffle_partitions=shuffle_partitions,
            extra_conf={**jvm_packages_conf(backend), **(extra_conf or {})},
        )
    register_similarity_functions(spark)
    # Constraint propagation hits a Spark 4.2 optimizer bug on unions over localCheckpoint-ed
    # frames ("key not found" in Union.rewriteConstraints), and on the wide plans of a run it
    # mostly costs planning time. Turning it off changes no result.
    spark.conf.set("spark.sql.constraintPropagation.enabled", "false")
    # Spark writes timestamps as INT96 by default, which delta-rs reads as nanoseconds: dates
    # outside 1677..2262 (a 9999-12-31 "valid to") would come back wrong, and a delta-rs MERGE
    # would rewrite them wrong. Microseconds are what delta-rs writes and every reader reads.
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    if not has_checkpoint_dir(spark):
        spark.sparkContext.setCheckpointDir(
            checkpoint_dir or tempfile.mkdtemp(prefix="idr-checkpoints-")
        )
    return spark


def jvm_packages_conf(backend: str) -> dict[str, str]:
    """Spark settings a new local session needs for ``backend`` (``storage.backend``).

    ``jvm`` needs Delta (a missing jar fails here, naming it and ``make jars``); GraphFrames is
    added when it was fetched, else clustering stays on the driver (logged). ``auto`` and
    ``embedded`` add nothing: a local session starts lightest without JVM packages, and on a
    cluster ``auto`` uses whatever the cluster put on the classpath.
    """
    if backend != "jvm" or os.environ.get("PYSPARK_GATEWAY_PORT"):
        return {}  # under spark-submit the JVM runs already: --packages brought what it has
    packages = [DELTA]
    if missing_packages([GRAPHFRAMES]):
        logger.warning(
            "%s; clustering runs on the driver (scipy) meanwhile", missing_message([GRAPHFRAMES])
        )
    else:
        packages.append(GRAPHFRAMES)
    return local_session_conf(packages)


def session_defaults(master: str, shuffle_partitions: int | None) -> dict[str, str]:
    """The settings a new session gets unless they were given (spark-submit, ``--conf``): a
    local master is one machine (UI off, 8 shuffle partitions, one Delta snapshot partition
    per core); a cluster master keeps Spark's and Delta's defaults, sized for clusters."""
    defaults = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.adaptive.enabled": "true",
    }
    if master.startswith("local"):
        defaults.update({
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.shuffle.partitions": str(shuffle_partitions or 8),
            "spark.driver.memory": os.environ.get("IDR_DRIVER_MEMORY", "4g"),
            # Delta rebuilds a table's state from its log in 50 partitions by default (sized for
            # clusters); on one machine that is 50 tasks per table read and made a small incremental
            # run on delta-spark take twice as long (47 s against 26 s in tests/test_incremental_property.py's
            # world). One partition per core is plenty for a local session.
            "spark.databricks.delta.snapshotPartitions": str(os.cpu_count() or 2),
        })
    elif shuffle_partitions:
        defaults["spark.sql.shuffle.partitions"] = str(shuffle_partitions)
    return defaults


def _build_session(
    app_name: str, *, master: str | None, shuffle_partitions: int | None, extra_conf: dict[str, str]
) -> SparkSession:
    """A new session; settings given to spark-submit (master, jars, memory) are respected."""
    if os.environ.get("PYSPARK_GATEWAY_PORT"):
        # Under spark-submit the JVM already runs: connect so SparkConf sees --master, --jars,
        # --conf, and only fill in what the user left unset. (Splink's jar must then come with
        # --jars: a running JVM cannot put it on the driver's classpath.)
        SparkContext._ensure_initialized()
    submitted = SparkConf()
    chosen_master = master or submitted.get("spark.master", None) or os.environ.get("IDR_SPARK_MASTER", "local[*]")
    defaults = session_defaults(chosen_master, shuffle_partitions)
    # Python workers must run the interpreter that has this package and its dependencies
    # (a venv's python), not whatever `python3` is first on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master or not submitted.contains("spark.master"):
        builder = builder.master(master or os.environ.get("IDR_SPARK_MASTER", "local[*]"))
    for key, value in defaults.items():
        if not submitted.contains(key):
            builder = builder.config(key, value)
    jars = [jar for jar in submitted.get("spark.jars", "").split(",") if jar]
    builder = builder.config("spark.jars", ",".join(dict.fromkeys([*jars, similarity_jar_path()])))
    for key, value in extra_conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def has_checkpoint_dir(spark: SparkSession) -> bool:
    """True when Spark can checkpoint (Splink and GraphFrames break lineage there)."""
    try:
        return spark.sparkContext.getCheckpointDir() is not None
    except Exception:  # Spark Connect sessions have no SparkContext
        return True


def jvm_class_available(spark: SparkSession, class_name: str) -> bool:
    """True when ``class_name`` loads in the session's JVM (its package is on the classpath)."""
    try:
        jvm = spark.sparkContext._jvm  # noqa: SLF001 - py4j is the only way to ask the JVM
        jvm.org.apache.spark.util.Utils.classForName(class_name, True, False)
        return True
    except Exception:
        return False


def detect_backends(spark: SparkSession, *, prefer: str = "auto") -> Backends:
    """Pick the JVM backends where their classes load, else the embedded ones.

    ``prefer`` is ``auto`` (detect), ``embedded`` (always deltalake + scipy) or ``jvm``
    (delta-spark, failing clearly when Delta's classes do not load; GraphFrames where it loads,
    else connected components on the driver, with a warning naming the package).
    """
    if prefer == "embedded":
        return Backends(delta="deltalake", clustering="scipy")
    has_delta = jvm_class_available(spark, DELTA_JVM_CLASS)
    has_graphframes = jvm_class_available(spark, GRAPHFRAMES_JVM_CLASS)
    if prefer == "jvm" and not has_delta:
        raise MissingPackageError(
            f"storage.backend is 'jvm' but Delta's JVM package ({DELTA.coordinate}) is not on "
            f"the classpath. Locally: `{FETCH_COMMAND}`, then a new session loads it; with "
            f"spark-submit: --packages {spark_submit_packages()} (plus Delta's SQL extension and "
            "catalog settings); or use backend: auto."
        )
    if prefer == "jvm" and not has_graphframes:
        logger.warning(
            "storage.backend is 'jvm' but GraphFrames (%s) is not on the classpath: connected "
            "components run on the driver (scipy)",
            GRAPHFRAMES.coordinate,
        )
    return Backends(
        delta="delta-spark" if has_delta else "deltalake",
        clustering="graphframes" if has_graphframes else "scipy",
    )
