"""One local SparkSession for the whole test run (Spark takes seconds to start).

The session carries Delta's JVM package (and GraphFrames where it was fetched) from the local
Maven repository (``make jars``), so every suite can run each backend in the same session: the
embedded ones (delta-rs, scipy) need no JVM package and ignore them. Where a package was not
fetched, the tests of its backend skip with the reason, shown in the header and by ``-ra``.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import uvicorn
import yaml

from resolution.config import Config, load_config
from resolution.packages import DELTA, PACKAGES, missing_message, missing_packages
from resolution.session import detect_backends, get_spark_session
from resolution.store import available_store_backends
from tests.incremental_harness import sample_pipeline_file

BACKENDS = ("embedded", "jvm")
QUIET = {"report": lambda line: None}


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


# ---- idr serve on the sample data (tests/test_realtime_*.py) ---------------------------------


def serve_config_file(folder: Path, **serve) -> Path:
    """The sample pipeline's config in ``folder`` with a ``serve`` section for the tests (quick
    refreshes, frequent inbox compaction); ``serve`` replaces its keys."""
    path = sample_pipeline_file(folder)
    document = yaml.safe_load(path.read_text())
    document["serve"] = {"inbox_source": "online", "refresh_seconds": 0.5, "compact_every_commits": 2, **serve}
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="session")
def published_sample(spark, tmp_path_factory) -> Callable[..., Config]:
    """A copier of the sample data's warehouse after one full batch run: ``copy(folder, **serve)``
    copies it to ``folder/lakehouse`` and returns the config serving it. The run happens once per
    session; each module serves (and writes to) its own copy."""
    from resolution.pipeline import run_pipeline  # here: most suites never run the pipeline

    folder = tmp_path_factory.mktemp("published")
    config = load_config(serve_config_file(folder), {"warehouse": str(folder / "lakehouse")})
    run_pipeline(spark, config, **QUIET)

    def copy(target: Path, **serve) -> Config:
        shutil.copytree(folder / "lakehouse", target / "lakehouse")
        return load_config(serve_config_file(target, **serve), {"warehouse": str(target / "lakehouse")})

    return copy


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """The app on a real uvicorn server in a thread, on a free loopback port."""

    def __init__(self, app):
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    def resolve(self, source, source_id, **data):
        return self.client.post("/v1/resolve", json={"source": source, "source_id": source_id, "data": data})

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
