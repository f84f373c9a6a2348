"""Output table names, column names and schemas: the public contract of DESIGN.md."""

from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DataType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

# Table names (public contract).
SOURCE_RECORDS = "source_records"
MATCH_EDGES = "match_edges"
RESOLVED_MEMBERSHIP = "resolved_membership"
GOLDEN_PROFILES = "golden_profiles"
REVIEW_QUEUE = "review_queue"
ENTITY_LINEAGE = "entity_lineage"
RUNS = "runs"
DRY_RUN_CHANGES = "dry_run_changes"
REJECTED_RECORDS = "rejected_records"
REVIEW_DECISIONS = "review_decisions"
CUT_EDGES = "cut_edges"
QUALITY_CHECKS = "quality_checks"
OUTPUT_TABLES = (
    SOURCE_RECORDS, MATCH_EDGES, RESOLVED_MEMBERSHIP, GOLDEN_PROFILES, REVIEW_QUEUE, ENTITY_LINEAGE,
    RUNS, DRY_RUN_CHANGES, REJECTED_RECORDS, REVIEW_DECISIONS, CUT_EDGES, QUALITY_CHECKS,
)

# Column names shared across steps.
RECORD_KEY = "record_key"
SOURCE = "source"
SOURCE_ID = "source_id"
SOURCE_PRIORITY = "source_priority"
SOURCE_TIMESTAMP = "source_timestamp"
VALUE_ISSUES = "value_issues"
DISPLAY_VALUES = "display_values"  # attribute -> the value as the source wrote it (trimmed)
DISPLAY_KINDS = ("name", "address", "text")  # kinds whose match form is not fit to show
ROW_HASH = "row_hash"
ENTITY_ID = "entity_id"
IS_PRIMARY = "is_primary"
RUN_ID = "run_id"
UPDATED_AT = "updated_at"
RECORD_KEY_L = "record_key_l"
RECORD_KEY_R = "record_key_r"
RULE = "rule"
MODEL_RULE = "model"
MATCH_PROBABILITY = "match_probability"
MATCH_WEIGHT = "match_weight"
COMPARISON_LEVELS = "comparison_levels"
EDGE_STATUS = "status"
LINK = "link"
REVIEW = "review"

ATTRIBUTE_TYPES: dict[str, DataType] = {"date": DateType()}


def attribute_type(kind: str) -> DataType:
    """Spark type of a standardized attribute of this kind (dates are dates, the rest strings)."""
    return ATTRIBUTE_TYPES.get(kind, StringType())


def _fields(*specs: tuple[str, DataType, bool]) -> list[StructField]:
    return [StructField(name, data_type, nullable) for name, data_type, nullable in specs]


def source_records_schema(attribute_kinds: dict[str, str]) -> StructType:
    """One row per live source record, with its standardized attributes."""
    return StructType(
        _fields(
            (RECORD_KEY, StringType(), False),
            (SOURCE, StringType(), False),
            (SOURCE_ID, StringType(), False),
            (SOURCE_PRIORITY, IntegerType(), False),
            (SOURCE_TIMESTAMP, TimestampType(), True),
        )
        + [StructField(name, attribute_type(kind), True) for name, kind in attribute_kinds.items()]
        + _fields(
            (VALUE_ISSUES, ArrayType(StringType()), False),
            (DISPLAY_VALUES, MapType(StringType(), StringType()), True),
            (ROW_HASH, StringType(), False),
            (RUN_ID, StringType(), False),
            (UPDATED_AT, TimestampType(), False),
        )
    )


SCORED_SCHEMA = StructType(
    _fields(
        (RECORD_KEY_L, StringType(), False),
        (RECORD_KEY_R, StringType(), False),
        (RULE, StringType(), False),
        (MATCH_PROBABILITY, DoubleType(), True),
        (MATCH_WEIGHT, DoubleType(), True),
        (COMPARISON_LEVELS, MapType(StringType(), StringType()), True),
    )
)

MATCH_EDGES_SCHEMA = StructType(
    _fields(
        (RECORD_KEY_L, StringType(), False),
        (RECORD_KEY_R, StringType(), False),
        (RULE, StringType(), False),
        (EDGE_STATUS, StringType(), False),
        (MATCH_PROBABILITY, DoubleType(), True),
        (MATCH_WEIGHT, DoubleType(), True),
        (COMPARISON_LEVELS, MapType(StringType(), StringType()), True),
        (RUN_ID, StringType(), False),
        (UPDATED_AT, TimestampType(), False),
    )
)

RESOLVED_MEMBERSHIP_SCHEMA = StructType(
    _fields(
        (RECORD_KEY, StringType(), False),
        (SOURCE, StringType(), False),
        (SOURCE_ID, StringType(), False),
        (ENTITY_ID, StringType(), False),
        (IS_PRIMARY, BooleanType(), False),
        (RUN_ID, StringType(), False),
        (UPDATED_AT, TimestampType(), False),
    )
)

# A reviewer's decision on a pair (record_key_l < record_key_r); the latest per pair counts.
ACCEPT, REJECT = "accept", "reject"
ACCEPTED_RULE = "accepted"  # match_edges.rule of a link a reviewer accepted
REVIEW_DECISIONS_SCHEMA = StructType(
    _fields(
        (RECORD_KEY_L, StringType(), False),
        (RECORD_KEY_R, StringType(), False),
        ("decision", StringType(), False),
        ("decided_by", StringType(), True),
        ("decided_at", TimestampType(), False),
        ("note", StringType(), True),
    )
)

# A link (in match_edges) whose records were kept apart by a cannot-link constraint.
CUT_EDGES_SCHEMA = StructType(
    _fields(
        (RECORD_KEY_L, StringType(), False),
        (RECORD_KEY_R, StringType(), False),
        ("cut_by", StringType(), False),  # the constraint that cut the link
        ("detail", StringType(), False),
        (RUN_ID, StringType(), False),
        (UPDATED_AT, TimestampType(), False),
    )
)

# One data quality check's outcome after a job (resolution.quality).
QUALITY_CHECKS_SCHEMA = StructType(
    _fields(
        (RUN_ID, StringType(), False),  # the run whose tables were checked
        ("check_name", StringType(), False),
        ("status", StringType(), False),  # PASS | FAIL
        ("observed", StringType(), False),
        ("expected", StringType(), False),
        ("detail", StringType(), True),
        ("checked_at", TimestampType(), False),
    )
)

REVIEW_QUEUE_SCHEMA = StructType(
    _fields(
        (RECORD_KEY_L, StringType(), False),
        (RECORD_KEY_R, StringType(), False),
        (MATCH_PROBABILITY, DoubleType(), True),
        (MATCH_WEIGHT, DoubleType(), True),
        (COMPARISON_LEVELS, MapType(StringType(), StringType()), True),
        ("status", StringType(), False),
        (RUN_ID, StringType(), False),
        (UPDATED_AT, TimestampType(), False),
    )
)

ENTITY_LINEAGE_SCHEMA = StructType(
    _fields(
        ("event_key", StringType(), False),
        (RUN_ID, StringType(), False),
        (ENTITY_ID, StringType(), False),
        ("other_entity_id", StringType(), True),
        ("event", StringType(), False),
        ("record_count", LongType(), True),
        ("occurred_at", TimestampType(), False),
    )
)

REJECTED_RECORDS_SCHEMA = StructType(
    _fields(
        (SOURCE, StringType(), False),
        ("source_key", StringType(), True),
        ("reason", StringType(), False),
        ("raw_row", StringType(), False),
        (RUN_ID, StringType(), False),
        ("rejected_at", TimestampType(), False),
    )
)

RUNS_SCHEMA = StructType(
    _fields(
        (RUN_ID, StringType(), False),
        ("mode", StringType(), False),
        ("status", StringType(), False),
        ("started_at", TimestampType(), False),
        ("finished_at", TimestampType(), True),
        ("owner", StringType(), True),
        ("backends", StringType(), True),
        ("source_versions", MapType(StringType(), StringType()), True),
        ("records_read", MapType(StringType(), LongType()), True),
        ("records_in", LongType(), True),
        ("records_new", LongType(), True),
        ("records_updated", LongType(), True),
        ("records_deleted", LongType(), True),
        ("records_rejected", LongType(), True),
        ("value_issues", MapType(StringType(), LongType()), True),
        ("edges_by_rule", MapType(StringType(), LongType()), True),
        ("review_pairs", LongType(), True),
        ("entities", LongType(), True),
        ("entities_created", LongType(), True),
        ("entities_merged", LongType(), True),
        ("entities_split", LongType(), True),
        ("largest_entity", LongType(), True),
        ("stage_seconds", MapType(StringType(), DoubleType()), True),
        ("rows_written", MapType(StringType(), LongType()), True),
        ("error", StringType(), True),
    )
)


DRY_RUN_CHANGES_SCHEMA = StructType(
    _fields(
        (RECORD_KEY, StringType(), False),
        ("current_entity_id", StringType(), True),
        ("proposed_entity_id", StringType(), True),
        ("change_type", StringType(), False),
        (RUN_ID, StringType(), False),
        ("computed_at", TimestampType(), False),
    )
)


def golden_profiles_schema(attribute_kinds: dict[str, str], arrays: tuple[str, ...]) -> StructType:
    """One row per entity: surviving attributes, arrays of all emails/phones, provenance."""
    return StructType(
        _fields((ENTITY_ID, StringType(), False), ("primary_record_key", StringType(), False))
        + [StructField(name, attribute_type(kind), True) for name, kind in attribute_kinds.items()]
        + [StructField(f"{name}s", ArrayType(StringType()), False) for name in arrays]
        + _fields(
            ("record_count", LongType(), False),
            ("sources", ArrayType(StringType()), False),
            ("first_seen", TimestampType(), True),
            ("last_seen", TimestampType(), True),
            (RUN_ID, StringType(), False),
            (UPDATED_AT, TimestampType(), False),
        )
    )
