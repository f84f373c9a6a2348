"""What every stage of a run shares: the session, config, store, summary and progress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from resolution import schemas as S
from resolution.config import Config
from resolution.run_log import Progress, RunSummary
from resolution.session import Backends
from resolution.store import DeltaStore

# the review_decisions version a run has read, kept among the runs' source versions
DECISIONS_VERSION = "_review_decisions"


@dataclass
class RunContext:
    """Everything one run's stages share (``now``: the run's timestamp, as a Spark literal)."""

    spark: SparkSession
    config: Config
    store: DeltaStore
    backends: Backends
    summary: RunSummary
    progress: Progress
    full: bool
    versions: dict[str, str]
    written: Callable[[str], None]
    now: Column
    feeds: dict[str, DataFrame] | None = None
    _held: list[DataFrame] = field(default_factory=list)

    @property
    def records_schema(self) -> StructType:
        return S.source_records_schema(self.config.attribute_kinds)

    @property
    def golden_schema(self) -> StructType:
        return S.golden_profiles_schema(self.config.attribute_kinds, self.config.survivorship.arrays)

    @property
    def stamp(self) -> dict:
        """``run_id`` and ``now`` for :func:`resolution.outputs.stamp_run`."""
        return {"run_id": self.summary.run_id, "now": self.now}

    def table(self, name: str, schema: StructType) -> DataFrame:
        """The committed rows of an output table (empty with ``schema`` before the first run).

        A column of ``schema`` the table does not have yet (written by an older release, or
        before the config mapped an attribute) reads as null; the run's write adds it.
        """
        frame = self.store.read(name) if self.store.exists(name) else self.spark.createDataFrame([], schema)
        if all(column in frame.columns for column in schema.fieldNames()):
            return frame
        return frame.select(
            *[F.col(f.name) if f.name in frame.columns else F.lit(None).cast(f.dataType).alias(f.name)
              for f in schema.fields]
        )

    def held(self, frame: DataFrame) -> DataFrame:
        """``frame`` (cached or checkpointed), released when the run ends."""
        self._held.append(frame)
        return frame

    def release(self) -> None:
        for frame in self._held:
            frame.unpersist()
        self._held.clear()
