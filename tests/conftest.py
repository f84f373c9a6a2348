"""One local SparkSession for the whole test run (Spark takes seconds to start)."""

from __future__ import annotations

import pytest

from resolution.session import get_spark_session


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """A small local[2] session: UI off, 2 shuffle partitions, temp warehouse and checkpoints.

    Test data is tiny, so Spark's per-query machinery costs more than it saves: adaptive
    execution splits every shuffle into its own job and code generation compiles each plan.
    Both off (results are the same; only how they are computed changes) halves the Spark jobs
    of a run and cuts an incremental run on the test world from about 25 s to 16 s. Benchmarks
    and real runs keep Spark's defaults.
    """
    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    checkpoints = tmp_path_factory.mktemp("checkpoints")
    session = get_spark_session(
        "idr-tests",
        master="local[2]",
        checkpoint_dir=str(checkpoints),
        shuffle_partitions=2,
        extra_conf={
            "spark.sql.warehouse.dir": str(warehouse),
            "spark.default.parallelism": "2",
            "spark.driver.memory": "2g",
            "spark.sql.adaptive.enabled": "false",
            "spark.sql.codegen.wholeStage": "false",
            "spark.sql.codegen.factoryMode": "NO_CODEGEN",
        },
    )
    yield session
    session.stop()
