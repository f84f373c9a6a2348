"""One local SparkSession for the whole test run (Spark takes seconds to start)."""

from __future__ import annotations

import pytest

from resolution.session import get_spark_session


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """A small local[2] session: UI off, 2 shuffle partitions, temp warehouse and checkpoints."""
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
        },
    )
    yield session
    session.stop()
