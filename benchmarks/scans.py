"""Rows each stage of a run read from each table, from Spark's SQL metrics.

A run names its Spark jobs ``idr <run_id>: <stage>`` (``resolution.run_log.Progress``); each
SQL execution carries that description, and each file scan in its plan the files it read and
the rows it returned (``number of output rows``: after row-group and file skipping, before
the filters above it). A scan of a cached or checkpointed frame is not a table read and is
left out, so a frame materialized once and used five times counts once.

Tables are named by their folder: a folder below the warehouse is the output table of that
name, a source location its source. A change feed read through delta-rs arrives as Arrow (no
file scan) and is not counted here: ``scale.py`` counts its rows from the source versions the
runs read.

Call :func:`widen_plan_strings` before the run: Spark shortens a scan's file list to 100
characters in its plan, which can cut a long warehouse path before the table's folder.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

_LOCATION = re.compile(r"Location: \w+\(\d+ paths?\)\[([^,\]]+)")


def widen_plan_strings(spark) -> None:
    spark.conf.set("spark.sql.maxMetadataStringLength", "4000")


def _table_of(path: str, tables: dict[str, str]) -> str:
    """The name of the table or source whose folder holds ``path`` (the folder itself when
    it is neither)."""
    path = re.sub(r"^file:", "", path).rstrip("/")
    for folder, name in sorted(tables.items(), key=lambda item: -len(item[0])):
        if path == folder or path.startswith(folder + "/"):
            return name
    return str(Path(path).parent if Path(path).suffix else path)


def rows_read(spark, run_id: str, tables: dict[str, str]) -> dict[str, dict[str, int]]:
    """``{stage: {table: rows read}}`` for the run ``run_id`` in this session, as far as
    Spark's status store retains its executions (``spark.sql.ui.retainedExecutions``).

    ``tables`` maps a folder (a warehouse table, a source location) to the name reported.
    """
    jvm = spark._jvm  # noqa: SLF001
    store = spark._jsparkSession.sharedState().statusStore()  # noqa: SLF001
    java = jvm.scala.jdk.javaapi.CollectionConverters
    spark._jsc.sc().listenerBus().waitUntilEmpty()  # noqa: SLF001 (the last executions' metrics)
    prefix = f"idr {run_id}: "
    folders = {str(Path(folder).resolve()): name for folder, name in tables.items()}
    read: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for execution in java.asJava(store.executionsList()):
        description = execution.description() or ""
        if not description.startswith(prefix):
            continue
        stage = description[len(prefix):]
        metrics = None
        for node in java.asJava(store.planGraph(execution.executionId()).allNodes()):
            location = _LOCATION.search(node.desc() or "")
            if not node.name().startswith("Scan") or location is None:
                continue
            if metrics is None:
                metrics = java.asJava(store.executionMetrics(execution.executionId()))
            for metric in java.asJava(node.metrics()):
                if metric.name() == "number of output rows":
                    value = metrics.get(metric.accumulatorId())
                    rows = int(re.sub(r"[^0-9]", "", value)) if value else 0
                    read[stage][_table_of(location.group(1), folders)] += rows
    return {stage: dict(by_table) for stage, by_table in read.items()}
