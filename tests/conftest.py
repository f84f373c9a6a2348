"""One local SparkSession for the whole test run (Spark takes seconds to start).

The session carries Delta's JVM package (and GraphFrames where it was fetched) from the local
Maven repository (``make jars``), so every suite can run each backend in the same session: the
embedded ones (delta-rs, scipy) need no JVM package and ignore them. Where a package was not
fetched, the tests of its backend skip with the reason, shown in the header and by ``-ra``.
"""

from __future__ import annotations

import pytest

from resolution.packages import DELTA, PACKAGES, missing_message, missing_packages
from resolution.session import detect_backends, get_spark_session
from resolution.store import available_store_backends

BACKENDS = ("embedded", "jvm")


def pytest_report_header(config):
    missing = missing_packages(PACKAGES)
    if not missing:
        return "JVM packages: all in the local Maven repository"
    return f"JVM packages: {missing_message(missing)}; their backends' tests skip"


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """A small local[2] session: UI off, 2 shuffle partitions, temp warehouse and checkpoints.

    Test data is tiny, so Spark's per-query machinery costs more than it saves: adaptive
    execution splits every shuffle into its own job and code generation compiles each plan.
    Both off (results are the same; only how they are computed changes) halves the Spark jobs
    of a run and cuts an incremental run on the test world from about 25 s to 16 s. Benchmarks
    and real runs keep Spark's defaults. Delta's log is replayed in one partition (Delta's
    default is 50, local sessions get one per core): a small delta-spark run takes half the time.
    """
    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    checkpoints = tmp_path_factory.mktemp("checkpoints")
    # without Delta's jar the JVM halves skip, naming the missing package (see the header)
    backend = "embedded" if missing_packages([DELTA]) else "jvm"
    session = get_spark_session(
        "idr-tests",
        master="local[2]",
        checkpoint_dir=str(checkpoints),
        shuffle_partitions=2,
        backend=backend,
        extra_conf={
            "spark.sql.warehouse.dir": str(warehouse),
            "spark.default.parallelism": "2",
            "spark.driver.memory": "2g",
            "spark.sql.adaptive.enabled": "false",
            "spark.sql.codegen.wholeStage": "false",
            "spark.sql.codegen.factoryMode": "NO_CODEGEN",
            "spark.databricks.delta.snapshotPartitions": "1",  # see resolution/session.py
        },
    )
    yield session
    session.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request, spark) -> str:
    """``storage.backend`` for a test that runs on both: ``embedded`` and ``jvm``."""
    if request.param == "jvm":
        reason = available_store_backends(spark)["delta-spark"]
        if reason is not None:
            pytest.skip(f"jvm backend unavailable: {reason}")
        detect_backends(spark, prefer="jvm")
    return request.param
