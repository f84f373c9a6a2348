"""How much each Delta backend rewrites when a MERGE changes a small fraction of a table.

    .venv/bin/python benchmarks/merge_rewrite.py
    .venv/bin/python benchmarks/merge_rewrite.py --rows 1000000 --repeat 3

For each backend (delta-rs through ``deltalake``; delta-spark with deletion vectors; delta-spark
without) a table shaped like ``resolved_membership`` is written as ``--files`` Parquet files,
then ``DeltaStore.merge`` (the call the pipeline makes) gets a source in which ``--changed`` of
the table's rows move to another entity, as many rows again are identical to the table's (they
must change nothing and rewrite nothing), ``--inserts`` rows are new and ``--deletes`` rows carry
the delete flag. Each of the ``--repeat`` MERGEs picks rows no earlier one picked; every backend
gets the same rows. (The delta-spark store drops identical rows before its MERGE; delta-rs gets
them and its update predicate skips them.)

Read from each MERGE commit's ``_delta_log`` JSON: the rows in the data files it added (a
copy-on-write MERGE rewrites every file holding a changed row whole, copying its unchanged
rows), the data files added and removed, the deletion vectors added (a file keeps its path and
gets a vector marking its replaced rows) and the change-data files. Rows changed are what
``merge`` returned; seconds are the ``merge`` call's (store.merge) and the engine's own
(``executionTimeMs`` of the commit). A check confirms the metrics, the row count, and that no
identical row reached the change feed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from resolution.outputs import DELETE_FLAG
from resolution.schemas import RECORD_KEY, RESOLVED_MEMBERSHIP, RESOLVED_MEMBERSHIP_SCHEMA
from resolution.session import get_spark_session
from resolution.store import DeltaStore, MergeMetrics, StoreLocation, get_store

# Label -> (backend name for get_store, its options, column title).
BACKENDS: dict[str, tuple[str, dict[str, Any], str]] = {
    "deltalake": ("deltalake", {}, "deltalake (delta-rs)"),
    "delta-spark-dv": ("delta-spark", {"deletion_vectors": True}, "delta-spark, DVs"),
    "delta-spark-no-dv": ("delta-spark", {"deletion_vectors": False}, "delta-spark, no DVs"),
}
START = "2024-01-01 00:00:00"


@dataclass(frozen=True)
class Batch:
    """The ids one MERGE updates, leaves identical, inserts and deletes."""

    number: int
    updated: np.ndarray
    unchanged: np.ndarray
    inserted: np.ndarray
    deleted: np.ndarray


@dataclass(frozen=True)
class CommitWrites:
    """What one commit's log entry says it wrote."""

    files_added: int  # new data files
    files_removed: int  # data files dropped (not re-added with a deletion vector)
    rows_written: int  # rows in the new data files
    dv_descriptors: int  # files re-added with a (new) deletion vector
    dv_files: int  # distinct deletion vector files those point to
    rows_marked_deleted: int  # rows the new vectors mark deleted beyond the old ones
    cdc_files: int  # change data feed files
    engine_rows_copied: int | None  # the engine's own count of rows copied unchanged
    engine_seconds: float | None  # the engine's own time of the operation


@dataclass(frozen=True)
class MergeResult:
    """What one MERGE changed and what its commit wrote."""

    backend: str
    batch: int
    metrics: MergeMetrics
    seconds: float
    files_before: int
    writes: CommitWrites
    check: str

    @property
    def rows_copied(self) -> int:
        """Rows written to new files that the MERGE did not insert or update."""
        return self.writes.rows_written - self.metrics.updated - self.metrics.inserted

    @property
    def ratio(self) -> float:
        """Rows written to new data files per row changed."""
        return self.writes.rows_written / max(1, self.metrics.total)


def batches(
    rows: int, changed: float, inserts: int, deletes: int, repeat: int, seed: int
) -> list[Batch]:
    """``repeat`` batches of disjoint random rows, plus ids past the table's for the inserts."""
    per_batch = max(1, round(rows * changed))
    needed = repeat * (2 * per_batch + deletes)
    if needed > rows:
        raise SystemExit(f"{repeat} merges need {needed} distinct rows; the table has {rows}")
    order = np.random.default_rng(seed).permutation(rows)
    result = []
    for number in range(repeat):
        start = number * (2 * per_batch + deletes)
        picked = np.split(order[start : start + needed // repeat], [per_batch, 2 * per_batch])
        result.append(
            Batch(
                number=number + 1,
                updated=picked[0],
                unchanged=picked[1],
                deleted=picked[2],
                inserted=rows + number * inserts + np.arange(inserts),
            )
        )
    return result


def membership_rows(ids: DataFrame, *, run: int = 0, moved: bool = False) -> DataFrame:
    """``resolved_membership`` rows for ``ids`` (column ``id``): as first written, or moved to
    another entity by MERGE ``run`` (entity_id, run_id and updated_at change)."""
    padded = F.lpad(F.col("id").cast("string"), 10, "0")
    entity = F.concat(F.lit("ent-"), F.lpad((F.col("id") / 3).cast("long").cast("string"), 10, "0"))
    if moved:
        entity = F.concat(F.lit(f"moved-{run}-"), padded)
    columns: dict[str, Column] = {
        "record_key": F.concat(F.lit("rec-"), padded),
        "source": F.element_at(
            F.array(*map(F.lit, ("crm", "support", "orders"))), (F.col("id") % 3 + 1).cast("int")
        ),
        "source_id": F.col("id").cast("string"),
        "entity_id": entity,
        "is_primary": F.col("id") % 3 == 0,
        "run_id": F.lit(f"run-{run}"),
        "updated_at": F.to_timestamp(F.lit(START)) + F.make_interval(days=F.lit(run)),
    }
    return ids.select(
        *[columns[f.name].cast(f.dataType).alias(f.name) for f in RESOLVED_MEMBERSHIP_SCHEMA]
    )


def id_frame(spark: SparkSession, values: np.ndarray) -> DataFrame:
    """A one-column (``id``) DataFrame of ``values``."""
    return spark.createDataFrame(pa.table({"id": pa.array(values, pa.int64())}))


def merge_source(spark: SparkSession, batch: Batch) -> DataFrame:
    """The MERGE source of ``batch``: updates, identical rows, inserts, and flagged deletes
    that carry only their key."""

    def ids(values: np.ndarray) -> DataFrame:
        return id_frame(spark, values)

    keep = F.lit(False).alias(DELETE_FLAG)
    deletes = membership_rows(ids(batch.deleted)).select(
        *[
            F.col(f.name) if f.name == RECORD_KEY else F.lit(None).cast(f.dataType).alias(f.name)
            for f in RESOLVED_MEMBERSHIP_SCHEMA
        ],
        F.lit(True).alias(DELETE_FLAG),
    )
    return (
        membership_rows(ids(batch.updated), run=batch.number, moved=True)
        .select("*", keep)
        .unionByName(membership_rows(ids(batch.unchanged)).select("*", keep))
        .unionByName(membership_rows(ids(batch.inserted), run=batch.number).select("*", keep))
        .unionByName(deletes)
    )


def commit_actions(table: Path, commit: int) -> list[dict[str, Any]]:
    """The actions of one commit, read from its ``_delta_log`` JSON file."""
    text = (table / "_delta_log" / f"{commit:020d}.json").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def live_files(table: Path, latest: int) -> set[str]:
    """Paths of the data files in the snapshot at ``latest``, replayed from the JSON log."""
    files: set[str] = set()
    for commit in range(latest + 1):
        actions = commit_actions(table, commit)
        # Removes first: a file given a deletion vector is removed and re-added in one commit.
        files -= {a["remove"]["path"] for a in actions if "remove" in a}
        files |= {a["add"]["path"] for a in actions if "add" in a}
    return files


def file_rows(table: Path, add: dict[str, Any]) -> int:
    """Rows in an added file: ``numRecords`` of its stats, else its Parquet footer."""
    stats = json.loads(add.get("stats") or "{}")
    if "numRecords" in stats:
        return int(stats["numRecords"])
    return pq.ParquetFile(table / unquote(add["path"])).metadata.num_rows


def engine_metric(metrics: dict[str, Any], *names: str) -> int | None:
    """The first of ``names`` in a commit's operationMetrics (delta-spark or delta-rs spelling)."""
    return next((int(metrics[n]) for n in names if metrics.get(n) is not None), None)


def read_commit(table: Path, commit: int) -> CommitWrites:
    """What the MERGE commit ``commit`` wrote, from its log entry."""
    actions = commit_actions(table, commit)
    adds = [a["add"] for a in actions if "add" in a]
    removes = {a["remove"]["path"]: a["remove"] for a in actions if "remove" in a}
    new = [a for a in adds if a["path"] not in removes]
    with_dv = [a for a in adds if a["path"] in removes and a.get("deletionVector")]
    dv_cardinality = sum(a["deletionVector"]["cardinality"] for a in with_dv)
    old_cardinality = sum(
        (removes[a["path"]].get("deletionVector") or {}).get("cardinality", 0) for a in with_dv
    )
    dv_files = {
        (a["deletionVector"]["storageType"], a["deletionVector"]["pathOrInlineDv"])
        for a in with_dv
        if a["deletionVector"]["storageType"] != "i"
    }
    info = next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
    metrics = info.get("operationMetrics") or {}
    elapsed = engine_metric(metrics, "executionTimeMs", "execution_time_ms")
    return CommitWrites(
        files_added=len(new),
        files_removed=len(removes) - len(with_dv),
        rows_written=sum(file_rows(table, a) for a in new),
        dv_descriptors=len(with_dv),
        dv_files=len(dv_files),
        rows_marked_deleted=dv_cardinality - old_cardinality,
        cdc_files=sum("cdc" in a for a in actions),
        engine_rows_copied=engine_metric(metrics, "numTargetRowsCopied", "num_target_rows_copied"),
        engine_seconds=None if elapsed is None else elapsed / 1000,
    )


def check(
    store: DeltaStore,
    spark: SparkSession,
    batch: Batch,
    metrics: MergeMetrics,
    commit: int,
    expected_rows: int,
) -> str:
    """'ok', or what differs from the expected result of ``batch``."""
    problems = []
    expected = MergeMetrics(len(batch.inserted), len(batch.updated), len(batch.deleted))
    if metrics != expected:
        problems.append(f"metrics {metrics} != {expected}")
    count = store.read(RESOLVED_MEMBERSHIP).count()
    if count != expected_rows:
        problems.append(f"{count} rows, expected {expected_rows}")
    unchanged = membership_rows(id_frame(spark, batch.unchanged)).select(RECORD_KEY)
    in_feed = (
        store.read_changes(RESOLVED_MEMBERSHIP, starting_version=commit, ending_version=commit)
        .join(unchanged, RECORD_KEY, "left_semi")
        .count()
    )
    if in_feed:
        problems.append(f"{in_feed} identical rows in the change feed")
    return "; ".join(problems) or "ok"


def run_backend(
    spark: SparkSession, label: str, work: Path, rows: int, files: int, plan: Sequence[Batch]
) -> list[MergeResult]:
    """Write the table with ``label``'s backend, then run and measure each MERGE of ``plan``."""
    backend, options, _ = BACKENDS[label]
    warehouse = work / label
    shutil.rmtree(warehouse, ignore_errors=True)
    store = get_store(spark, backend, StoreLocation(warehouse=str(warehouse)), **options)
    table = warehouse / RESOLVED_MEMBERSHIP
    store.create_if_missing(RESOLVED_MEMBERSHIP, RESOLVED_MEMBERSHIP_SCHEMA)
    for part in range(files):  # one commit and one file each, whatever the backend
        ids = spark.range(rows).where(F.col("id") % files == part).coalesce(1)
        store.append(RESOLVED_MEMBERSHIP, membership_rows(ids))
    written = live_files(table, store.version(RESOLVED_MEMBERSHIP) or 0)
    print(f"{label}: wrote {rows} rows in {len(written)} files")
    results = []
    expected_rows = rows
    for batch in plan:
        source = merge_source(spark, batch).persist()
        source.count()
        before = store.version(RESOLVED_MEMBERSHIP) or 0
        files_before = len(live_files(table, before))
        started = time.perf_counter()
        metrics = store.merge(
            RESOLVED_MEMBERSHIP, source, keys=[RECORD_KEY], delete_flag=DELETE_FLAG
        )
        seconds = time.perf_counter() - started
        source.unpersist()
        commit = store.version(RESOLVED_MEMBERSHIP) or 0
        if commit == before:
            raise SystemExit(f"{label}: MERGE {batch.number} committed nothing")
        expected_rows += len(batch.inserted) - len(batch.deleted)
        results.append(
            MergeResult(
                backend=label,
                batch=batch.number,
                metrics=metrics,
                seconds=seconds,
                files_before=files_before,
                writes=read_commit(table, commit),
                check=check(store, spark, batch, metrics, commit, expected_rows),
            )
        )
        print(f"{label}: MERGE {batch.number} (version {commit}) took {seconds:.1f}s")
    return results


def changed_cell(result: MergeResult) -> str:
    """Rows changed, then inserted / updated / deleted."""
    m = result.metrics
    return f"{m.total:,} ({m.inserted:,} / {m.updated:,} / {m.deleted:,})"


def markdown_table(results: Sequence[MergeResult]) -> str:
    """One column per MERGE and backend, one row per figure."""

    def optional(value: float | None, form: str) -> str:
        return "-" if value is None else format(value, form)

    figures: list[tuple[str, Callable[[MergeResult], str]]] = [
        ("rows changed (inserted / updated / deleted)", changed_cell),
        ("rows written to new data files", lambda r: f"{r.writes.rows_written:,}"),
        ("rows copied unchanged (written - updated - inserted)", lambda r: f"{r.rows_copied:,}"),
        ("rows copied, engine's metric", lambda r: optional(r.writes.engine_rows_copied, ",")),
        ("**rows written / rows changed**", lambda r: f"**{r.ratio:.2f}**"),
        ("data files before", lambda r: str(r.files_before)),
        ("data files added", lambda r: str(r.writes.files_added)),
        ("data files removed", lambda r: str(r.writes.files_removed)),
        ("files given a deletion vector", lambda r: str(r.writes.dv_descriptors)),
        ("deletion vector files written", lambda r: str(r.writes.dv_files)),
        ("rows marked deleted by vectors", lambda r: f"{r.writes.rows_marked_deleted:,}"),
        ("change-data files added", lambda r: str(r.writes.cdc_files)),
        ("seconds, store.merge", lambda r: f"{r.seconds:.1f}"),
        (
            "seconds, engine (commit's executionTimeMs)",
            lambda r: optional(r.writes.engine_seconds, ".1f"),
        ),
        ("check", lambda r: r.check),
    ]
    ordered = sorted(results, key=lambda r: (r.batch, list(BACKENDS).index(r.backend)))
    many = len({r.batch for r in results}) > 1
    titles = [(f"#{r.batch} " if many else "") + BACKENDS[r.backend][2] for r in ordered]
    lines = [
        "| | " + " | ".join(titles) + " |",
        "|---|" + "---:|" * len(titles),
    ]
    lines += [
        "| " + name + " | " + " | ".join(cell(r) for r in ordered) + " |" for name, cell in figures
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the table")
    parser.add_argument("--files", type=int, default=8, help="data files the table is written in")
    parser.add_argument(
        "--changed", type=float, default=0.01, help="fraction of rows each MERGE updates"
    )
    parser.add_argument("--inserts", type=int, default=10, help="new rows per MERGE")
    parser.add_argument("--deletes", type=int, default=10, help="rows each MERGE deletes")
    parser.add_argument("--repeat", type=int, default=1, help="MERGEs in a row, on different rows")
    parser.add_argument("--backends", nargs="+", choices=list(BACKENDS), default=list(BACKENDS))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--workdir", default=None, help="where the tables go (default: a new temp dir)"
    )
    args = parser.parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join([".venv/bin/python", "benchmarks/merge_rewrite.py", *given])
    work = Path(args.workdir or tempfile.mkdtemp(prefix="idr-merge-rewrite-"))
    plan = batches(args.rows, args.changed, args.inserts, args.deletes, args.repeat, args.seed)
    spark = get_spark_session("idr-merge-rewrite", backend="jvm")
    results = [
        result
        for label in args.backends
        for result in run_backend(spark, label, work, args.rows, args.files, plan)
    ]
    updated = len(plan[0].updated)
    print(f"\n$ {command}\n")
    print(
        f"{args.rows:,} rows in {args.files} files; each MERGE source: {updated:,} updated + "
        f"{updated:,} identical + {args.inserts} inserted + {args.deletes} deleted rows; "
        f"deltalake {version('deltalake')}, delta-spark {version('delta-spark')}, "
        f"pyspark {spark.version}; tables in {work}\n"
    )
    print(markdown_table(results))


if __name__ == "__main__":
    main()
