"""The service's inbox table: a Delta source of the config (``serve.inbox_source``) that
``idr serve`` appends to and every run reads like any other source. It is created here, by
delta-rs (the service has no Spark), with its change feed on, before the first reader needs it.
"""

from __future__ import annotations

import pyarrow as pa
from deltalake import DeltaTable

from resolution.config import INBOX_COLUMNS, Config, SourceConfig

CHANGE_DATA_FEED = {"delta.enableChangeDataFeed": "true"}
LOG_RETENTION = "delta.logRetentionDuration"


def inbox_source(config: Config) -> SourceConfig:
    """The source the service appends to (``serve.inbox_source``)."""
    if config.serve.inbox_source is None:
        raise ValueError(f"{config.path}: serve.inbox_source is not set: name the source the service appends to")
    return config.source(config.serve.inbox_source)


def inbox_schema(source: SourceConfig) -> pa.Schema:
    fields = [pa.field(source.key, pa.string(), nullable=False)]
    fields += [pa.field(name, pa.string()) for name in INBOX_COLUMNS]
    fields.append(pa.field(source.timestamp, pa.timestamp("us", tz="UTC"), nullable=False))
    fields += [pa.field(column, pa.string()) for column in source.mapped_columns]
    return pa.schema(fields)


def ensure_inbox(config: Config) -> None:
    """Create the inbox table (change data feed on) unless it exists: before the service or a run reads it."""
    if config.serve.inbox_source is None:
        return
    source = inbox_source(config)
    if not DeltaTable.is_deltatable(source.location):
        DeltaTable.create(source.location, inbox_schema(source), mode="ignore",
                          configuration={**CHANGE_DATA_FEED, LOG_RETENTION: config.serve.inbox_log_retention})
