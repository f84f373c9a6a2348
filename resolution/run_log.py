"""The run log and the run lock: what a run did (``RunSummary``, its ``runs`` row), how it
reports progress, and how runs take turns (a ``RUNNING`` row per live run).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from resolution import schemas as S
from resolution.store import DeltaStore

LOCK_TIMEOUT = timedelta(hours=6)


@dataclass
class RunSummary:
    """What a run did: the figures printed at the end and written to the ``runs`` table."""

    run_id: str
    mode: str
    backends: str
    status: str = "RUNNING"
    records_read: dict[str, int] = field(default_factory=dict)
    source_versions: dict[str, str] = field(default_factory=dict)
    records_in: int = 0
    records_new: int = 0
    records_updated: int = 0
    records_deleted: int = 0
    records_rejected: int = 0
    value_issues: dict[str, int] = field(default_factory=dict)
    edges_by_rule: dict[str, int] = field(default_factory=dict)
    review_pairs: int = 0
    edges_cut: dict[str, int] = field(default_factory=dict)  # printed, not in the runs table
    entities: int = 0
    entities_created: int = 0
    entities_merged: int = 0
    entities_split: int = 0
    largest_entity: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    stage_jobs: dict[str, int] = field(default_factory=dict)  # Spark jobs each stage ran
    rows_written: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    def one_line(self) -> str:
        """The run in one line of ``key=value`` fields, the last line a job prints (for schedulers)."""
        fields = {
            "mode": self.mode.replace(" ", "_"),
            "records": self.records_in,
            "new": self.records_new,
            "updated": self.records_updated,
            "deleted": self.records_deleted,
            "rejected": self.records_rejected,
            "links": sum(self.edges_by_rule.values()),
            "review": self.review_pairs,
            "entities": self.entities,
            "created": self.entities_created,
            "merged": self.entities_merged,
            "split": self.entities_split,
            "largest": self.largest_entity,
            "seconds": f"{sum(self.stage_seconds.values()):.1f}",
        }
        return f"idr run {self.run_id} {self.status} " + " ".join(f"{k}={v}" for k, v in fields.items())

    def lines(self) -> list[str]:
        """The human-readable summary printed at the end of a run."""
        out = [f"run {self.run_id} ({self.mode}) {self.status}"]
        out.append(
            "  records read: "
            + ", ".join(f"{name} {count}" for name, count in self.records_read.items())
            + f"; rejected {self.records_rejected}"
        )
        out.append(
            f"  source records: {self.records_in} live, {self.records_new} new, "
            f"{self.records_updated} updated, {self.records_deleted} deleted"
        )
        if self.value_issues:
            out.append(
                "  values nulled: "
                + ", ".join(f"{issue} {count}" for issue, count in sorted(self.value_issues.items()))
            )
        out.append(
            "  edges scored this run, by rule: "
            + (", ".join(f"{rule} {count}" for rule, count in sorted(self.edges_by_rule.items())) or "none")
            + f"; review pairs re-examined {self.review_pairs}"
        )
        if self.edges_cut:
            out.append(
                "  links cut by cannot-link constraints (in the re-clustered part): "
                + ", ".join(f"{name} {count}" for name, count in sorted(self.edges_cut.items()))
            )
        out.append(
            f"  entities: {self.entities} (created {self.entities_created}, merged "
            f"{self.entities_merged}, split {self.entities_split}); largest {self.largest_entity} records"
        )
        out.append(
            "  seconds: "
            + ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in self.stage_seconds.items())
            + f"; total {sum(self.stage_seconds.values()):.1f}"
        )
        if self.stage_jobs:
            out.append(
                "  spark jobs: "
                + ", ".join(f"{stage} {jobs}" for stage, jobs in self.stage_jobs.items())
                + f"; total {sum(self.stage_jobs.values())}"
            )
        if self.rows_written:
            written = ", ".join(f"{table} {rows}" for table, rows in self.rows_written.items() if rows)
            out.append(f"  rows written: {written or 'none'}; total {sum(self.rows_written.values())}")
        if self.error:
            out.append(f"  error: {self.error}")
        return out


class Progress:
    """Times stages and reports each as it starts and ends.

    Spark jobs of a stage carry the description ``idr <run_id>: <stage>``, so the Spark UI
    (and Databricks' job view) shows which step of which run each job belongs to.
    """

    def __init__(self, summary: RunSummary, report: Callable[[str], None], spark: SparkSession | None = None):
        self.summary, self.report, self.spark = summary, report, spark
        self._own_group = False

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.report(f"[{name}] ...")
        group = self._describe_jobs(f"idr {self.summary.run_id}: {name}")
        before = self._jobs_of(group)
        started = time.perf_counter()
        try:
            yield
        finally:
            after = self._jobs_of(group)
            self._describe_jobs(None)
        seconds = time.perf_counter() - started
        self.summary.stage_seconds[name] = round(seconds, 3)
        if before is not None and after is not None:
            self.summary.stage_jobs[name] = after - before
        self.report(f"[{name}] done in {seconds:.1f}s")

    def _describe_jobs(self, description: str | None) -> str | None:
        """Name the next jobs ``description`` (None: stop); returns the job group they run in.

        Jobs get a group of ours only where none is set: a Databricks notebook cell runs its
        jobs in its own group (its Cancel button cancels that group), which is kept.
        """
        if self.spark is None:
            return None
        try:
            context = self.spark.sparkContext
            context.setJobDescription(description)
            if description is None:
                if self._own_group:
                    context.setLocalProperty("spark.jobGroup.id", None)
                self._own_group = False
                return None
            group = context.getLocalProperty("spark.jobGroup.id")
            if group is None:
                group, self._own_group = description, True
                context.setLocalProperty("spark.jobGroup.id", group)
            return group
        except Exception:  # Spark Connect sessions have no SparkContext
            self.spark = None
            return None

    def _jobs_of(self, group: str | None) -> int | None:
        """How many Spark jobs ran in ``group`` so far (as far as Spark's status store retains them)."""
        if self.spark is None or group is None:
            return None
        try:
            return len(self.spark.sparkContext.statusTracker().getJobIdsForGroup(group))
        except Exception:
            return None


class PipelineBusyError(RuntimeError):
    """Another run holds the pipeline; the message names it."""


def describe_error(error: BaseException, *, limit: int = 2000) -> str:
    """The error's type and first line: Spark's analysis errors append whole query plans."""
    first_line = str(error).strip().split("\n", 1)[0]
    return f"{type(error).__name__}: {first_line}"[:limit]


def last_successful_run(store: DeltaStore):
    """The ``runs`` row of the latest committed (not dry) run, or None before the first one."""
    if not store.exists(S.RUNS):
        return None
    succeeded = store.read(S.RUNS).filter(
        (F.col(S.STATUS) == "SUCCEEDED") & ~F.col(S.MODE).contains("dry run")
    )
    return succeeded.orderBy(F.col(S.FINISHED_AT).desc(), F.col(S.RUN_ID).desc()).first()


def acquire_pipeline(spark: SparkSession, store: DeltaStore, summary: RunSummary, *, started_at) -> None:
    """Register this run as RUNNING; refuse to start while another live run holds the pipeline.

    A RUNNING row whose process is gone (same host, dead pid) or that started more than
    ``LOCK_TIMEOUT`` ago is considered dead and marked ABANDONED: its work is redone by this
    run, whose writes only apply what differs from the tables.
    """
    record_run(spark, store, summary, started_at=started_at, finished=False)
    running = store.read(S.RUNS).filter(
        (F.col(S.STATUS) == "RUNNING") & (F.col(S.RUN_ID) != summary.run_id)
    ).collect()
    for other in sorted(running, key=lambda row: (row[S.STARTED_AT], row[S.RUN_ID])):
        if _is_dead(other, started_at):
            abandoned = RunSummary(run_id=other[S.RUN_ID], mode=other[S.MODE], backends=other[S.BACKENDS])
            abandoned.status, abandoned.error = "ABANDONED", f"found dead by run {summary.run_id}"
            record_run(spark, store, abandoned, started_at=other[S.STARTED_AT], finished=True)
            continue
        if (_utc(other[S.STARTED_AT]), other[S.RUN_ID]) < (started_at, summary.run_id):
            summary.status = "REFUSED"
            summary.error = f"run {other[S.RUN_ID]} ({other[S.OWNER]}) has held the pipeline since {other[S.STARTED_AT]}"
            record_run(spark, store, summary, started_at=started_at, finished=True)
            raise PipelineBusyError(
                f"another run is in progress: {other[S.RUN_ID]} started at {other[S.STARTED_AT]} "
                f"by {other[S.OWNER]}; wait for it to finish (or, if it died, it is taken over "
                f"after {LOCK_TIMEOUT})"
            )


def _is_dead(run, now: datetime) -> bool:
    host, _, pid = (run[S.OWNER] or "").partition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return now - _utc(run[S.STARTED_AT]) > LOCK_TIMEOUT


def _utc(moment: datetime) -> datetime:
    """Spark returns session-time-zone (UTC) timestamps without tzinfo."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def record_run(
    spark: SparkSession, store: DeltaStore, summary: RunSummary, *, started_at: datetime, finished: bool
) -> None:
    row = {
        **dataclasses.asdict(summary),
        S.OWNER: f"{socket.gethostname()}:{os.getpid()}",
        S.STARTED_AT: started_at,
        S.FINISHED_AT: datetime.now(timezone.utc) if finished else None,
    }
    frame = spark.createDataFrame([row], S.RUNS_SCHEMA)
    if finished:
        store.merge(S.RUNS, frame, keys=[S.RUN_ID])
    else:
        store.append(S.RUNS, frame)
